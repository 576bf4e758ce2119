"""Slack event payloads → :class:`InboundMessage` (or a reason to ignore them).

Pure functions: no I/O, so every rule here is tested on payloads alone.

Scopes: a channel message lives in its thread (``thread_ts``, or its own ``ts`` when it
starts one: the bot answers in a thread under it); a DM is one scope, and a thread
inside a DM is another.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lettabot.runtime.adapter import Attachment, InboundMessage, Scope
from lettabot.runtime.commands import COMMANDS as _ALL_COMMANDS

__all__ = ["COMMANDS", "Filters", "Identity", "Ignored", "dm_or_here", "dm_scope",
           "inbound_from_event", "received_at", "slash_scope", "text_command"]

ADAPTER = "slack"
COMMANDS = tuple(_ALL_COMMANDS)
"""The commands ``/lettabot <command>`` and "@lettabot <command>" run."""

# Message subtypes that are real user messages; everything else (edits, deletions,
# joins, topic changes...) is ignored.
_USER_SUBTYPES = {None, "file_share", "thread_broadcast", "bot_message"}


@dataclass(frozen=True)
class Identity:
    """Who the bot is in this workspace (from ``auth.test``)."""

    user_id: str
    bot_id: str | None = None


@dataclass(frozen=True)
class Ignored:
    """Why an event produced no message (logged at debug level)."""

    reason: str


@dataclass(frozen=True)
class Filters:
    """The adapter's own filters (the runtime applies user access rules)."""

    allow_bots: bool = False
    allowed_channels: frozenset[str] = frozenset()
    denied_channels: frozenset[str] = frozenset()

    def channel_ok(self, channel: str) -> bool:
        if channel in self.denied_channels:
            return False
        return not self.allowed_channels or channel in self.allowed_channels


def dm_scope(channel: str, thread_ts: str | None = None) -> Scope:
    return Scope(adapter=ADAPTER, channel=channel, thread=thread_ts, is_dm=True)


def _is_dm(event: Mapping[str, Any]) -> bool:
    channel = str(event.get("channel", ""))
    return event.get("channel_type") == "im" or channel.startswith("D")


def _clean_text(text: str, identity: Identity) -> str:
    """The text as the agent should read it: without the bot's own mention, unescaped."""
    text = re.sub(rf"<@{re.escape(identity.user_id)}(\|[^>]*)?>", "", text)
    text = re.sub(r"<((?:https?|mailto):[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"<((?:https?|mailto):[^|>]+)>", r"\1", text)
    return html.unescape(" ".join(text.split(" "))).strip()


def _attachments(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    out = []
    for f in event.get("files") or ():
        if isinstance(f, Mapping) and f.get("name"):
            out.append(
                Attachment(
                    name=str(f["name"]),
                    url=f.get("url_private"),
                    content_type=f.get("mimetype"),
                    size=f.get("size"),
                )
            )
    return tuple(out)


def inbound_from_event(
    body: Mapping[str, Any], identity: Identity, filters: Filters
) -> InboundMessage | Ignored:
    """Normalise an ``app_mention`` or ``message`` event callback."""
    event = body.get("event") or {}
    kind = event.get("type")
    subtype = event.get("subtype")
    if kind not in ("app_mention", "message"):
        return Ignored(f"event type {kind!r}")
    if subtype not in _USER_SUBTYPES:
        return Ignored(f"message subtype {subtype!r}")
    user = event.get("user") or ""
    bot_id = event.get("bot_id")
    if user == identity.user_id or (bot_id and bot_id == identity.bot_id):
        return Ignored("own message")
    is_bot = bool(bot_id) or subtype == "bot_message"
    if is_bot and not filters.allow_bots:
        return Ignored("from another bot (slack.allow_bots is off)")
    if not user and not bot_id:
        return Ignored("no author")
    channel = str(event.get("channel") or "")
    ts = str(event.get("ts") or "")
    if not channel or not ts:
        return Ignored("no channel or ts")
    thread_ts = event.get("thread_ts")
    text = str(event.get("text") or "")
    dm = _is_dm(event)
    if dm:
        scope = dm_scope(channel, thread_ts)
        mentioned = True
    else:
        if not filters.channel_ok(channel):
            return Ignored(f"channel {channel} not allowed (slack.allowed/denied_channels)")
        if kind == "message" and f"<@{identity.user_id}" in text:
            return Ignored("mention: handled as app_mention")
        team = str(body.get("team_id") or event.get("team") or "")
        scope = Scope(adapter=ADAPTER, workspace=team, channel=channel, thread=thread_ts or ts)
        mentioned = kind == "app_mention"
    return InboundMessage(
        scope=scope,
        user_id=user or str(bot_id),
        text=_clean_text(text, identity),
        message_id=ts,
        event_id=body.get("event_id"),
        mentioned=mentioned,
        is_bot=is_bot,
        attachments=_attachments(event),
        received_at=received_at(body.get("event_time")),
        raw=body,
    )


def received_at(event_time: Any) -> datetime | None:
    """``event_time`` (Unix seconds) as a time, or None when it is not one."""
    if isinstance(event_time, bool) or not isinstance(event_time, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(event_time, UTC) if event_time > 0 else None
    except (OverflowError, OSError, ValueError):  # out of range (or NaN)
        return None


_PERMALINK = re.compile(r"<?(?:https?://[^\s/]+)?/archives/([A-Z0-9]+)/p(\d{10})(\d{6})([^\s>|]*)[^\s>]*>?")
_THREAD_TS = re.compile(r"thread_ts=(\d+\.\d+)")


def slash_scope(body: Mapping[str, Any], args: str) -> tuple[Scope, str]:
    """The scope a ``/lettabot`` command acts on, and the arguments left.

    Slack sends no thread with a slash command, so a thread is named by pasting its
    link (``/lettabot reset https://…/archives/C1/p1700000000000100``); without one the
    command acts on the channel (or DM) it was typed in, or on ``thread_ts`` if Slack
    ever sends it.
    """
    channel = str(body.get("channel_id") or "")
    team = str(body.get("team_id") or "")
    thread = body.get("thread_ts")
    m = _PERMALINK.search(args)
    if m:
        channel = m.group(1)
        in_thread = _THREAD_TS.search(m.group(4))
        thread = in_thread.group(1) if in_thread else f"{m.group(2)}.{m.group(3)}"
        args = " ".join((args[: m.start()] + args[m.end() :]).split())
    if channel.startswith("D") or body.get("channel_name") == "directmessage":
        return dm_scope(channel, thread), args
    return Scope(adapter=ADAPTER, workspace=team, channel=channel, thread=thread), args


def text_command(text: str) -> str | None:
    """``reset`` / ``/reset`` / ``!reset`` alone in a message addressed to the bot."""
    m = re.fullmatch(r"[/!]?([a-z]+)[.!]?", text.strip().lower())
    return m.group(1) if m and m.group(1) in COMMANDS else None


def dm_or_here(channel: str, scope: Scope) -> Scope:
    """The scope of the channel a command was typed in (for its ephemeral answer)."""
    if channel.startswith("D"):
        return dm_scope(channel, None)
    return Scope(adapter=scope.adapter, workspace=scope.workspace, channel=channel)
