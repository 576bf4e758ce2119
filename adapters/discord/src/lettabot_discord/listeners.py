"""discord.py events → the :class:`BotAPI`: messages, approval / feedback / Stop clicks
and ``/lettabot`` commands.

:class:`Listeners` acts through :class:`ListenerHost` — the bot, the settings, the
in-flight tracker and the bot's user id — never the whole adapter; a message becomes an
:class:`InboundMessage` in :mod:`lettabot_discord.events` (pure). A message that @mentions
the bot at a channel's top level opens a thread on that message (``reply_mode =
"thread"``), and the thread is the conversation.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import discord

from lettabot.runtime.adapter import (
    ApprovalDecision,
    BotAPI,
    CommandResult,
    DecisionOutcome,
    InboundMessage,
    Scope,
)
from lettabot.runtime.inflight import InFlight
from lettabot_discord.approvals import disabled_view
from lettabot_discord.events import inbound_from_message, wants_thread
from lettabot_discord.render import MAX_MESSAGE, clip, resolved_text, thread_name
from lettabot_discord.scopes import ADAPTER, scope_of_channel, thread_scope
from lettabot_discord.settings import DiscordSettings

__all__ = ["EXPIRED", "ListenerHost", "Listeners"]

log = logging.getLogger("lettabot_discord.adapter")

EXPIRED = (
    "This request has expired (lettabot restarted or the turn ended); "
    "ask again if the tool should run."
)
_THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440

_THREAD_EXISTS = 160004
"""Discord's error code: "A thread has already been created for this message"."""


class ListenerHost(Protocol):
    """What the listeners need from the adapter (:class:`~lettabot_discord.DiscordAdapter`)."""

    bot: BotAPI
    settings: DiscordSettings
    handlers: InFlight
    """Event handlers in flight (finished before the client closes)."""

    def me(self) -> int:
        """The bot's user id (known once logged in)."""
        ...


class Listeners:
    """The handlers discord.py calls (wired by the adapter's client)."""

    def __init__(self, host: ListenerHost) -> None:
        self.host = host

    # messages ------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        with self.host.handlers.track():
            try:
                inbound = await self.inbound(message)
                if inbound is not None:
                    await self.host.bot.handle_message(inbound)
            except Exception:
                log.exception("discord: could not handle message %s", message.id)

    async def inbound(self, message: discord.Message) -> InboundMessage | None:
        """The message for the runtime (in the thread opened for it, if one was), or None
        when it is not for the bot."""
        host = self.host
        inbound = inbound_from_message(message, host.me(), host.settings)
        if inbound is None:
            return None
        if (
            message.guild is not None
            and wants_thread(message, inbound, host.settings)
            and host.bot.may_talk(ADAPTER, inbound.user_id)  # no thread for a refusal
        ):
            scope = await self._open_thread(message, inbound.text, message.guild.id)
            if scope is not None:
                inbound = inbound.model_copy(update={"scope": scope})
        return inbound

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

    # approvals, feedback, Stop -----------------------------------------------------

    async def on_decision(
        self, interaction: discord.Interaction[Any], decision: ApprovalDecision, request_id: str
    ) -> None:
        with self.host.handlers.track():
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
            outcome = await self.host.bot.decide_approval(
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
                    view=disabled_view(request_id, decisions_on(message)), suppress=True,
                )
                return
            text = EXPIRED if outcome.status == "unknown" else outcome.message
            await interaction.followup.send(clip(text, MAX_MESSAGE), ephemeral=True,
                                            suppress_embeds=True)
            if outcome.status == "unknown" and message is not None:
                await message.edit(
                    content=resolved_text(message.content, "Expired"),
                    view=disabled_view(request_id, decisions_on(message)), suppress=True,
                )
        except discord.HTTPException as exc:
            log.warning("discord: could not answer a click on %s: %s", request_id, exc)

    async def on_feedback(self, interaction: discord.Interaction[Any],
                          rating: Literal["good", "bad"]) -> None:
        """A 👍 / 👎 click: acknowledged at once, stored, answered only to the clicker."""
        with self.host.handlers.track():
            try:
                await interaction.response.defer(ephemeral=True, thinking=False)
            except discord.HTTPException as exc:
                log.warning("discord: could not acknowledge feedback: %s", exc)
            message, channel = interaction.message, interaction.channel
            if message is None or channel is None:
                return
            scope = scope_of_channel(channel, interaction.guild_id)
            stored = await self.host.bot.record_feedback(scope, str(message.id),
                                                         str(interaction.user.id), rating)
            text = ("Thanks — noted " + ("👍" if rating == "good" else "👎") + "." if stored
                    else "Sorry, you are not allowed to use this bot.")
            try:
                await interaction.followup.send(text, ephemeral=True, suppress_embeds=True)
            except discord.HTTPException as exc:
                log.warning("discord: could not answer a feedback click: %s", exc)

    async def on_stop(self, interaction: discord.Interaction[Any]) -> None:
        """A click on Stop: the ``stop`` command for the clicker, answered only to them."""
        with self.host.handlers.track():
            try:
                await interaction.response.defer(ephemeral=True, thinking=False)
            except discord.HTTPException as exc:
                log.warning("discord: could not acknowledge a Stop click: %s", exc)
            channel = interaction.channel
            if channel is None:
                return
            scope = scope_of_channel(channel, interaction.guild_id)
            result = await self.host.bot.run_command(scope, str(interaction.user.id), "stop")
            try:
                await interaction.followup.send(clip(result.text, MAX_MESSAGE), ephemeral=True,
                                                suppress_embeds=True)
            except discord.HTTPException as exc:
                log.warning("discord: could not answer a Stop click: %s", exc)

    # /lettabot -------------------------------------------------------------------

    async def command(self, interaction: discord.Interaction[Any], name: str) -> CommandResult:
        with self.host.handlers.track():
            return await self._command(interaction, name)

    async def _command(self, interaction: discord.Interaction[Any], name: str) -> CommandResult:
        channel = interaction.channel
        if channel is None:
            return CommandResult(
                text="This command works in a channel, thread or DM.", ephemeral=True
            )
        parent = getattr(channel, "parent_id", None)
        if not self.host.settings.allows_place(interaction.guild_id, channel.id, parent):
            return CommandResult(text="lettabot does not work in this channel.", ephemeral=True)
        scope = scope_of_channel(channel, interaction.guild_id)
        name, _, args = name.partition(" ")
        return await self.host.bot.run_command(scope, str(interaction.user.id), name, args)


def decisions_on(message: discord.Message) -> list[ApprovalDecision]:
    """Which buttons a prompt carries (so the disabled copy shows the same ones)."""
    found: list[ApprovalDecision] = []
    every: tuple[ApprovalDecision, ...] = ("approve", "deny", "always")
    for row in message.components:
        for child in getattr(row, "children", ()):
            cid = getattr(child, "custom_id", None) or ""
            found.extend(d for d in every if cid.startswith(f"lettabot:{d}:"))
    return found or ["approve", "deny", "always"]
