"""discord.py messages → :class:`InboundMessage` (or None: not for the bot).

Pure functions of the message, the bot's user id and the settings: no I/O (opening a
thread for a mention is the listener's, :mod:`lettabot_discord.listeners`).
"""

from __future__ import annotations

import discord

from lettabot.runtime.adapter import Attachment, InboundMessage
from lettabot_discord.render import strip_mention
from lettabot_discord.scopes import scope_of_channel
from lettabot_discord.settings import DiscordSettings

__all__ = ["inbound_from_message", "wants_thread"]

_THREADABLE = (discord.TextChannel,)
_USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


def inbound_from_message(message: discord.Message, me: int,
                         settings: DiscordSettings) -> InboundMessage | None:
    """The message for the runtime, scoped to where it was posted (a thread, a channel's
    top level, a DM), or None when it is not for the bot: its own, not a user message, from
    another bot (without ``allow_bots``), or outside the allowed guilds and channels."""
    author = message.author
    if author.id == me or message.type not in _USER_MESSAGES:
        return None
    if author.bot and not settings.allow_bots:
        return None
    channel = message.channel
    guild_id = message.guild.id if message.guild else None
    mentioned = guild_id is None or any(u.id == me for u in message.mentions)
    if isinstance(channel, discord.Thread):
        if not settings.allows_place(guild_id, channel.id, channel.parent_id):
            return None
    elif not settings.allows_place(guild_id, channel.id):
        return None
    return InboundMessage(
        scope=scope_of_channel(channel, guild_id),
        user_id=str(author.id),
        user_name=author.display_name,
        text=strip_mention(message.content, me),
        message_id=str(message.id),
        mentioned=mentioned,
        is_bot=author.bot,
        attachments=tuple(
            Attachment(name=a.filename, url=a.url, content_type=a.content_type, size=a.size)
            for a in message.attachments
        ),
        received_at=message.created_at,
    )


def wants_thread(message: discord.Message, inbound: InboundMessage,
                 settings: DiscordSettings) -> bool:
    """Whether a thread should be opened on ``message`` for its conversation: a mention
    at a guild channel's top level, with ``reply_mode = "thread"`` (the listener also
    asks whether its author may talk: no thread for a refusal)."""
    return (
        message.guild is not None
        and inbound.scope.thread is None
        and inbound.mentioned
        and settings.reply_mode == "thread"
        and isinstance(message.channel, _THREADABLE)
    )
