"""Matrix message content: Markdown → safe ``org.matrix.custom.html``, no ``@room``, sizes,
approval prompts. Pure functions.

Safety: Markdown is rendered with raw HTML OFF (markdown-it escapes any ``<tag>`` the agent
or a user wrote), then the HTML is cleaned by ammonia (``nh3``) down to the tags and
attributes the Matrix spec recommends, with links limited to http(s) and mailto. ``@room``
is broken with a word joiner in both the plain and the HTML body, and every event carries an
empty ``m.mentions`` (intentional mentions): the agent notifies nobody.
"""

from __future__ import annotations

import json
from typing import Any

import nh3
from markdown_it import MarkdownIt

from lettabot.runtime.adapter import ApprovalView

__all__ = [
    "MAX_EVENT_BYTES",
    "REACTIONS",
    "approval_text",
    "defang",
    "edit_content",
    "message_content",
    "to_html",
]

MAX_EVENT_BYTES = 60_000
"""Synapse refuses events over 65,536 bytes (the whole event, signatures included)."""

REACTIONS = {"✅": "approve", "❌": "deny", "🔁": "always"}
"""Reaction keys on an approval prompt and the decision each means."""

_TAGS = {
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol",
    "sup", "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div",
    "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "details",
    "summary",
}
_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "code": {"class"},
               "th": {"align"}, "td": {"align"}}
_SCHEMES = {"http", "https", "mailto"}
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"])
_JOINER = "\u2060"


def defang(text: str) -> str:
    """``@room`` no longer notifies the room (a word joiner after the ``@``)."""
    return text.replace("@room", f"@{_JOINER}room")


def to_html(markdown: str) -> str:
    """The Markdown as Matrix HTML: rendered without raw HTML, then sanitised."""
    html = _md.render(markdown)
    clean = nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES,
                      link_rel=None, strip_comments=True)
    return defang(clean.strip())


def _size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def message_content(text: str, *, msgtype: str = "m.notice", thread: str | None = None,
                    mentions: list[str] | None = None) -> dict[str, Any]:
    """A message event's content: plain body, sanitised HTML, no mentions unless given
    (``mentions``: user ids to notify — only an approval prompt names anyone). Over the
    event size the HTML is dropped, then the text is cut."""
    body = defang(text) or "…"
    content: dict[str, Any] = {"msgtype": msgtype, "body": body,
                               "format": "org.matrix.custom.html",
                               "formatted_body": to_html(text) or "…",
                               "m.mentions": {"user_ids": list(mentions)} if mentions else {}}
    if thread:
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                   "is_falling_back": True,
                                   "m.in_reply_to": {"event_id": thread}}
    return _fit(content)


def _fit(content: dict[str, Any], budget: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    if _size(content) <= budget:
        return content
    content.pop("format", None)
    content.pop("formatted_body", None)
    while _size(content) > budget:
        body = content["body"]
        content["body"] = _clip(body, int(len(body) * 0.8))
    return content


def edit_content(event_id: str, text: str, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """An ``m.replace`` edit of ``event_id`` to ``text``: the new content in
    ``m.new_content``; the fallback outside it is kept short (older clients show it)."""
    new = message_content(text, msgtype=msgtype)
    new.pop("m.relates_to", None)
    fallback = _clip(new["body"], 200)
    content = {"msgtype": msgtype, "body": f"* {fallback}", "m.mentions": {},
               "m.new_content": new,
               "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}
    if _size(content) > MAX_EVENT_BYTES:
        content["m.new_content"] = _fit(new, MAX_EVENT_BYTES - 1000)
    return content


def _fence(text: str) -> str:
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    body = text.replace("```", "`\u200b``")
    return f"{ticks}\n{body}\n{ticks}"


def approval_text(view: ApprovalView, limit: int) -> tuple[str, bool]:
    """The prompt (Markdown) and whether it shows only a preview (the whole input is then
    sent as a file). Names the tool, the WHOLE input when it fits, who may decide, and how."""
    who = f" (asked by {view.requested_by})" if view.requested_by else ""
    head = f"**Approval needed**{who}: the agent wants to use `{view.tool_name}`."
    if view.deciders:
        head += "\n\nWho may decide: " + ", ".join(view.deciders[:20])
    else:
        head += "\n\nNobody here may approve this (no approvers are configured)."
    how = "React ✅ to approve, ❌ to deny"
    if view.allow_always:
        how += ", 🔁 to always allow"
        if view.always_covers:
            how += f" ({_clip(view.always_covers, 300)})"
    how += f" — or type `!lettabot approve|deny{'|always' if view.allow_always else ''}`."
    parts = [head, _fence(view.input_summary)]
    if view.diff:
        parts.append(_fence(view.diff))
    text = "\n\n".join([*parts, how])
    if len(text) <= limit:
        return text, False
    room = max(limit - len(head) - len(how) - 400, 200)
    preview = _fence(_clip(view.input_summary, room))
    note = ("⚠️ **Preview only**: the input is too long for one message. The whole of it, "
            "which is what runs, is attached as a file: read it before deciding.")
    return "\n\n".join([head, preview, note, how]), True
