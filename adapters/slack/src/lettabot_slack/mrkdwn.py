"""Markdown → Slack mrkdwn, and splitting mrkdwn to Slack's message size.

Slack's dialect: ``*bold*``, ``_italic_``, ``~strike~``, ``<url|text>`` links, fenced code
without a language, ``>`` quotes, no headings or list syntax (we draw ``•``). ``&``, ``<``
and ``>`` must be escaped everywhere except in Slack's own tokens (``<@U123>``, ``<#C1>``,
``<https://…>``), which are kept; broadcasts (``<!here>``, ``<!channel>``, ``<!everyone>``,
``<!subteam^…>``) are escaped so the agent can never mass-notify.
"""

from __future__ import annotations

import re
from typing import TypedDict

__all__ = ["MAX_TEXT", "NO_UNFURL", "split_mrkdwn", "to_messages", "to_mrkdwn"]

MAX_TEXT = 3900
"""Characters per Slack message we post (Slack advises under 4,000; it cuts at 40,000)."""


class _NoUnfurl(TypedDict):
    unfurl_links: bool
    unfurl_media: bool


NO_UNFURL: _NoUnfurl = {"unfurl_links": False, "unfurl_media": False}
"""Passed with everything the bot posts, edits, streams or shares: an unfurl is fetched by
Slack's servers without a click, so a URL the agent writes with data in it would carry the
data out. (Slack ignores the keys where a method does not take them.)"""

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SLACK_TOKEN = re.compile(r"<(?:[@#][^<>\s!]+|!date\^[^<>\s]+|(?:https?|mailto):[^<>\s]+)>")
"""Slack tokens kept as they are: user and channel mentions, dates, links. Broadcasts and
group pings (``<!here>``, ``<!channel>``, ``<!everyone>``, ``<!subteam^…>``) are not: the
agent's output must never notify a whole channel, so they are escaped into plain text."""
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_TASK = re.compile(r"^\[([ xX])\]\s+")
_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)$")

# Placeholders (private-use characters) keep converted pieces away from later rules.
_BOLD_MARK = "\ue000"
_KEEP_OPEN, _KEEP_CLOSE = "\ue001", "\ue002"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _link_text(text: str) -> str:
    return _escape(text).replace("|", "¦")


def _inline(text: str) -> str:
    """Convert one line of prose (no block syntax)."""
    kept: list[str] = []

    def keep(piece: str) -> str:
        kept.append(piece)
        return f"{_KEEP_OPEN}{len(kept) - 1}{_KEEP_CLOSE}"

    text = _INLINE_CODE.sub(lambda m: keep(f"`{_escape(m.group(2).strip())}`"), text)
    text = _SLACK_TOKEN.sub(lambda m: keep(m.group(0)), text)
    text = _IMAGE.sub(
        lambda m: keep(f"<{_link_url(m.group(2))}|{_link_text(m.group(1) or 'image')}>"), text
    )
    text = _LINK.sub(
        lambda m: keep(
            f"<{_link_url(m.group(2))}|{_link_text(m.group(1))}>"
            if m.group(1) != m.group(2)
            else f"<{_link_url(m.group(2))}>"
        ),
        text,
    )
    text = _escape(text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = text.replace(_BOLD_MARK, "*")
    return re.sub(f"{_KEEP_OPEN}(\\d+){_KEEP_CLOSE}", lambda m: kept[int(m.group(1))], text)


def _prose_line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    m = _HEADING.match(line)
    if m:
        title = _inline(m.group(1)).strip("*")
        return f"*{title}*" if title else ""
    m = _QUOTE.match(line)
    if m:
        return "> " + _prose_line(m.group(1)) if m.group(1) else ">"
    m = _BULLET.match(line)
    if m:
        indent = len(m.group(1).expandtabs(4)) // 2
        item = m.group(2)
        task = _TASK.match(item)
        mark = "•"
        if task:
            mark = "☑" if task.group(1) in "xX" else "☐"
            item = item[task.end():]
        return "    " * indent + f"{mark} {_inline(item)}"
    return _inline(line)


def to_mrkdwn(markdown: str) -> str:
    """Convert markdown to Slack mrkdwn. An unclosed code fence is closed."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        m = _FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                out.append("```")
            else:
                out.append(_prose_line(line))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not m.group(2).strip():
            fence = None
            out.append("```")
        else:
            out.append(_escape(line))
    if fence is not None:
        out.append("```")
    return "\n".join(out)


def _fence_open(text: str) -> bool:
    return sum(1 for line in text.split("\n") if line.startswith("```")) % 2 == 1


def _safe_cut(window: str, cut: int) -> int:
    """Move ``cut`` back so it does not fall inside ``<…>`` or an ``&…;`` entity."""
    head = window[:cut]
    lt = head.rfind("<")
    if lt > 0 and head.rfind(">") < lt:
        cut = lt
    amp = head.rfind("&", max(0, cut - 6))
    if amp > 0 and ";" not in window[amp:cut]:
        cut = amp
    return cut


def _cut_point(text: str, budget: int) -> int:
    window = text[:budget]
    floor = budget // 3
    para = window.rfind("\n\n")
    if para > budget // 2:
        return para
    for sep in ("\n", " "):
        at = window.rfind(sep)
        if at > floor:
            return at
    return max(1, _safe_cut(window, budget))


def split_mrkdwn(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split mrkdwn into parts of at most ``limit`` characters, at paragraph, line or word
    boundaries; a cut inside a code block closes it and reopens it in the next part."""
    if limit < 40:
        raise ValueError("limit must be at least 40")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _cut_point(rest, limit - 4)
        head, rest = rest[:cut], rest[cut:]
        if _fence_open(head):
            head = head.rstrip("\n") + "\n```"
            rest = "```\n" + rest.lstrip("\n")
        else:
            rest = rest.lstrip("\n ")
        if head.strip():
            parts.append(head.rstrip())
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def to_messages(markdown: str, limit: int = MAX_TEXT) -> list[str]:
    """Markdown → one or more mrkdwn messages, each within ``limit``."""
    return split_mrkdwn(to_mrkdwn(markdown), limit)
