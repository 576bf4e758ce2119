"""The Matrix adapter: a /sync loop in (mautrix's client-server API), ``Adapter`` calls out.

Inbound: :mod:`~lettabot_matrix.listeners` handles each /sync batch (invitations, rooms,
events); the sync position and recently handled event ids live in
:class:`~lettabot_matrix.state.SyncState`. A homeserver that does not answer is retried
with exponential backoff (1 s doubling to 60 s); ``/readyz`` reports the adapter not
connected meanwhile. A rejected access token stops the adapter as a config error.

Outbound: every message is an ``m.notice`` with sanitised HTML and an empty
``m.mentions`` (see :mod:`~lettabot_matrix.render`); replies in a thread carry the
``m.thread`` relation; streaming edits are ``m.replace`` events. A homeserver rate limit
(``M_LIMIT_EXCEEDED``) reaches the runtime as :class:`RateLimited`.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskGroup
from mautrix.api import HTTPAPI, Method
from mautrix.api import Path as MxPath
from mautrix.client.api import ClientAPI
from mautrix.errors import (
    MatrixInvalidToken,
    MatrixRequestError,
    MForbidden,
    MLimitExceeded,
    MNotFound,
)
from mautrix.types import UserID

from lettabot.runtime.adapter import (
    AdapterLimits,
    ApprovalView,
    Attachment,
    BotAPI,
    ContextMessage,
    InboundMessage,
    MessageRef,
    RateLimited,
    Scope,
    approval_full_text,
)
from lettabot.runtime.config import ConfigError
from lettabot.runtime.inflight import InFlight
from lettabot_matrix.events import ADAPTER, Identity, room_scope
from lettabot_matrix.listeners import RETRYABLE, Listeners
from lettabot_matrix.render import (
    REACTIONS,
    approval_text,
    edit_content,
    message_content,
)
from lettabot_matrix.settings import MatrixConfig, MatrixSettings
from lettabot_matrix.state import SyncState

__all__ = ["APPROVAL_KEY", "MatrixAdapter", "MatrixAdapterError", "create_adapter"]

log = logging.getLogger(__name__)

APPROVAL_KEY = "org.lettabot.approval"
"""Custom content of a prompt: ``{"request_id": …}``, so a reaction after a restart finds it."""

_BACKOFF_MAX = 60.0
_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {"ephemeral": {"types": []}, "account_data": {"types": []},
             "timeline": {"limit": 100}},
}
_FIRST_FILTER = {**_FILTER, "room": {**_FILTER["room"], "timeline": {"limit": 0}}}


class MatrixAdapterError(ConfigError):
    """The adapter cannot run (no token, a rejected token): ``lettabot run`` says it in one
    line and exits 2."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def _json(value: dict[str, Any]) -> str:
    import json
    return json.dumps(value, separators=(",", ":"))


