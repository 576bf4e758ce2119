"""Discord text: approval prompts, thread names, mention stripping. Pure functions."""

from __future__ import annotations

import re

from lettabot.runtime.adapter import ApprovalView, approval_full_text

__all__ = [
    "MAX_MESSAGE",
    "approval_attachment",
    "approval_text",
    "clip",
    "resolved_text",
    "strip_mention",
    "thread_name",
]

MAX_MESSAGE = 2000
"""Discord's limit on a message's ``content``."""

_MAX_THREAD_NAME = 100
_FENCE = "```"
_BROKEN_FENCE = "`\u200b``"


def strip_mention(text: str, bot_id: int) -> str:
    """Remove ``<@bot>`` / ``<@!bot>`` mentions of the bot and tidy the spaces left behind."""
    stripped = re.sub(rf"<@!?{bot_id}>", " ", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def thread_name(text: str, fallback: str = "lettabot") -> str:
    """A thread title from the first line of a message (Discord allows 1-100 characters)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"<[@#][!&]?\d+>", "", line).strip() or fallback
    return line if len(line) <= _MAX_THREAD_NAME else line[: _MAX_THREAD_NAME - 1] + "…"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _code(text: str, lang: str = "") -> str:
    # a ``` inside the preview would close the block early: break it with a zero-width space
    body = text.replace(_FENCE, _BROKEN_FENCE)
    return f"{_FENCE}{lang}\n{body}\n{_FENCE}"


def approval_text(view: ApprovalView, limit: int = MAX_MESSAGE) -> str:
    """The prompt: who asked, which tool, the input in a code block, the diff if any.

    Previews are cut to fit ``limit`` (the input keeps at least a third, the diff the rest),
    so the code blocks always stay closed; a cut prompt says it is a preview and that the
    whole input is attached (:func:`approval_attachment`).
    """
    text = _approval_text(view, limit, "")
    if _approval_fits(view, limit):
        return text
    name = attachment_name(view)
    size = len(view.input_summary) + len(view.diff or "")
    note = (f"\n⚠️ **Preview only**: the input is too long for one message ({size:,} "
            f"characters). The whole of it, which is what runs, is attached as `{name}`: "
            "read it before deciding.")
    return _approval_text(view, limit, note)


def attachment_name(view: ApprovalView) -> str:
    return f"approval-{view.request_id}.txt"


def approval_attachment(view: ApprovalView, limit: int = MAX_MESSAGE) -> tuple[str, bytes] | None:
    """The file holding the whole input (and diff) when the prompt shows only a preview."""
    if _approval_fits(view, limit):
        return None
    return attachment_name(view), approval_full_text(view).encode()


def _approval_fits(view: ApprovalView, limit: int) -> bool:
    return _approval_text(view, limit, "", measure=True) == ""


def _approval_text(view: ApprovalView, limit: int, note: str, *, measure: bool = False) -> str:
    who = f" (asked for <@{view.requested_by}>)" if view.requested_by else ""
    head = f"**Approval needed**{who}: the agent wants to use `{view.tool_name}`."
    if view.allow_always and view.always_covers:
        head += f"\n-# Always allow covers: {clip(view.always_covers, 300)}"
    if view.deciders:
        names = ", ".join(f"<@{u}>" for u in view.deciders[:10])
        head += f"\n-# Who may decide: {names}"
    else:
        head += "\n-# Nobody here may approve this (no approvers are configured)."
    head += note
    empty = _code("") + "\n" + (_code("", "diff") if view.diff else "")
    room = limit - len(head) - len(empty) - 160  # leaves room for the outcome line
    summary = view.input_summary.replace(_FENCE, _BROKEN_FENCE)
    diff = (view.diff or "").replace(_FENCE, _BROKEN_FENCE)
    if measure:  # "" when nothing would be cut
        return "" if len(summary) + len(diff) <= room else "cut"
    if view.diff:
        input_room = max(room // 3, room - len(diff))
        parts = [head, _code(clip(summary, input_room))]
        diff_room = room - min(len(summary), input_room)
        parts.append(_code(clip(diff, max(diff_room, 0)), "diff"))
    else:
        parts = [head, _code(clip(summary, room))]
    return "\n".join(parts)


def resolved_text(prompt: str, outcome: str, limit: int = MAX_MESSAGE) -> str:
    """The prompt with its outcome line ("Approved by @ada") appended, within ``limit``."""
    line = f"\n**{outcome}**"
    if len(prompt) + len(line) <= limit:
        return prompt + line
    return f"**Approval request** (preview removed){line}"
