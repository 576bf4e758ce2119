"""The Discord adapter: discord.py events in, ``Adapter`` calls out.

Inbound: a message that @mentions the bot in a channel opens a thread on that message
(``reply_mode = "thread"``) and the thread is the conversation. Every other message in an
allowed place is passed on with its scope and an exact ``mentioned``: the runtime answers
an unmentioned one only where a conversation already exists (a thread the bot answered in,
even before a restart) or without ``access.require_mention``; DMs need no mention.
Guild and channel lists and ``allow_bots`` are applied here; who may talk is the
runtime's access policy. Approval clicks and ``/lettabot`` commands go
to the :class:`BotAPI`. Outbound calls catch and log Discord's HTTP errors one call at a
time, so a refused message never stops the adapter; rate limits are discord.py's job.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

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
    CommandResult,
    DecisionOutcome,
    InboundMessage,
    MessageRef,
    Scope,
)
from lettabot.runtime.config import ConfigError
from lettabot.runtime.inflight import InFlight
from lettabot_discord.approvals import ApprovalButton, approval_view, disabled_view
from lettabot_discord.commands import lettabot_group
from lettabot_discord.feedback import FeedbackButton, StopButton, feedback_view, stop_view
from lettabot_discord.render import (
    MAX_MESSAGE,
    approval_attachment,
    approval_text,
    clip,
    resolved_text,
    strip_mention,
    thread_name,
)
from lettabot_discord.scopes import ADAPTER, scope_of_channel, target_channel_id, thread_scope
from lettabot_discord.settings import DiscordSettings

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

EXPIRED = (
    "This request has expired (lettabot restarted or the turn ended); "
    "ask again if the tool should run."
)
_THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440
_THREADABLE = (discord.TextChannel,)
_USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


_THREAD_EXISTS = 160004
"""Discord's error code: "A thread has already been created for this message"."""



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
    """discord.py's client wired to one adapter."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(
            intents=intents(), allowed_mentions=discord.AllowedMentions.none(), **options
        )
        self.tree = app_commands.CommandTree(self)
        self.lettabot_adapter = adapter
        self.lettabot_on_decision = adapter.on_decision
        self.lettabot_on_feedback = adapter.on_feedback
        self.lettabot_on_stop = adapter.on_stop
        parsers = self._connection.parsers
        for event, parse in list(parsers.items()):
            parsers[event] = _guarded(event, parse)

    async def setup_hook(self) -> None:
        await self.lettabot_adapter.setup()

    async def on_ready(self) -> None:
        self.lettabot_adapter.ready()

    async def on_message(self, message: discord.Message) -> None:
        await self.lettabot_adapter.on_message(message)


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
        self.client = _Client(self, **client_options)
        self.handlers = InFlight()
        """discord.py's event tasks for us: finished before the client closes."""

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
            self.client = _Client(self, **self._client_options)
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
        tree.add_command(lettabot_group(self.command))
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

    # inbound -----------------------------------------------------------------

    def _me(self) -> int:
        assert self.client.user is not None  # set at login
        return self.client.user.id

    async def on_message(self, message: discord.Message) -> None:
        with self.handlers.track():
            try:
                inbound = await self._inbound(message)
                if inbound is not None:
                    await self.bot.handle_message(inbound)
            except Exception:
                log.exception("discord: could not handle message %s", message.id)

    async def _inbound(self, message: discord.Message) -> InboundMessage | None:
        """The message for the runtime, or None when it is not for the bot."""
        me = self._me()
        author = message.author
        if author.id == me or message.type not in _USER_MESSAGES:
            return None
        if author.bot and not self.settings.allow_bots:
            return None
        channel = message.channel
        guild_id = message.guild.id if message.guild else None
        mentioned = guild_id is None or any(u.id == me for u in message.mentions)
        if isinstance(channel, discord.Thread):
            if not self.settings.allows_place(guild_id, channel.id, channel.parent_id):
                return None
        elif not self.settings.allows_place(guild_id, channel.id):
            return None
        text = strip_mention(message.content, me)
        scope = scope_of_channel(channel, guild_id)
        if (
            guild_id is not None
            and scope.thread is None
            and mentioned
            and self.bot.may_talk(self.name, str(author.id))  # no thread for a refusal
            and self.settings.reply_mode == "thread"
            and isinstance(channel, _THREADABLE)
        ):
            scope = await self._open_thread(message, text, guild_id) or scope
        return InboundMessage(
            scope=scope,
            user_id=str(author.id),
            user_name=author.display_name,
            text=text,
            message_id=str(message.id),
            mentioned=mentioned,
            is_bot=author.bot,
            attachments=tuple(
                Attachment(name=a.filename, url=a.url, content_type=a.content_type, size=a.size)
                for a in message.attachments
            ),
            received_at=message.created_at,
        )

    async def _open_thread(
        self, message: discord.Message, text: str, guild_id: int
    ) -> Scope | None:
        try:
            thread = await message.create_thread(
                name=thread_name(text), auto_archive_duration=_THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as exc:
            if exc.code == _THREAD_EXISTS:
                # A replayed delivery: the thread opened the first time shares the message's
                # id, so this is the same scope (and the runtime's dedupe answers it once).
                return thread_scope(guild_id, message.channel.id, message.id)
            log.warning("discord: could not open a thread (%s); replying in the channel", exc)
            return None
        return thread_scope(guild_id, message.channel.id, thread.id)

    # approvals and commands ------------------------------------------------------

    async def on_decision(
        self, interaction: discord.Interaction[Any], decision: ApprovalDecision, request_id: str
    ) -> None:
        with self.handlers.track():
            await self._on_decision(interaction, decision, request_id)

    async def _on_decision(
        self, interaction: discord.Interaction[Any], decision: ApprovalDecision, request_id: str
    ) -> None:
        """A click on Approve / Deny / Always allow (possibly on a prompt from before a restart).

        Acknowledged first (Discord allows 3 s; deciding touches the store and edits the
        prompt over REST, which a rate limit can delay past that), answered after."""
        user = interaction.user
        try:
            await interaction.response.defer()  # a deferred update: nothing shown yet
        except discord.HTTPException as exc:
            log.warning("discord: could not acknowledge a click on %s: %s", request_id, exc)
        try:
            outcome = await self.bot.decide_approval(
                request_id, decision, str(user.id), user.display_name
            )
        except Exception:
            log.exception("discord: deciding approval %s failed", request_id)
            outcome = DecisionOutcome(
                status="already_decided", message="Could not record your decision; try again."
            )
        message = interaction.message
        try:
            if outcome.status == "decided" and message is not None:
                await message.edit(
                    content=resolved_text(message.content, outcome.final_text or outcome.message),
                    view=disabled_view(request_id, _decisions_on(message)), suppress=True,
                )
                return
            text = EXPIRED if outcome.status == "unknown" else outcome.message
            await interaction.followup.send(clip(text, MAX_MESSAGE), ephemeral=True,
                                            suppress_embeds=True)
            if outcome.status == "unknown" and message is not None:
                await message.edit(
                    content=resolved_text(message.content, "Expired"),
                    view=disabled_view(request_id, _decisions_on(message)), suppress=True,
                )
        except discord.HTTPException as exc:
            log.warning("discord: could not answer a click on %s: %s", request_id, exc)

    async def on_feedback(self, interaction: discord.Interaction[Any],
                          rating: Literal["good", "bad"]) -> None:
        """A 👍 / 👎 click: acknowledged at once, stored, answered only to the clicker."""
        with self.handlers.track():
            try:
                await interaction.response.defer(ephemeral=True, thinking=False)
            except discord.HTTPException as exc:
                log.warning("discord: could not acknowledge feedback: %s", exc)
            message, channel = interaction.message, interaction.channel
            if message is None or channel is None:
                return
            scope = scope_of_channel(channel, interaction.guild_id)
            stored = await self.bot.record_feedback(scope, str(message.id),
                                                    str(interaction.user.id), rating)
            text = ("Thanks — noted " + ("👍" if rating == "good" else "👎") + "." if stored
                    else "Sorry, you are not allowed to use this bot.")
            try:
                await interaction.followup.send(text, ephemeral=True, suppress_embeds=True)
            except discord.HTTPException as exc:
                log.warning("discord: could not answer a feedback click: %s", exc)

    async def on_stop(self, interaction: discord.Interaction[Any]) -> None:
        """A click on Stop: the ``stop`` command for the clicker, answered only to them."""
        with self.handlers.track():
            try:
                await interaction.response.defer(ephemeral=True, thinking=False)
            except discord.HTTPException as exc:
                log.warning("discord: could not acknowledge a Stop click: %s", exc)
            channel = interaction.channel
            if channel is None:
                return
            scope = scope_of_channel(channel, interaction.guild_id)
            result = await self.bot.run_command(scope, str(interaction.user.id), "stop")
            try:
                await interaction.followup.send(clip(result.text, MAX_MESSAGE), ephemeral=True,
                                                suppress_embeds=True)
            except discord.HTTPException as exc:
                log.warning("discord: could not answer a Stop click: %s", exc)

    async def show_stop(self, scope: Scope) -> MessageRef:
        sent = await self._channel(scope).send("⏳ Working on it…", view=stop_view(),
                                               suppress_embeds=True)
        return MessageRef(scope=scope, id=str(sent.id))

    async def hide_stop(self, ref: MessageRef) -> None:
        await self._channel(ref.scope).get_partial_message(int(ref.id)).delete()

    async def offer_feedback(self, ref: MessageRef) -> None:
        """👍 / 👎 under the answer's last message."""
        await self._edit(ref, view=feedback_view())

    async def command(self, interaction: discord.Interaction[Any], name: str) -> CommandResult:
        with self.handlers.track():
            return await self._command(interaction, name)

    async def _command(self, interaction: discord.Interaction[Any], name: str) -> CommandResult:
        channel = interaction.channel
        if channel is None:
            return CommandResult(
                text="This command works in a channel, thread or DM.", ephemeral=True
            )
        parent = getattr(channel, "parent_id", None)
        if not self.settings.allows_place(interaction.guild_id, channel.id, parent):
            return CommandResult(text="lettabot does not work in this channel.", ephemeral=True)
        scope = scope_of_channel(channel, interaction.guild_id)
        name, _, args = name.partition(" ")
        return await self.bot.run_command(scope, str(interaction.user.id), name, args)

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
            sent = await channel.send(chunk, suppress_embeds=True)
            ref_id = str(sent.id)
        return MessageRef(scope=scope, id=ref_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        """Edit a posted message; a failure raises (the runtime then posts the text anew)."""
        await self._edit(ref, content=clip(text, MAX_MESSAGE) or "…")

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


def _decisions_on(message: discord.Message) -> list[ApprovalDecision]:
    """Which buttons a prompt carries (so the disabled copy shows the same ones)."""
    found: list[ApprovalDecision] = []
    every: tuple[ApprovalDecision, ...] = ("approve", "deny", "always")
    for row in message.components:
        for child in getattr(row, "children", ()):
            cid = getattr(child, "custom_id", None) or ""
            found.extend(d for d in every if cid.startswith(f"lettabot:{d}:"))
    return found or ["approve", "deny", "always"]


def create_adapter(config: Mapping[str, Any], bot: BotAPI) -> DiscordAdapter:
    """The ``lettabot.adapters`` entry point: ``config`` is the ``[discord]`` section."""
    return DiscordAdapter(DiscordSettings.from_mapping(config), bot)
