"""The Slack adapter: outbound calls (post, edit, reactions, approvals) on the Web API,
and :meth:`SlackAdapter.run`, which serves inbound traffic (Socket Mode or HTTP).

The package's layout: :mod:`~lettabot_slack.settings` (the ``[slack]`` section),
:mod:`~lettabot_slack.events` (payloads → :class:`InboundMessage`, pure),
:mod:`~lettabot_slack.listeners` (Bolt listeners, against their narrow ``ListenerHost``),
:mod:`~lettabot_slack.server` (Socket Mode / HTTP transports), this module (outbound) and
:func:`create_adapter` (the ``lettabot.adapters`` entry point).

Listeners ack first; work that may take longer than Slack's 3 seconds runs in the
adapter's task group, so nothing outlives :meth:`run`.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import emoji as emoji_lib
from anyio.abc import TaskGroup
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

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
    StreamExpired,
)
from lettabot.runtime.inflight import InFlight
from lettabot_slack import blocks, listeners, server
from lettabot_slack.events import Filters, Identity
from lettabot_slack.memory import Memory
from lettabot_slack.mrkdwn import MAX_TEXT, NO_UNFURL, to_messages
from lettabot_slack.pacing import ChannelPacer
from lettabot_slack.settings import SlackConfig

__all__ = ["WORKING_REACTION", "SlackAdapter", "create_adapter"]

log = logging.getLogger("lettabot.slack")

WORKING_REACTION = "hourglass_flowing_sand"
SEEN_REACTION = "eyes"
"""On a message the moment it is accepted (its turn may wait behind others)."""
class ErrorCounter(AsyncRetryHandler):
    """Sees every Web API response first and counts the failed ones (HTTP errors, 429s,
    ``ok: false``, dropped connections) for ``/metrics``; never asks for a retry itself."""

    def __init__(self, record: Callable[[int | str], None]) -> None:
        super().__init__(max_retry_count=0)
        self._record = record

    async def can_retry_async(
        self, *, state: RetryState, request: HttpRequest,
        response: HttpResponse | None = None, error: Exception | None = None,
    ) -> bool:
        if response is not None:
            if response.status_code >= 400:
                self._record(response.status_code)
            elif isinstance(response.body, dict) and response.body.get("ok") is False:
                self._record(str(response.body.get("error") or "not_ok"))
        elif error is not None:
            self._record(type(error).__name__)
        return False


def make_client(
    settings: SlackConfig, record_error: Callable[[int | str], None] | None = None,
) -> AsyncWebClient:
    """A Web API client that retries 429s per ``Retry-After`` and dropped connections
    (and counts failed calls with ``record_error``)."""
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    base = settings.api_url if settings.api_url.endswith("/") else settings.api_url + "/"
    counter: list[AsyncRetryHandler] = [ErrorCounter(record_error)] if record_error else []
    return AsyncWebClient(
        token=token,
        base_url=base,
        retry_handlers=[
            *counter,
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        ],
    )


class SlackAdapter:
    """A Slack workspace, through one bot token."""

    name = "slack"

    def __init__(self, settings: SlackConfig, bot: BotAPI) -> None:
        self.settings = settings
        self.bot = bot
        self.limits = AdapterLimits(
            # room for mrkdwn to grow (escaping) before MAX_TEXT; we split again if it does
            max_message_length=3500,
            can_edit=True,
            has_buttons=True,
            min_edit_interval=1.2,  # chat.update is Tier 3 (~50/min); one reply at a time
            can_type=True,
        )
        self.filters = Filters(
            allow_bots=settings.allow_bots,
            allowed_channels=frozenset(settings.allowed_channels),
            denied_channels=frozenset(settings.denied_channels),
        )
        record = getattr(bot, "platform_error", None)  # counting never breaks a call
        self.client = make_client(
            settings, (lambda status: record("slack", status)) if record else None)
        self.pacer = ChannelPacer()
        """chat.postMessage at about 1/s per channel (bursts of 3), as Slack asks."""
        self.app = AsyncApp(
            client=self.client,
            signing_secret=(
                settings.signing_secret.get_secret_value() if settings.signing_secret else None
            ),
            # HTTP requests are signed; Socket Mode traffic is authenticated by the app token
            request_verification_enabled=settings.mode == "http",
            # listeners run inside the request (they ack and hand slow work to our task group)
            process_before_response=True,
            logger=logging.getLogger("lettabot.slack.bolt"),
        )
        self.app.error(server.on_bolt_error)  # the HTTP handler picks the status, quietly
        listeners.register(self.app, self)
        self.http_port: int | None = None
        """The bound port in HTTP mode (useful with ``http_port = 0``)."""
        self.ready = anyio.Event()
        """Set once the adapter is connected (Socket Mode) or listening (HTTP)."""
        self.socket_client: Any = None
        """The Socket Mode client while connected (slack_sdk reconnects it on its own)."""
        self._tg: TaskGroup | None = None
        self._identity: Identity | None = None
        self.memory = Memory()
        """What the adapter knows of messages it saw or posted (bounded)."""
        self._order: dict[str, anyio.Lock] = {}
        self.handlers = InFlight()
        """Event handlers slack_sdk runs for us: finished before the adapter stops."""
        self.stream_chars = STREAM_CHARS
        self._streaming = settings.streaming == "auto"
        self._status = settings.assistant_status

    # lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled: Socket Mode (default) or the HTTP Events API endpoint."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self.identity()
                if self.settings.mode == "http":
                    await server.serve_http(self.app, self.settings, self._listening)
                else:
                    await server.serve_socket(self.app, self.settings, self.client,
                                              self._connecting, self.ready.set)
            finally:
                # Events being taken in (a name lookup) are handed on before we stop: the
                # runtime answers them or, draining, says to send them again.
                with anyio.CancelScope(shield=True):
                    if not await self.handlers.idle():
                        log.warning("slack: %d event handlers still ran at shutdown",
                                    self.handlers.count)
                self._tg = None
                tg.cancel_scope.cancel()

    def _listening(self, port: int) -> None:
        self.http_port = port
        self.ready.set()

    def _connecting(self, socket_client: Any) -> None:
        self.socket_client = socket_client

    def is_ready(self) -> bool:
        """Listening (HTTP), or the Socket Mode connection is up now."""
        if not self.ready.is_set() or self._tg is None:
            return False
        return self.socket_client is None or bool(self.socket_client.is_connected())

    def where(self) -> str:
        if self.settings.mode == "http":
            port = self.http_port or self.settings.http_port
            return f"Events API on http://{self.settings.http_host}:{port}/slack/events"
        return "Socket Mode"

    def spawn(self, job: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``job`` in the adapter's task group; failures are logged, never raised."""

        async def guarded() -> None:
            try:
                await job()
            except Exception:
                log.exception("slack: %s failed", what)

        if self._tg is None:
            raise RuntimeError("the Slack adapter is not running")
        self._tg.start_soon(guarded)

    async def identity(self) -> Identity:
        """The bot's user id (``auth.test``, once)."""
        if self._identity is None:
            auth = await self.client.auth_test()
            self._identity = Identity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"))
        return self._identity

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        """A file's ``url_private``, with the bot token (``files:read``). The token goes
        only to Slack's own file hosts (or the configured API host: GovSlack, tests)."""
        url = attachment.url or ""
        host = urlsplit(url).hostname or ""
        api_host = urlsplit(self.settings.api_url).hostname or ""
        slack_host = host == "slack.com" or host.endswith((".slack.com", ".slack-gov.com"))
        if not url.startswith(("https://", "http://")) or not (slack_host or host == api_host):
            raise ValueError(f"not a Slack file URL ({host or 'no host'})")
        if url.startswith("http://") and host != api_host:
            raise ValueError("not https")
        token = self.settings.bot_token.get_secret_value() if self.settings.bot_token else ""
        async with aiohttp.ClientSession() as session, session.get(
            url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            if response.status != 200:
                raise ValueError(f"Slack answered HTTP {response.status}")
            if (response.content_type or "").startswith("text/html"):
                raise ValueError("Slack sent a login page (is files:read granted?)")
            data = await response.content.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        return data

    async def thread_context(self, message: InboundMessage, limit: int) -> list[ContextMessage]:
        """The thread's messages before ``message`` (``conversations.replies``, one page
        of 200), the newest ``limit``; the bot's own are marked. Needs the *:history scopes
        the manifest asks for; without them, none."""
        scope = message.scope
        if not scope.thread or scope.thread == message.message_id:
            return []  # it starts the thread
        answer = await self.client.conversations_replies(
            channel=scope.channel, ts=scope.thread, limit=200)
        raw = answer.get("messages") or []
        before = [m for m in raw if isinstance(m, dict) and _ts(m.get("ts")) < _ts(
            message.message_id)][-limit:]
        identity = await self.identity()
        out = []
        for m in before:
            user = str(m.get("user") or m.get("bot_id") or "")
            mine = user == identity.user_id or (
                identity.bot_id is not None and m.get("bot_id") == identity.bot_id)
            name = ""
            if not mine and user:
                with anyio.move_on_after(1):
                    name = await self.user_name(user)
            out.append(ContextMessage(user_id=user, user_name=name,
                                      text=str(m.get("text") or ""), from_bot=mine))
        return out

    async def user_name(self, user_id: str) -> str:
        """A display name for ``user_id`` (``users.info``, cached; "" if unavailable)."""
        if user_id in self.memory.names:
            return str(self.memory.names[user_id])
        name = ""
        try:
            info = await self.client.users_info(user=user_id)
            user = info.get("user") or {}
            profile = user.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or user.get("name") or ""
        except SlackApiError as exc:
            log.debug("slack: users.info %s failed: %s", user_id, api_error(exc))
        self.memory.names.remember(user_id, name)
        return str(name)

    @asynccontextmanager
    async def in_order(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s turn: tasks entering in arrival order leave in that order (anyio
        locks are fair)."""
        lock = self._order.setdefault(key, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._order.pop(key, None)

    def first_delivery(self, event_id: str) -> bool:
        """False if this event id was seen before (for work the runtime does not dedupe)."""
        if event_id in self.memory.seen:
            return False
        self.memory.seen.remember(event_id, True)
        return True

    def saw_message(self, scope: Scope, channel: str, ts: str) -> None:
        """Remember the newest inbound message of a scope (the working signal goes on it)."""
        self.memory.last_inbound.remember(scope.key, (channel, ts))

    def rated_scope(self, ts: str) -> Scope | None:
        """The scope of the answer ``ts`` if it was offered feedback buttons."""
        scope = self.memory.rated.get(ts)
        return scope if isinstance(scope, Scope) else None

    async def whisper(self, channel: str, user_id: str, text: str,
                      thread_ts: str | None) -> None:
        """An ephemeral message only ``user_id`` sees."""
        await self.client.chat_postEphemeral(channel=channel, user=user_id, text=text,
                                             thread_ts=thread_ts, **NO_UNFURL)

    # outbound: the Adapter protocol --------------------------------------------------

    async def post(self, scope: Scope, text: str) -> MessageRef:
        """Post ``text``; a rate limit slack_sdk's retries did not outlast raises
        :class:`RateLimited`."""
        try:
            return await self._post_all(scope, text)
        except SlackApiError as exc:
            rate_limited(exc)
            raise

    async def _post_all(self, scope: Scope, text: str) -> MessageRef:
        parts = to_messages(text, MAX_TEXT)
        if blocks.wants_markdown_block(text):  # one message: the block holds it all
            ts = await self._post(scope, parts[0], markdown=text)
            return MessageRef(scope=scope, id=ts)
        first = await self._post(scope, parts[0])
        extra = [await self._post(scope, part) for part in parts[1:]]
        if extra:
            self.memory.parts.remember(f"{scope.channel}:{first}", extra)
        return MessageRef(scope=scope, id=first)

    async def edit(self, ref: MessageRef, text: str) -> None:
        """Edit a reply (and its extra messages); a rate limit raises :class:`RateLimited`."""
        try:
            await self._edit(ref, text)
        except SlackApiError as exc:
            rate_limited(exc)
            raise

    async def _edit(self, ref: MessageRef, text: str) -> None:
        parts = to_messages(text, MAX_TEXT)
        channel = ref.scope.channel
        key = f"{channel}:{ref.id}"
        extra: list[str] = list(self.memory.parts.get(key, []))
        if blocks.wants_markdown_block(text):
            parts = parts[:1]
            await self.client.chat_update(channel=channel, ts=ref.id, text=parts[0],
                                          blocks=[blocks.markdown_block(text)], **NO_UNFURL)
            self.memory.streamed.remember(ref.id, text)
        else:
            await self.client.chat_update(channel=channel, ts=ref.id, text=parts[0],
                                          blocks=[] if ref.id in self.memory.streamed else None,
                                          **NO_UNFURL)
            self.memory.streamed.pop(ref.id, None)
        self.memory.texts.remember(ref.id, parts[0])
        for i, part in enumerate(parts[1:]):
            if i < len(extra):
                await self.client.chat_update(channel=channel, ts=extra[i], text=part,
                                              **NO_UNFURL)
                self.memory.texts.remember(extra[i], part)
            else:
                extra.append(await self._post(ref.scope, part))
        for ts in extra[len(parts) - 1 :]:
            await self.client.chat_delete(channel=channel, ts=ts)
        del extra[len(parts) - 1 :]
        if extra:
            self.memory.parts.remember(key, extra)
        else:
            self.memory.parts.pop(key, None)

    async def offer_feedback(self, ref: MessageRef) -> None:
        """Slack's feedback buttons under the answer's last message."""
        key = f"{ref.scope.channel}:{ref.id}"
        ts = ([ref.id, *self.memory.parts.get(key, [])])[-1]
        text = self.memory.texts.get(ts)
        if text is None:
            return
        streamed = self.memory.streamed.get(ts)
        shown = (blocks.markdown_with_feedback(streamed) if streamed is not None
                 else blocks.answer_with_feedback(text))
        await self.client.chat_update(channel=ref.scope.channel, ts=ts, text=text, blocks=shown,
                                      **NO_UNFURL)
        self.memory.rated.remember(ts, ref.scope)

    # native streaming (SupportsStreaming) ------------------------------------------

    def can_stream(self, scope: Scope) -> bool:
        """Replies in threads stream natively (Slack streams only into a thread)."""
        return self._streaming and scope.thread is not None

    async def start_stream(self, scope: Scope, text: str, *,
                           user_id: str | None = None) -> MessageRef:
        reader = user_id if user_id and not scope.is_dm else None  # a channel stream's reader
        try:
            async with self.pacer.turn(scope.channel):
                resp = await self.client.chat_startStream(
                    channel=scope.channel, thread_ts=scope.thread or "", markdown_text=text,
                    recipient_user_id=reader,
                    recipient_team_id=(scope.workspace or None) if reader else None,
                    **NO_UNFURL)
        except SlackApiError as exc:
            if api_error(exc) in STREAMING_REFUSED:
                log.info("slack: streaming is not available (%s); posting and editing",
                         api_error(exc))
                self._streaming = False
            raise
        ts = str(resp["ts"])
        self.memory.streamed.remember(ts, text)
        return MessageRef(scope=scope, id=ts)

    async def append_stream(self, ref: MessageRef, text: str) -> None:
        await self._stream_call("append", ref, text)

    async def stop_stream(self, ref: MessageRef, text: str = "") -> None:
        await self._stream_call("stop", ref, text)

    async def _stream_call(self, kind: str, ref: MessageRef, text: str) -> None:
        try:
            if kind == "append":
                await self.client.chat_appendStream(channel=ref.scope.channel, ts=ref.id,
                                                    markdown_text=text)
            else:
                await self.client.chat_stopStream(channel=ref.scope.channel, ts=ref.id,
                                                  markdown_text=text or None)
        except SlackApiError as exc:
            if api_error(exc) == "message_not_in_streaming_state":
                raise StreamExpired(api_error(exc)) from exc
            raise
        shown = self.memory.streamed.get(ref.id, "") + text
        self.memory.streamed.remember(ref.id, shown)
        self.memory.texts.remember(ref.id, to_messages(shown, MAX_TEXT)[0])

    # assistant threads ------------------------------------------------------------

    async def suggest_prompts(self, channel: str, thread_ts: str) -> None:
        """A new assistant thread: the configured suggested prompts."""
        prompts = [p.model_dump() for p in self.settings.suggested_prompts]
        if not prompts:
            return
        try:
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, prompts=prompts,
                title=self.settings.suggested_prompts_title)
        except SlackApiError as exc:
            log.warning("slack: could not suggest prompts: %s", api_error(exc))

    async def _set_status(self, scope: Scope, status: str) -> None:
        if not self._status or scope.thread is None:
            return
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=scope.channel, thread_ts=scope.thread, status=status,
                loading_messages=LOADING if status else None)
        except SlackApiError as exc:
            if api_error(exc) in STREAMING_REFUSED:
                self._status = False  # not an AI app here: the reactions are the signal
            log.debug("slack: assistant.threads.setStatus: %s", api_error(exc))

    async def _title(self, message: InboundMessage) -> None:
        """An assistant thread (a DM thread) is titled after its first message."""
        scope = message.scope
        if not (scope.is_dm and scope.thread) or scope.key in self.memory.titled:
            return
        self.memory.titled.remember(scope.key, True)
        title = " ".join(message.text.split())[:60] or "Conversation"
        try:
            await self.client.assistant_threads_setTitle(channel_id=scope.channel,
                                                         thread_ts=scope.thread, title=title)
        except SlackApiError as exc:
            log.debug("slack: assistant.threads.setTitle: %s", api_error(exc))

    async def show_stop(self, scope: Scope) -> MessageRef:
        async with self.pacer.turn(scope.channel):
            resp = await self.client.chat_postMessage(
                channel=scope.channel, thread_ts=scope.thread, text=blocks.WORKING_TEXT,
                blocks=blocks.stop_blocks(scope.key), **NO_UNFURL)
        return MessageRef(scope=scope, id=str(resp["ts"]))

    async def hide_stop(self, ref: MessageRef) -> None:
        await self.client.chat_delete(channel=ref.scope.channel, ts=ref.id)

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        """Share a file in the scope (files_upload_v2: needs the ``files:write`` scope)."""
        async with self.pacer.turn(scope.channel):
            await self.client.files_upload_v2(
                channel=scope.channel, thread_ts=scope.thread, content=data, filename=name,
                title=name, initial_comment=to_messages(comment, MAX_TEXT)[0] if comment
                else None, **NO_UNFURL)
        return MessageRef(scope=scope, id="")

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        """A reaction on ``message_id`` (a ts): a character is turned into its Slack name."""
        name = emoji_name(emoji)
        try:
            await self.client.reactions_add(channel=scope.channel, timestamp=message_id,
                                            name=name)
        except SlackApiError as exc:
            error = api_error(exc)
            if error == "invalid_name":
                raise ValueError(f"Slack has no emoji {emoji!r}") from exc
            if error != "already_reacted":
                raise

    async def acknowledge(self, message: InboundMessage) -> None:
        """👀 on an accepted message until its turn ends (⏳ too while it runs)."""
        seen = (message.scope.channel, message.message_id)
        waiting = self.memory.acked.setdefault(message.scope.key, deque(maxlen=100))
        if seen in waiting:  # once is enough
            return
        waiting.append(seen)
        if message.scope.key not in self.memory.last_inbound:  # a replica that did not receive it
            self.saw_message(message.scope, *seen)
        await self._reaction("add", *seen, SEEN_REACTION)
        await self._title(message)

    async def typing(self, scope: Scope) -> None:
        await self._set_status(scope, "is working…")
        target = self.memory.last_inbound.get(scope.key)
        working = self.memory.working.setdefault(scope.key, set())
        if target is None or target in working:
            return
        working.add(target)
        await self._reaction("add", *target)

    async def done(self, scope: Scope) -> None:
        if scope.key in self.memory.working:
            await self._set_status(scope, "")
        for target in self.memory.working.pop(scope.key, set()):
            await self._reaction("remove", *target)
        waiting = self.memory.acked.get(scope.key)
        if waiting:  # turns run in arrival order: the oldest acknowledged one just ended
            await self._reaction("remove", *waiting.popleft(), SEEN_REACTION)
            if not waiting:
                self.memory.acked.pop(scope.key, None)

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        async with self.pacer.turn(view.scope.channel):
            resp = await self.client.chat_postMessage(
                channel=view.scope.channel,
                thread_ts=view.scope.thread,
                text=blocks.approval_text(view),
                blocks=blocks.approval_blocks(view),
                **NO_UNFURL,
            )
        if (attachment := blocks.approval_attachment(view)) is not None:
            await self._attach_full_input(view, *attachment)
        return MessageRef(scope=view.scope, id=str(resp["ts"]))

    async def _attach_full_input(self, view: ApprovalView, name: str, data: bytes) -> None:
        """The whole input of a prompt that shows only a preview, as a file in its thread."""
        try:
            await self.send_file(view.scope, name, data,
                                 comment=f"The whole input of the {view.tool_name} approval "
                                         "request above (what runs if approved).")
        except Exception as exc:
            log.warning("slack: could not attach the input of %s: %s", view.request_id, exc)
            async with self.pacer.turn(view.scope.channel):
                await self.client.chat_postMessage(
                    channel=view.scope.channel, thread_ts=view.scope.thread,
                    text=(":warning: The whole input of the approval request above could not "
                          f"be attached ({type(exc).__name__}); only a preview is shown. "
                          "Deny it unless you know what it runs."))

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        await self.client.chat_update(
            channel=ref.scope.channel,
            ts=ref.id,
            text=f"{blocks.approval_text(view)} — {text}",
            blocks=blocks.resolved_blocks(view, text),
            **NO_UNFURL,
        )

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        parts = to_messages(text, MAX_TEXT)
        for part in parts:
            if user_id:
                await self.client.chat_postEphemeral(
                    channel=scope.channel, user=user_id, text=part, thread_ts=scope.thread,
                    **NO_UNFURL,
                )
            else:
                await self._post(scope, part)

    # helpers ---------------------------------------------------------------------

    async def _post(self, scope: Scope, text: str, *, markdown: str | None = None) -> str:
        """Post mrkdwn ``text``; with ``markdown``, that in a ``markdown`` block (``text``
        stays the notification's fallback)."""
        async with self.pacer.turn(scope.channel):
            resp = await self.client.chat_postMessage(
                channel=scope.channel,
                thread_ts=scope.thread,
                text=text,
                **NO_UNFURL,
                blocks=[blocks.markdown_block(markdown)] if markdown else None,
            )
        ts = str(resp["ts"])
        self.memory.texts.remember(ts, text)
        if markdown:
            self.memory.streamed.remember(ts, markdown)
        return ts

    async def _reaction(self, action: str, channel: str, ts: str,
                        name: str = WORKING_REACTION) -> None:
        """Add or remove a reaction; a cosmetic failure is only logged."""
        try:
            if action == "add":
                await self.client.reactions_add(channel=channel, timestamp=ts, name=name)
            else:
                await self.client.reactions_remove(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            error = api_error(exc)
            if error not in ("already_reacted", "no_reaction", "message_not_found"):
                log.warning("slack: reactions.%s failed: %s", action, error)


STREAM_CHARS = 12_000
"""Markdown per streamed message before the rest rolls over into a new one."""
STREAMING_REFUSED = frozenset({"not_allowed", "not_allowed_token_type", "missing_scope",
                               "unknown_method", "method_deprecated", "feature_not_enabled",
                               "not_authorized"})
"""Errors that mean this workspace or app cannot use streaming / assistant threads."""
LOADING = ["Reading the thread…", "Thinking…", "Working on it…"]


def emoji_name(emoji: str) -> str:
    """Slack's name for an emoji: a character is named (``thumbsup``), ``:tada:`` → ``tada``."""
    text = emoji.strip()
    if not text.isascii():
        text = emoji_lib.demojize(text, language="alias")
    name = text.strip(":").split("::")[0]
    if not re.fullmatch(r"[a-z0-9_+\-']{1,64}", name):
        raise ValueError(f"{emoji!r} is not one emoji")
    return name


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def api_error(exc: SlackApiError) -> str:
    """Slack's error code (``ratelimited``, ``channel_not_found``...) or the HTTP status."""
    data = exc.response.data
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {exc.response.status_code}"


def rate_limited(exc: SlackApiError) -> None:
    """Raise :class:`RateLimited` from ``exc`` if it is Slack's 429 (``Retry-After``)."""
    if exc.response.status_code != 429 and api_error(exc) != "ratelimited":
        return
    header = {k.lower(): v for k, v in (exc.response.headers or {}).items()}.get("retry-after")
    if isinstance(header, list):
        header = header[0] if header else None
    try:
        wait: float | None = float(header) if header is not None else None
    except ValueError:
        wait = None
    raise RateLimited(wait, f"Slack: ratelimited ({exc.response.status_code})") from exc


def create_adapter(settings: SlackConfig | Mapping[str, Any], bot: BotAPI) -> SlackAdapter:
    """The ``lettabot.adapters`` entry point: the validated ``[slack]`` section + the bot.
    (A mapping is validated here: for tests and callers without a config.)"""
    if not isinstance(settings, SlackConfig):
        settings = SlackConfig.model_validate(dict(settings))
    return SlackAdapter(settings, bot)
