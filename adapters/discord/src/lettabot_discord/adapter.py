"""The Discord adapter: discord.py events in, ``Adapter`` calls out.

Inbound: a message that @mentions the bot in a channel opens a thread on that message
(``reply_mode = "thread"``) and the thread is the conversation. Every other message in an
allowed place is passed on with its scope and an exact ``mentioned``: the runtime answers
an unmentioned one only where a conversation already exists (a thread the bot answered in,
even before a restart) or without ``access.require_mention``; DMs need no mention.
Guild and channel lists and ``allow_bots`` are applied here; who may talk is the
runtime's access policy. Approval clicks and ``/lettabot`` commands go
to the :class:`BotAPI`. Outbound calls catch and log Discord's HTTP errors one call at a
time, so a refused message never stops the adapter; rate limits are discord.py's job (a
429 it does not wait out reaches the runtime as :class:`RateLimited` from ``post``/``edit``).

The package's layout: :mod:`~lettabot_discord.settings` (the ``[discord]`` section),
:mod:`~lettabot_discord.events` (messages → :class:`InboundMessage`, pure),
:mod:`~lettabot_discord.listeners` (what discord.py calls, against ``ListenerHost``), this
module (lifecycle, outbound) and :func:`create_adapter` (the ``lettabot.adapters`` entry
point).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import anyio
import discord
import emoji as emoji_lib
from discord import app_commands
from discord.http import handle_message_parameters
from discord.utils import MISSING

from lettabot.runtime.adapter import (
    AdapterLimits,
    ApprovalDecision,
    ApprovalView,
    Attachment,
    BotAPI,
    MessageRef,
    RateLimited,
    Scope,
)
from lettabot.runtime.config import ConfigError
from lettabot.runtime.inflight import InFlight
from lettabot_discord.approvals import ApprovalButton, approval_view, disabled_view
from lettabot_discord.commands import lettabot_group
from lettabot_discord.feedback import FeedbackButton, StopButton, feedback_view, stop_view
from lettabot_discord.listeners import Listeners
from lettabot_discord.render import (
    MAX_MESSAGE,
    approval_attachment,
    approval_text,
    clip,
    resolved_text,
)
from lettabot_discord.scopes import ADAPTER, target_channel_id
from lettabot_discord.settings import DiscordConfig, DiscordSettings

__all__ = ["PERMISSIONS", "DiscordAdapter", "DiscordAdapterError", "create_adapter", "intents"]

log = logging.getLogger(__name__)

PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
)
"""What the bot needs in a channel (309237713920); the README's invite URL asks for it."""


def quiet() -> discord.MessageFlags:
    """The flags of every message the bot sends or edits: no link previews. A preview is
    fetched by Discord's servers without anyone clicking, so a URL the agent writes with
    data in it would carry that data out; every send passes ``suppress_embeds=True``."""
    flags = discord.MessageFlags()
    flags.suppress_embeds = True
    return flags

class DiscordAdapterError(ConfigError):
    """The adapter cannot run: no token, a rejected token, a missing privileged intent.
    A config error: ``lettabot run`` prints it in one line and exits 2."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def intents() -> discord.Intents:
    """Guilds, guild and DM messages, and the privileged message-content intent."""
    value = discord.Intents.none()
    value.guilds = True
    value.guild_messages = True
    value.dm_messages = True
    value.message_content = True
    return value


class _Client(discord.Client):
    """discord.py's client wired to one adapter: one gateway session (no ``shard_count``);
    :class:`_ShardedClient` for shards."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(
            intents=intents(), allowed_mentions=discord.AllowedMentions.none(), **options
        )
        self.tree = app_commands.CommandTree(self)
        self.lettabot_adapter = adapter
        listeners = adapter.listeners
        self.lettabot_on_message = listeners.on_message
        self.lettabot_on_decision = listeners.on_decision
        self.lettabot_on_feedback = listeners.on_feedback
        self.lettabot_on_stop = listeners.on_stop
        parsers = self._connection.parsers
        for event, parse in list(parsers.items()):
            parsers[event] = _guarded(event, parse)

    async def setup_hook(self) -> None:
        await self.lettabot_adapter.setup()

    async def on_ready(self) -> None:
        self.lettabot_adapter.ready()

    async def on_message(self, message: discord.Message) -> None:
        await self.lettabot_on_message(message)