class MatrixAdapter:
    """lettabot on Matrix (see the module docstring)."""

    name = ADAPTER

    def __init__(self, settings: MatrixSettings, bot: BotAPI, *,
                 state_path: Path | None = None) -> None:
        self.settings = settings
        self.bot = bot
        self.limits = AdapterLimits(max_message_length=settings.max_message_chars,
                                    can_edit=True, has_buttons=False, min_edit_interval=1.0,
                                    can_type=True)
        self.state = SyncState(state_path)
        self.me = Identity(settings.user_id)
        self.listeners = Listeners(self)
        self.handlers = InFlight()
        self.client: ClientAPI | None = None
        self._tg: TaskGroup | None = None
        self._connected = False
        self._identified = False
        self._members: dict[str, int] = {}
        self._prompts: dict[str, tuple[str, Scope]] = {}
        self._prompt_texts: dict[str, str] = {}
        self._pending: dict[str, list[str]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        token = self.settings.token_value()
        if not token:
            raise MatrixAdapterError(
                "matrix.access_token is not set — set LETTABOT_MATRIX__ACCESS_TOKEN")
        timeout = aiohttp.ClientTimeout(total=self.settings.sync_timeout_seconds + 30,
                                        sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = HTTPAPI(self.settings.homeserver, token, client_session=session)
            self.client = ClientAPI(UserID(self.settings.user_id), api=api)
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    await self._sync_forever()
            finally:
                self._connected = False
                self._tg = None
                with anyio.CancelScope(shield=True):
                    await self.handlers.idle()

    def is_ready(self) -> bool:
        """The last /sync succeeded (False while the homeserver is unreachable)."""
        return self._connected

    def where(self) -> str:
        return f"{self.settings.homeserver} as {self.settings.user_id}"

    def spawn(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``work`` beside the sync loop (a command, a reaction), errors logged."""
        if self._tg is None:
            log.info("matrix: not running; %s skipped", what)
            return

        async def run() -> None:
            with self.handlers.track():
                try:
                    await work()
                except Exception:
                    log.exception("matrix: %s failed", what)

        self._tg.start_soon(run)

    async def _sync_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                if not self._identified:
                    await self._whoami()
                    self._identified = True
                response = await self._sync()
            except MatrixInvalidToken:
                raise MatrixAdapterError(
                    "the homeserver rejected matrix.access_token — log the bot in again and "
                    "put the new token in LETTABOT_MATRIX__ACCESS_TOKEN") from None
            except (*RETRYABLE, MatrixRequestError) as exc:
                if isinstance(exc, MatrixRequestError) and not _server_side(exc):
                    if self.state.since is None:
                        raise
                    # e.g. a homeserver restored from a backup: its old position is gone
                    log.warning("matrix: the homeserver refused the stored sync position "
                                "(%s); starting afresh (what was said meanwhile is not "
                                "answered)", exc)
                    self.state.since = None
                    continue
                if self._connected or backoff == 1.0:
                    log.warning("matrix: homeserver %s unreachable (%s); retrying with backoff",
                                self.settings.homeserver, exc or type(exc).__name__)
                self._connected = False
                await anyio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            if not self._connected:
                log.info("matrix: connected to %s as %s", self.settings.homeserver,
                         self.settings.user_id)
            self._connected = True
            backoff = 1.0
            try:
                await self.listeners.handle_sync(response)
            except RETRYABLE as exc:
                # went away mid-batch: the position is unchanged, the batch comes again
                log.warning("matrix: homeserver %s went away during a sync batch (%s)",
                            self.settings.homeserver, exc or type(exc).__name__)
                self._connected = False
                await anyio.sleep(1)

    async def _whoami(self) -> None:
        body = await self._api().request(Method.GET, MxPath.v3.account.whoami)
        if body.get("user_id") != self.settings.user_id:
            raise MatrixAdapterError(
                f"matrix.access_token belongs to {body.get('user_id')}, not matrix.user_id "
                f"{self.settings.user_id}")
        try:
            profile = await self._api().request(
                Method.GET, MxPath.v3.profile[self.settings.user_id].displayname)
            self.me = Identity(self.settings.user_id, str(profile.get("displayname") or ""))
        except MatrixRequestError:
            pass

    async def _sync(self) -> dict[str, Any]:
        params = {"timeout": str(int(self.settings.sync_timeout_seconds * 1000)),
                  "filter": _json(_FIRST_FILTER if self.state.since is None else _FILTER)}
        if self.state.since is not None:
            params["since"] = self.state.since
        else:
            params["timeout"] = "0"
        body = await self._api().request(Method.GET, MxPath.v3.sync, query_params=params)
        return body if isinstance(body, dict) else {}

    def _api(self) -> HTTPAPI:
        if self.client is None:
            raise RuntimeError("the Matrix adapter is not running")
        return self.client.api

    # -- rooms (for the listeners) ---------------------------------------------------------

    async def join(self, room_id: str) -> bool:
        try:
            await self._api().request(Method.POST, MxPath.v3.join[room_id], {})
            self._members.pop(room_id, None)
            return True
        except MatrixRequestError as exc:
            log.warning("matrix: could not join %s: %s", room_id, exc)
            return False

    async def leave(self, room_id: str, notice: str = "") -> None:
        if notice:
            try:
                await self._send(room_id, "m.room.message", message_content(notice))
            except (MatrixRequestError, *RETRYABLE) as exc:
                log.warning("matrix: could not post in %s before leaving: %s", room_id, exc)
        try:
            await self._api().request(Method.POST, MxPath.v3.rooms[room_id].leave, {})
        except MatrixRequestError as exc:
            log.warning("matrix: could not leave %s: %s", room_id, exc)

    async def is_encrypted(self, room_id: str) -> bool:
        try:
            await self._api().request(
                Method.GET, MxPath.v3.rooms[room_id].state["m.room.encryption"][""])
            return True
        except (MNotFound, MForbidden):
            return False  # none, or a room the bot is no longer in

    async def member_count(self, room_id: str) -> int:
        """People in the room (joined or invited), the bot included; cached until the
        room's membership changes."""
        if room_id not in self._members:
            body = await self._api().request(Method.GET, MxPath.v3.rooms[room_id].members,
                                             query_params={"not_membership": "leave"})
            chunk = body.get("chunk") if isinstance(body, dict) else None
            self._members[room_id] = sum(
                1 for ev in chunk or [] if isinstance(ev, dict)
                and (ev.get("content") or {}).get("membership") in ("join", "invite"))
        return self._members[room_id]

    def members_changed(self, room_id: str) -> None:
        self._members.pop(room_id, None)

    def prompt_for(self, event_id: str) -> tuple[str, Scope] | None:
        return self._prompts.get(event_id)

    async def fetch_prompt(self, room_id: str, event_id: str) -> tuple[str, Scope] | None:
        """A prompt posted before a restart: its request id is in its content."""
        try:
            event = await self._api().request(Method.GET,
                                              MxPath.v3.rooms[room_id].event[event_id])
        except MatrixRequestError:
            return None
        content = event.get("content") if isinstance(event, dict) else None
        if event.get("sender") != self.me.user_id or not isinstance(content, dict):
            return None
        marker = content.get(APPROVAL_KEY)
        request_id = marker.get("request_id") if isinstance(marker, dict) else None
        if not isinstance(request_id, str):
            return None
        rel = content.get("m.relates_to")
        thread = rel.get("event_id") if isinstance(rel, dict) else None
        is_dm = await self.listeners.is_dm(room_id)
        return request_id, room_scope(room_id, is_dm=is_dm,
                                      thread=thread if isinstance(thread, str) else None)

    def latest_prompt(self, scope: Scope) -> str | None:
        waiting = self._pending.get(scope.key)
        return waiting[-1] if waiting else None

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        """A file from the homeserver's authenticated media API (``mxc://`` only: the
        access token goes nowhere else)."""
        url = attachment.url or ""
        if not url.startswith("mxc://") or url.count("/") != 3:
            raise ValueError("not a Matrix content URI (mxc://)")
        if attachment.size is not None and attachment.size > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        server, media_id = url.removeprefix("mxc://").split("/")
        api = self._api()
        path = MxPath.v1.media.download[server][media_id]
        async with api.session.get(api.base_url.with_path("/" + str(path), encoded=True),
                                   headers={"Authorization": f"Bearer {api.token}"},
                                   allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"the homeserver answered HTTP {response.status}")
            data = await response.content.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        return data

    async def thread_context(self, message: InboundMessage,
                             limit: int) -> list[ContextMessage]:
        """A thread's root and replies before ``message``, oldest first, the newest
        ``limit`` (the bot's own marked); none when the message starts the thread."""
        scope = message.scope
        if not scope.thread or scope.thread == message.message_id or scope.is_dm:
            return []
        room, root = scope.channel, scope.thread
        try:
            first = await self._api().request(Method.GET, MxPath.v3.rooms[room].event[root])
            replies = await self._api().request(
                Method.GET, MxPath.v1.rooms[room].relations[root]["m.thread"],
                query_params={"limit": "100", "dir": "b"})
        except MatrixRequestError as exc:
            log.info("matrix: could not read the thread %s: %s", root, exc)
            return []
        chunk = replies.get("chunk") if isinstance(replies, dict) else None
        events = [first, *reversed(chunk if isinstance(chunk, list) else [])]
        out: list[ContextMessage] = []
        for ev in events:
            if not isinstance(ev, dict):
                continue
            if ev.get("event_id") == message.message_id:
                break  # only what came before the message
            content = ev.get("content")
            if ev.get("type") != "m.room.message" or not isinstance(content, dict):
                continue
            body, sender = content.get("body"), ev.get("sender")
            rel = content.get("m.relates_to")
            if (not isinstance(body, str) or not isinstance(sender, str)
                    or (isinstance(rel, dict) and rel.get("rel_type") == "m.replace")):
                continue
            out.append(ContextMessage(user_id=sender, user_name=sender, text=body,
                                      from_bot=sender == self.me.user_id))
        return out[-limit:]

    # -- outbound ------------------------------------------------------------------------

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        path = MxPath.v3.rooms[room_id].send[event_type][uuid.uuid4().hex]
        try:
            body = await self._api().request(Method.PUT, path, content)
        except MLimitExceeded as exc:
            self._count_error(429)
            raise RateLimited(None, f"Matrix rate limit: {exc}") from exc
        except MatrixRequestError as exc:
            self._count_error(exc.http_status)
            raise
        return str(body["event_id"])

    def _count_error(self, status: int | str) -> None:
        record = getattr(self.bot, "platform_error", None)
        if record is not None:
            record(ADAPTER, status)

    @staticmethod
    def _thread(scope: Scope) -> str | None:
        return None if scope.is_dm else scope.thread

    async def post(self, scope: Scope, text: str) -> MessageRef:
        content = message_content(text, thread=self._thread(scope))
        event_id = await self._send(scope.channel, "m.room.message", content)
        return MessageRef(scope=scope, id=event_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        await self._send(ref.scope.channel, "m.room.message", edit_content(ref.id, text))

    async def typing(self, scope: Scope) -> None:
        await self._typing(scope, True)

    async def done(self, scope: Scope) -> None:
        await self._typing(scope, False)

    async def _typing(self, scope: Scope, on: bool) -> None:
        body: dict[str, Any] = {"typing": on}
        if on:
            body["timeout"] = 8000
        try:
            await self._api().request(
                Method.PUT, MxPath.v3.rooms[scope.channel].typing[self.me.user_id], body)
        except MatrixRequestError as exc:
            log.debug("matrix: typing in %s: %s", scope.channel, exc)

    async def acknowledge(self, message: InboundMessage) -> None:
        """A read receipt on the accepted message."""
        try:
            await self._api().request(
                Method.POST,
                MxPath.v3.rooms[message.scope.channel].receipt["m.read"][message.message_id],
                {})
        except MatrixRequestError as exc:
            log.debug("matrix: receipt: %s", exc)

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        """A notice in the scope; Matrix has no private messages in a room, so a note for
        one person names (and notifies) that person."""
        mentions = [user_id] if user_id else None
        if user_id:
            text = f"{user_id}: {text}"
        await self._send(scope.channel, "m.room.message",
                         message_content(text, thread=self._thread(scope), mentions=mentions))

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        text = emoji.strip()
        if not text or text.isascii() or len(text) > 8:
            raise ValueError(f"{emoji!r} is not one emoji")
        await self._send(scope.channel, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": message_id, "key": text}})

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        assert self.client is not None
        uri = await self.client.upload_media(data, mime_type="text/plain", filename=name)
        content: dict[str, Any] = {"msgtype": "m.file", "body": name, "filename": name,
                                   "url": str(uri), "info": {"size": len(data),
                                                             "mimetype": "text/plain"},
                                   "m.mentions": {}}
        thread = self._thread(scope)
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        if comment:
            await self.post(scope, comment)
        event_id = await self._send(scope.channel, "m.room.message", content)
        return MessageRef(scope=scope, id=event_id)

    # -- approvals -----------------------------------------------------------------------

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        """The prompt (tool, whole input, who may decide), then ✅ ❌ (🔁) under it."""
        scope = view.scope
        text, preview = approval_text(view, self.settings.max_message_chars)
        deciders = [u for u in view.deciders if u.startswith("@")][:10]
        content = message_content(text, thread=self._thread(scope), mentions=deciders)
        content[APPROVAL_KEY] = {"request_id": view.request_id}
        event_id = await self._send(scope.channel, "m.room.message", content)
        self._prompts[event_id] = (view.request_id, scope)
        self._prompt_texts[event_id] = text
        self._pending.setdefault(scope.key, []).append(view.request_id)
        if preview:
            await self.send_file(scope, f"approval-{view.request_id}.txt",
                                 approval_full_text(view).encode())
        keys = [k for k, d in REACTIONS.items() if d != "always" or view.allow_always]
        # returned at once: the runtime needs the prompt's ref before a decision can edit it
        self.spawn(lambda: self._offer(scope.channel, event_id, keys), "reactions")
        return MessageRef(scope=scope, id=event_id)

    async def _offer(self, room_id: str, event_id: str, keys: list[str]) -> None:
        """The bot's own ✅ ❌ 🔁 under a prompt, so people have them to click."""
        for key in keys:
            try:
                await self._send(room_id, "m.reaction", {"m.relates_to": {
                    "rel_type": "m.annotation", "event_id": event_id, "key": key}})
            except (MatrixRequestError, RateLimited) as exc:
                log.warning("matrix: could not add %s under a prompt: %s", key, exc)

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        """The prompt edited to show the outcome; reactions on it decide nothing more."""
        waiting = self._pending.get(ref.scope.key, [])
        if view.request_id in waiting:
            waiting.remove(view.request_id)
        prompt = self._prompt_texts.pop(ref.id, None) or await self._body_of(ref) or (
            f"**Approval request** for `{view.tool_name}`")
        await self.edit(ref, f"{prompt}\n\n**{text}**")

    async def _body_of(self, ref: MessageRef) -> str | None:
        """What a message of the bot's said (a prompt from before a restart)."""
        try:
            event = await self._api().request(
                Method.GET, MxPath.v3.rooms[ref.scope.channel].event[ref.id])
        except MatrixRequestError:
            return None
        content = event.get("content") if isinstance(event, dict) else None
        body = content.get("body") if isinstance(content, dict) else None
        return body if isinstance(body, str) and event.get("sender") == self.me.user_id else None


def _server_side(exc: MatrixRequestError) -> bool:
    """A homeserver (or proxy) failure worth retrying: 5xx, 429, or no status at all."""
    status = getattr(exc, "http_status", 0) or 0
    return status >= 500 or status in (0, 429) or isinstance(exc, MLimitExceeded)


def create_adapter(settings: MatrixConfig | dict[str, Any], bot: BotAPI) -> MatrixAdapter:
    """The ``lettabot.adapters`` entry point: the ``[matrix]`` section and the bot. The
    sync state goes to ``matrix.state_path``, else ``<data_dir>/matrix-state.json``."""
    config = MatrixConfig.from_mapping(settings)
    path = config.state_path
    if path is None:
        data_dir = getattr(getattr(bot, "config", None), "data_dir", None)
        path = Path(data_dir) / "matrix-state.json" if data_dir is not None else None
    return MatrixAdapter(config, bot, state_path=path)
