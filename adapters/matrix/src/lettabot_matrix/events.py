"""Matrix timeline events → what the adapter acts on. Pure functions of the event, the
room, the bot's identity and the settings: no I/O.

- a message for the runtime (:class:`~lettabot.runtime.adapter.InboundMessage`), scoped to
  its thread (``m.thread``), to the event itself when a top-level message mentions the bot
  (the bot's answer starts a thread on it), or to the whole room for a DM;
- a typed command (:class:`TypedCommand`: ``!lettabot reset``, ``@lettabot status``);
- a reaction (:class:`Reaction`: an approval decision by ✅ / ❌ / 🔁);
- an encrypted event (:class:`Encrypted`), which the bot cannot read;
- anything else is :class:`Ignored`, with the reason (malformed events included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from lettabot.runtime.adapter import Attachment, InboundMessage, Scope
from lettabot.runtime.commands import COMMANDS
from lettabot_matrix.settings import MatrixSettings

__all__ = [
    "ADAPTER",
    "APPROVAL_COMMANDS",
    "Encrypted",
    "Identity",
    "Ignored",
    "Reaction",
    "TypedCommand",
    "classify",
    "room_scope",
]

ADAPTER = "matrix"
APPROVAL_COMMANDS = {"approve": "approve", "deny": "deny", "always": "always"}
_WITH_ARGS = {"rules", "schedules", *APPROVAL_COMMANDS}
_TEXT_TYPES = {"m.text", "m.emote"}
_MEDIA_TYPES = {"m.image", "m.file", "m.audio", "m.video"}


@dataclass(frozen=True)
class Identity:
    """Who the bot is: its user id and display name (for mentions)."""

    user_id: str
    display_name: str = ""

    @property
    def localpart(self) -> str:
        return self.user_id.split(":", 1)[0].lstrip("@")


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class TypedCommand:
    scope: Scope
    user_id: str
    name: str
    args: str
    event_id: str


@dataclass(frozen=True)
class Reaction:
    room_id: str
    target: str
    key: str
    user_id: str
    event_id: str


@dataclass(frozen=True)
class Encrypted:
    room_id: str
    user_id: str
    event_id: str


Classified = InboundMessage | TypedCommand | Reaction | Encrypted | Ignored


def room_scope(room_id: str, *, is_dm: bool, thread: str | None = None) -> Scope:
    """A DM room is one conversation; elsewhere a thread (or the room's top level)."""
    if is_dm:
        return Scope(adapter=ADAPTER, channel=room_id, is_dm=True)
    return Scope(adapter=ADAPTER, channel=room_id, thread=thread)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _attachment(content: dict[str, Any]) -> Attachment | None:
    """A media message's file (unencrypted: ``url`` is an ``mxc://`` URI)."""
    url = content.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    assert isinstance(info, dict)
    name = content.get("filename") or content.get("body") or "file"
    mime, size = info.get("mimetype"), info.get("size")
    return Attachment(name=str(name)[:200], url=url,
                      content_type=mime if isinstance(mime, str) else None,
                      size=size if isinstance(size, int) and not isinstance(size, bool) else None)


def _mentions_me(content: dict[str, Any], me: Identity) -> bool:
    mentions = content.get("m.mentions")
    if isinstance(mentions, dict):
        ids = mentions.get("user_ids")
        if isinstance(ids, list) and me.user_id in ids:
            return True
    body = content.get("body")
    if isinstance(body, str) and me.user_id in body:
        return True
    html = content.get("formatted_body")
    return isinstance(html, str) and f"matrix.to/#/{me.user_id}" in unquote(html)


def _strip_reply_fallback(body: str) -> str:
    """Drop a legacy reply fallback (``> <@user> quoted`` lines, then a blank line)."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


def _strip_mention(text: str, me: Identity) -> str:
    names = {me.user_id, me.localpart, me.display_name} - {""}
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"^\s*@?{re.escape(name.lstrip('@'))}\s*:?\s*", "", text, count=1)
    text = text.replace(me.user_id, " ")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _command(text: str, prefix: str, mentioned: bool) -> tuple[str, str] | None:
    lowered = text.strip()
    if lowered.lower().startswith(prefix.lower()):
        rest = lowered[len(prefix):]
        if rest and not rest[0].isspace():
            return None  # "!lettabotx": not ours
        word, _, args = rest.strip().partition(" ")
        return (word.lower() or "help"), args.strip()
    if not mentioned:
        return None
    m = re.fullmatch(r"[/!]?([a-zA-Z]+)[.!]?(?:\s+(.*))?", lowered, re.S)
    if not m:
        return None
    word, args = m.group(1).lower(), (m.group(2) or "").strip()
    if word in APPROVAL_COMMANDS or word in COMMANDS:
        if args and word not in _WITH_ARGS:
            return None
        return word, args
    return None


def classify(event: Any, room_id: str, *, is_dm: bool, me: Identity,
             settings: MatrixSettings) -> Classified:
    """What ``event`` (a timeline event of ``room_id``) is for the bot."""
    if not isinstance(event, dict):
        return Ignored("malformed: not an object")
    event_id, sender, kind = (_str(event.get("event_id")), _str(event.get("sender")),
                              _str(event.get("type")))
    content = event.get("content")
    if event_id is None or sender is None or kind is None or not isinstance(content, dict):
        return Ignored("malformed: no event_id, sender, type or content")
    if sender == me.user_id:
        return Ignored("the bot's own")
    if kind == "m.room.encrypted":
        return Encrypted(room_id, sender, event_id)
    if kind == "m.reaction":
        rel = content.get("m.relates_to")
        if not isinstance(rel, dict) or rel.get("rel_type") != "m.annotation":
            return Ignored("malformed reaction")
        target, key = _str(rel.get("event_id")), _str(rel.get("key"))
        if target is None or key is None:
            return Ignored("malformed reaction")
        return Reaction(room_id, target, key.replace("\ufe0f", ""), sender, event_id)
    if kind != "m.room.message":
        return Ignored(f"not a message: {kind}")
    if not content:
        return Ignored("redacted")
    msgtype, body = content.get("msgtype"), content.get("body")
    if not isinstance(body, str) or not isinstance(msgtype, str):
        return Ignored("malformed: no body or msgtype")
    if msgtype == "m.notice" and not settings.allow_bots:
        return Ignored("a notice (bots post notices)")
    attachments: tuple[Attachment, ...] = ()
    if msgtype in _MEDIA_TYPES:
        file = _attachment(content)
        if file is None:
            return Ignored("malformed: a file without an mxc:// url")
        attachments = (file,)
        # a caption, where the client sent one apart from the file's name
        body = body if content.get("filename") not in (None, body) else ""
    elif msgtype not in _TEXT_TYPES | {"m.notice"}:
        return Ignored(f"not text: {msgtype}")
    rel = content.get("m.relates_to")
    rel = rel if isinstance(rel, dict) else {}
    if rel.get("rel_type") == "m.replace":
        return Ignored("an edit")
    thread = _str(rel.get("event_id")) if rel.get("rel_type") == "m.thread" else None
    named = _mentions_me(content, me)
    mentioned = is_dm or named
    text = _strip_reply_fallback(body)
    if named:
        text = _strip_mention(text, me)
    command = _command(text, settings.command_prefix, mentioned)
    if command is not None:
        return TypedCommand(room_scope(room_id, is_dm=is_dm, thread=thread), sender,
                            command[0], command[1], event_id)
    if thread is None and mentioned and not is_dm:
        thread = event_id  # the answer starts a thread on the mention
    ts = event.get("origin_server_ts")
    received = (datetime.fromtimestamp(ts / 1000, UTC)
                if isinstance(ts, int | float) and not isinstance(ts, bool) else None)
    if not text.strip() and not attachments:
        return Ignored("empty")
    return InboundMessage(
        scope=room_scope(room_id, is_dm=is_dm, thread=thread),
        user_id=sender,
        user_name=sender,
        text=text,
        message_id=event_id,
        mentioned=mentioned,
        is_bot=msgtype == "m.notice",
        attachments=attachments,
        received_at=received,
    )