class _ShardedClient(_Client, discord.AutoShardedClient):
    """The configured shards (``shard_count``, ``shard_ids``), one gateway session each."""


def _client(adapter: DiscordAdapter, options: dict[str, Any]) -> _Client:
    """discord.py's ``AutoShardedClient`` with ``shard_count`` and ``shard_ids`` when
    sharded (it connects those shards only), else a plain ``Client``."""
    sharding = adapter.settings.sharding()
    if sharding:
        return _ShardedClient(adapter, **sharding, **options)
    return _Client(adapter, **options)


class DiscordAdapter:
    """lettabot on Discord (see the module docstring)."""

    name = ADAPTER
    limits = AdapterLimits(
        max_message_length=MAX_MESSAGE,
        can_edit=True,
        has_buttons=True,
        min_edit_interval=1.0,
        can_type=True,
    )

    def __init__(self, settings: DiscordSettings, bot: BotAPI, **client_options: Any) -> None:
        self.settings = settings
        self.bot = bot
        client_options.setdefault("http_trace", self._error_counter())
        self._client_options = client_options
        self.handlers = InFlight()
        """discord.py's event tasks for us: finished before the client closes."""
        self.listeners = Listeners(self)
        """What discord.py calls: messages, clicks, commands."""
        self.client = _client(self, client_options)

    def _error_counter(self) -> aiohttp.TraceConfig:
        """Counts REST calls Discord answered with an error (429s included, which discord.py
        waits out itself) for ``/metrics``."""
        trace = aiohttp.TraceConfig()

        async def on_request_end(_session: Any, _context: Any,
                                 params: aiohttp.TraceRequestEndParams) -> None:
            record = getattr(self.bot, "platform_error", None)  # never breaks the call
            if params.response.status >= 400 and record is not None:
                record("discord", params.response.status)

        trace.on_request_end.append(on_request_end)
        return trace

    # lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        token = self.settings.token_value()
        if not token:
            raise DiscordAdapterError(
                "discord.token is not set — set LETTABOT_DISCORD__TOKEN to the bot token"
            )
        if self.client.is_closed():
            self.client = _client(self, self._client_options)
        try:
            async with self.client:
                try:
                    await self.client.start(token)
                finally:
                    # A message being taken in (a thread being opened) is handed on before
                    # the client closes: the runtime answers it or says to send it again.
                    with anyio.CancelScope(shield=True):
                        if not await self.handlers.idle():
                            log.warning("discord: %d event handlers still ran at shutdown",
                                        self.handlers.count)
        except discord.LoginFailure:
            raise DiscordAdapterError(
                "Discord rejected the bot token — copy it again from the Developer Portal "
                "(your application → Bot → Reset Token) into LETTABOT_DISCORD__TOKEN"
            ) from None
        except discord.PrivilegedIntentsRequired:
            raise DiscordAdapterError(
                "Discord refused the Message Content intent — enable it in the Developer "
                "Portal (your application → Bot → Privileged Gateway Intents)"
            ) from None

    async def setup(self) -> None:
        """After login, before the gateway: buttons and slash commands."""
        self.client.add_dynamic_items(ApprovalButton, FeedbackButton, StopButton)
        tree = self.client.tree
        tree.add_command(lettabot_group(self.listeners.command))
        try:
            if self.settings.guild_ids:
                for guild_id in self.settings.guild_ids:
                    guild = discord.Object(guild_id)
                    tree.copy_global_to(guild=guild)
                    await tree.sync(guild=guild)
            else:
                await tree.sync()
        except discord.HTTPException as exc:
            log.warning(
                "discord: could not register the /lettabot commands (%s); invite the bot "
                "with the applications.commands scope (see the README)",
                exc,
            )

    def is_ready(self) -> bool:
        """Logged in and the gateway connection is up."""
        return self.client.is_ready() and not self.client.is_closed()

    def where(self) -> str:
        user = self.client.user
        return f"gateway as {user}" if user else "gateway"

    def ready(self) -> None:
        app_id = self.client.application_id
        if app_id:
            url = discord.utils.oauth_url(
                app_id, permissions=PERMISSIONS, scopes=("bot", "applications.commands")
            )
            log.info("discord: connected as %s; invite URL: %s", self.client.user, url)

    def me(self) -> int:
        """The bot's user id (set at login)."""
        assert self.client.user is not None
        return self.client.user.id

    async def show_stop(self, scope: Scope) -> MessageRef:
        sent = await self._channel(scope).send("⏳ Working on it…", view=stop_view(),
                                               suppress_embeds=True)
        return MessageRef(scope=scope, id=str(sent.id))

    async def hide_stop(self, ref: MessageRef) -> None:
        await self._channel(ref.scope).get_partial_message(int(ref.id)).delete()

    async def offer_feedback(self, ref: MessageRef) -> None:
        """👍 / 👎 under the answer's last message."""
        await self._edit(ref, view=feedback_view())

    # outbound ----------------------------------------------------------------

    def _channel(self, scope: Scope) -> discord.PartialMessageable:
        guild_id = int(scope.workspace) if scope.workspace else None
        return self.client.get_partial_messageable(target_channel_id(scope), guild_id=guild_id)

    async def _edit(self, ref: MessageRef, *, content: str = MISSING,
                    view: discord.ui.View = MISSING) -> None:
        """Edit a message by id with link previews kept off (``PartialMessage.edit`` cannot
        set message flags; an edit that added a link would otherwise unfurl it)."""
        with handle_message_parameters(content=content, view=view, flags=quiet(),
                                       allowed_mentions=discord.AllowedMentions.none()) as params:
            await self.client.http.edit_message(target_channel_id(ref.scope), int(ref.id),
                                                params=params)

    async def post(self, scope: Scope, text: str) -> MessageRef:
        """Post ``text`` (already split to :attr:`limits` by the runtime). A refusal raises
        (discord.py has already waited out rate limits): the runtime retries, then says so."""
        channel = self._channel(scope)
        ref_id = ""
        for start in range(0, max(len(text), 1), MAX_MESSAGE):
            chunk = text[start : start + MAX_MESSAGE] or "…"
            try:
                sent = await channel.send(chunk, suppress_embeds=True)
            except discord.DiscordException as exc:
                rate_limited(exc)
                raise
            ref_id = str(sent.id)
        return MessageRef(scope=scope, id=ref_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        """Edit a posted message; a failure raises (the runtime then posts the text anew)."""
        try:
            await self._edit(ref, content=clip(text, MAX_MESSAGE) or "…")
        except discord.DiscordException as exc:
            rate_limited(exc)
            raise

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        """Post ``data`` as an attachment (Discord takes up to 10 MB without boosts)."""
        sent = await self._channel(scope).send(
            clip(comment, MAX_MESSAGE) or None, file=discord.File(io.BytesIO(data), filename=name),
            allowed_mentions=discord.AllowedMentions.none(), suppress_embeds=True)
        return MessageRef(scope=scope, id=str(sent.id))

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        """A reaction on ``message_id``: a name (``tada``, ``:tada:``) becomes its character."""
        text = emoji.strip()
        if text.isascii():
            named = emoji_lib.emojize(f":{text.strip(':')}:", language="alias")
            if named == f":{text.strip(':')}:":
                raise ValueError(f"{emoji!r} is not an emoji name")
            text = named
        elif not emoji_lib.purely_emoji(text):
            raise ValueError(f"{emoji!r} is not one emoji")
        channel = self._channel(scope)
        if scope.thread and message_id == scope.thread:  # a thread's starter message is
            channel = self.client.get_partial_messageable(  # in the parent channel
                int(scope.channel), guild_id=int(scope.workspace) if scope.workspace else None)
        try:
            await channel.get_partial_message(int(message_id)).add_reaction(text)
        except discord.HTTPException as exc:
            if exc.status == 400:
                raise ValueError(f"Discord refused {emoji!r}") from exc
            raise

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        """An attachment from Discord's CDN (the URL Discord's gateway gave; no token)."""
        if not attachment.url:
            raise ValueError("no URL")
        if attachment.size is not None and attachment.size > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        data = await self.client.http.get_from_cdn(attachment.url)
        if len(data) > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        return data

    async def typing(self, scope: Scope) -> None:
        try:
            await self._channel(scope).typing()
        except discord.HTTPException as exc:
            log.debug("discord: typing in %s failed: %s", scope.key, exc)

    async def done(self, scope: Scope) -> None:
        """Nothing to remove: Discord's typing indicator stops by itself."""

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        requester = view.requested_by
        mentions = (
            discord.AllowedMentions(users=[discord.Object(int(requester))])
            if requester and requester.isdigit()
            else discord.AllowedMentions.none()
        )
        attachment = approval_attachment(view)  # the whole input, when only a preview fits
        files = ([discord.File(io.BytesIO(attachment[1]), filename=attachment[0])]
                 if attachment is not None else [])
        try:
            sent = await self._channel(view.scope).send(
                approval_text(view), view=approval_view(view), allowed_mentions=mentions,
                suppress_embeds=True,
                files=files,
            )
        except discord.HTTPException as exc:
            log.warning("discord: could not post approval %s: %s", view.request_id, exc)
            return MessageRef(scope=view.scope, id="")
        return MessageRef(scope=view.scope, id=str(sent.id))

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        if not ref.id:
            return
        decisions: list[ApprovalDecision] = (
            ["approve", "deny", "always"] if view.allow_always else ["approve", "deny"]
        )
        try:
            await self._edit(
                ref,
                content=resolved_text(approval_text(view), text),
                view=disabled_view(view.request_id, decisions),
            )
        except discord.HTTPException as exc:
            log.warning("discord: could not resolve approval %s: %s", view.request_id, exc)

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        """Discord has no ephemeral messages outside interactions: a note addressed to the user."""
        mentions = discord.AllowedMentions.none()
        if user_id and user_id.isdigit():
            text = f"<@{user_id}> {text}"
            mentions = discord.AllowedMentions(users=[discord.Object(int(user_id))])
        try:
            await self._channel(scope).send(clip(text, MAX_MESSAGE), allowed_mentions=mentions,
                                            suppress_embeds=True)
        except discord.HTTPException as exc:
            log.warning("discord: notify in %s failed: %s", scope.key, exc)


def _guarded(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    """A gateway parser that logs a payload it cannot read instead of dropping the connection.

    discord.py lets a parser's exception end ``Client.connect``: one odd payload would stop
    the adapter. Each event is independent, so it is logged and skipped.
    """

    def parse_or_log(data: Any) -> None:
        try:
            parse(data)
        except Exception:
            log.exception("discord: skipped a %s event that could not be read", event)

    return parse_or_log


def rate_limited(exc: discord.DiscordException) -> None:
    """Raise :class:`RateLimited` from ``exc`` if it is Discord's 429 that discord.py did
    not wait out itself."""
    if isinstance(exc, discord.RateLimited):
        raise RateLimited(exc.retry_after, f"Discord: {exc}") from exc
    if isinstance(exc, discord.HTTPException) and exc.status == 429:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        try:
            wait: float | None = float(header) if header is not None else None
        except ValueError:
            wait = None
        raise RateLimited(wait, f"Discord: {exc}") from exc


def create_adapter(settings: DiscordConfig | Mapping[str, Any], bot: BotAPI) -> DiscordAdapter:
    """The ``lettabot.adapters`` entry point: the validated ``[discord]`` section + the bot.
    (A mapping is validated here: for tests and callers without a config.)"""
    return DiscordAdapter(DiscordSettings.from_mapping(settings), bot)
