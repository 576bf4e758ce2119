"""The web chat as a lettabot adapter: a Starlette app served by uvicorn inside ``run``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections import OrderedDict
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from lettabot.runtime.adapter import (
    AdapterLimits,
    ApprovalView,
    Attachment,
    BotAPI,
    MessageRef,
    Scope,
)
from lettabot.runtime.config import is_blank
from lettabot_web.app import ADAPTER_NAME, build_app
from lettabot_web.hub import Hub
from lettabot_web.settings import WebConfig, WebSettings, WebSettingsError, stored_token
from lettabot_web.state import STATE_FILE, WebState
from lettabot_web.uploads import Uploads

__all__ = ["WebAdapter", "create_adapter"]

log = logging.getLogger("lettabot.web")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class _Reply:
    """A posted reply, shown as segments: an approval card that appears while the reply
    streams cuts it, and the text that follows is shown below the card, in reading order."""

    tab: str
    text: str = ""
    segments: list[tuple[int, str | None]] = field(default_factory=list)
    """(start offset in ``text``, item id, or None until that part has text)."""


_MAX_REPLIES = 512


class WebAdapter:
    """Serves the chat page; maps each browser tab to a private scope."""

    name = ADAPTER_NAME
    limits = AdapterLimits(
        max_message_length=100_000,
        can_edit=True,
        has_buttons=True,
        min_edit_interval=0.15,
        can_type=True,
    )

    def __init__(self, settings: WebSettings, bot: BotAPI, state: WebState | None = None) -> None:
        self.settings = settings
        self._socket = self._bind()  # now, so a busy port is a clear error at startup
        self.port: int = int(self._socket.getsockname()[1])
        """The port listened on: the one asked for, or the one port 0 got."""
        self.settings = dataclasses.replace(settings, port=self.port)
        self.bot = bot
        self.hub = Hub()
        self.state = state if state is not None else WebState(None)
        self.uploads = Uploads()
        self.sent = Uploads(max_bytes=128_000_000)
        self.app = build_app(self.settings, self.hub, bot, self.uploads, self.sent, self.state)
        self.listening = anyio.Event()
        self._stopped = False
        self._replies: OrderedDict[str, _Reply] = OrderedDict()  # by first item id
        self._live: dict[str, str] = {}  # tab -> the reply being streamed there

    @property
    def url(self) -> str:
        """The page's address once listening (without the token)."""
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def is_ready(self) -> bool:
        return self.listening.is_set() and not self._stopped

    def _token_hint(self) -> str:
        if not self.settings.token:
            return ""
        if self.settings.show_token:  # generated: printed, as Jupyter does
            return f"?token={self.settings.token}"
        return "?token=<web.token>"

    def where(self) -> str:
        label = " (DEMO: scripted model, no real AI)" if self.settings.demo else ""
        return self.url + self._token_hint() + label

    # serving -------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        host = self.settings.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.settings.port))
        except OSError as exc:
            sock.close()
            raise WebSettingsError(
                f"web.port: cannot listen on {host}:{self.settings.port} ({exc.strerror}) — "
                "stop the other program or set web.port / LETTABOT_WEB__PORT"
            ) from None
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def run(self) -> None:
        """Serve until cancelled; then close every open page's stream and the socket."""
        sock = self._socket
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="websockets-sansio",
            ws_ping_interval=20.0,
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=3,
        )
        server = _Server(config)

        stopped = anyio.Event()

        async def serve() -> None:
            try:
                with anyio.CancelScope(shield=True):  # shut down cleanly, even when cancelled
                    await server.serve(sockets=[sock])
            finally:
                stopped.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve)
                try:
                    while not server.started:
                        if stopped.is_set():
                            raise RuntimeError("the web chat server stopped while starting")
                        await anyio.sleep(0.02)
                    self._announce()
                    self.listening.set()
                    await stopped.wait()
                    raise RuntimeError("the web chat server stopped unexpectedly")
                finally:
                    self._stopped = True
                    server.should_exit = True
                    self.hub.close_all()
        finally:
            sock.close()

    def _announce(self) -> None:
        label = " (DEMO: scripted model, no real AI)" if self.settings.demo else ""
        log.info("lettabot web chat%s: %s%s", label, self.url, self._token_hint())
        if self.settings.auth == "none":
            log.warning('web.auth = "none": the web chat needs no token — any program or OS '
                        "user on this machine can drive it and approve its tool calls")

    # the Adapter protocol ------------------------------------------------------

    @staticmethod
    def _tab(scope: Scope) -> str:
        if scope.adapter != ADAPTER_NAME:
            raise ValueError(f"not a web chat scope: {scope.key}")
        return scope.channel

    async def post(self, scope: Scope, text: str) -> MessageRef:
        tab = self._tab(scope)
        item = self.hub.add(tab, "bot", text)
        self._replies[item.id] = _Reply(tab, text, [(0, item.id)])
        while len(self._replies) > _MAX_REPLIES:
            self._replies.popitem(last=False)
        self._live[tab] = item.id
        return MessageRef(scope=scope, id=item.id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        tab = self._tab(ref.scope)
        reply = self._replies.get(ref.id)
        if reply is None:
            self.hub.update(tab, ref.id, text)
            return
        reply.text = text
        for n, (start, item_id) in enumerate(reply.segments):
            end = reply.segments[n + 1][0] if n + 1 < len(reply.segments) else None
            part = text[start:end] if n == 0 else text[start:end].lstrip()
            if item_id is not None:
                self.hub.update(tab, item_id, part)
            elif part:
                reply.segments[n] = (start, self.hub.add(tab, "bot", part).id)

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        """A file the page uploaded for this message (once)."""
        data = self.uploads.take(attachment.url or "")
        if data is None:
            raise ValueError("the upload is gone (too many files at once?)")
        if len(data) > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        return data

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        tab = self._tab(scope)
        file_id = self.sent.add(tab, name, "application/octet-stream", data)
        item = self.hub.add(tab, "bot", comment, file={"id": file_id, "name": name,
                                                       "size": len(data)})
        return MessageRef(scope=scope, id=item.id)

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        tab = self._tab(scope)
        item = self.hub.find(tab, message_id=message_id)
        if item is None:
            raise ValueError("that message is no longer shown")
        shown = list(item.data.get("reactions") or [])
        if emoji not in shown:
            self.hub.update(tab, item.id, reactions=[*shown, emoji][-8:])

    async def offer_feedback(self, ref: MessageRef) -> None:
        tab = self._tab(ref.scope)
        reply = self._replies.get(ref.id)
        last = [i for _, i in reply.segments if i is not None][-1] if reply else ref.id
        if self.hub.update(tab, last, feedback="offered"):
            item = self.hub.get(tab, last)
            self.state.answer(tab, last, item.text if item is not None else "")

    async def typing(self, scope: Scope) -> None:
        self.hub.signal(self._tab(scope), {"type": "typing"})

    async def done(self, scope: Scope) -> None:
        tab = self._tab(scope)
        self._live.pop(tab, None)
        self.hub.signal(tab, {"type": "done"})

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        tab = self._tab(view.scope)
        live = self._replies.get(self._live.get(tab, ""))
        if live is not None:  # the reply continues below the card
            live.segments.append((len(live.text), None))
        item = self.hub.add(
            tab,
            "approval",
            "",
            request_id=view.request_id,
            tool=view.tool_name,
            input=view.input_summary,
            diff=view.diff,
            allow_always=view.allow_always,
            covers=view.always_covers,
            status=None,
        )
        return MessageRef(scope=view.scope, id=item.id)

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        self.hub.update(self._tab(ref.scope), ref.id, status=text)

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        self.hub.signal(self._tab(scope), {"type": "notice", "text": text})


def create_adapter(settings: WebConfig | Mapping[str, Any], bot: BotAPI) -> WebAdapter:
    """The ``lettabot.adapters`` entry point: the validated ``[web]`` section + the bot (a
    mapping is validated here: for tests and callers without a config). The page and the
    terminal say DEMO when the bot runs ``lettabot run --demo``."""
    config = settings if isinstance(settings, WebConfig) else WebConfig.model_validate(
        dict(settings))
    data_dir = getattr(getattr(bot, "config", None), "data_dir", None)
    generated = None
    if config.auth == "token" and is_blank(config.token):
        # No token configured: generate one into the data dir (reused), printed with the URL.
        generated = stored_token(Path(data_dir) if data_dir is not None else None)
    state = WebState(Path(data_dir) / STATE_FILE if data_dir is not None else None)
    web = WebSettings.from_config(config, token=generated, show_token=generated is not None,
                                  demo=bool(getattr(bot, "demo", False)))  # `lettabot run --demo`
    return WebAdapter(web, bot, state)
