"""Discord channels ↔ conversation scopes.

- a thread: ``Scope(workspace=<guild>, channel=<parent channel>, thread=<thread>)``
- a channel's top level: ``Scope(workspace=<guild>, channel=<channel>)``
- a DM: ``Scope(workspace="", channel=<DM channel>, is_dm=True)``

Messages go to the thread if there is one, else to the channel.
"""

from __future__ import annotations

from typing import Any

import discord

from lettabot.runtime.adapter import Scope

__all__ = ["ADAPTER", "scope_of_channel", "target_channel_id"]

ADAPTER = "discord"


def scope_of_channel(channel: Any, guild_id: int | None) -> Scope:
    """The scope of a message or command in ``channel`` (a thread, a channel, a DM)."""
    if guild_id is None or isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return Scope(adapter=ADAPTER, channel=str(channel.id), is_dm=True)
    if isinstance(channel, discord.Thread):
        return Scope(
            adapter=ADAPTER,
            workspace=str(guild_id),
            channel=str(channel.parent_id),
            thread=str(channel.id),
        )
    return Scope(adapter=ADAPTER, workspace=str(guild_id), channel=str(channel.id))


def thread_scope(guild_id: int, parent_id: int, thread_id: int) -> Scope:
    return Scope(
        adapter=ADAPTER, workspace=str(guild_id), channel=str(parent_id), thread=str(thread_id)
    )


def target_channel_id(scope: Scope) -> int:
    """The channel id to post in for ``scope``: its thread, else its channel."""
    if scope.adapter != ADAPTER:
        raise ValueError(f"not a Discord scope: {scope.key}")
    return int(scope.thread or scope.channel)
