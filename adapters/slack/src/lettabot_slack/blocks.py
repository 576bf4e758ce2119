"""Block Kit: approval prompts (the question with buttons, the settled outcome), answers
with feedback buttons, ``markdown`` blocks, the Stop button.

Each approval button's ``value`` is the approval's ``request_id`` (stable across restarts); its
``action_id`` names the decision (see :data:`ACTIONS`).
"""

from __future__ import annotations

import re
from typing import Any

from lettabot.runtime.adapter import ApprovalDecision, ApprovalView, approval_full_text
from lettabot_slack.mrkdwn import to_mrkdwn

__all__ = ["ACTIONS", "approval_attachment", "approval_blocks", "approval_text",
           "resolved_blocks"]

ACTIONS: dict[str, ApprovalDecision] = {
    "lettabot_approve": "approve",
    "lettabot_deny": "deny",
    "lettabot_always": "always",
}
ACTION_PATTERN = r"^lettabot_(approve|deny|always)$"
FEEDBACK_ACTION = "lettabot_feedback"
STOP_ACTION = "lettabot_stop"
WORKING_TEXT = "⏳ Working on it…"


def stop_blocks(scope_key: str) -> list[dict[str, Any]]:
    """"Working…" with a Stop button (its value: the scope the click stops)."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": WORKING_TEXT},
             "accessory": {"type": "button", "action_id": STOP_ACTION, "value": scope_key,
                           "text": {"type": "plain_text", "text": "Stop"},
                           "style": "danger"}}]
BLOCK_ID = "lettabot_approval"

_SECTION_MAX = 3000  # Slack's limit for a section's text
_INPUT_MAX = 1200
_DIFF_MAX = 2400


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str, limit: int) -> str:
    """A code block of at most ``limit`` characters of ``text`` (cut on a line if it can)."""
    text = _escape(text.replace("```", "`\u200b``"))
    if len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut if cut > limit // 2 else limit
        text = re.sub(r"&[a-z]{0,3}$", "", text[:cut].rstrip()) + "\n… (truncated)"
    return f"```{text}```"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_MAX]}}


def approval_text(view: ApprovalView) -> str:
    """Plain fallback text (notifications, screen readers)."""
    return f"Approval needed: {view.tool_name}"


def _fits(text: str, limit: int) -> bool:
    return len(_escape(text.replace("```", "`\u200b``"))) <= limit


def approval_attachment(view: ApprovalView) -> tuple[str, bytes] | None:
    """The file holding the whole input (and diff) when the prompt can show only a
    preview of it, or None: the prompt shows everything."""
    if _fits(view.input_summary, _INPUT_MAX) and (not view.diff or _fits(view.diff, _DIFF_MAX)):
        return None
    return f"approval-{view.request_id}.txt", approval_full_text(view).encode()


def _question(view: ApprovalView) -> list[dict[str, Any]]:
    who = f" (asked by <@{view.requested_by}>)" if view.requested_by else ""
    blocks = [_section(f":lock: *Approval needed:* `{_escape(view.tool_name)}`{who}")]
    attachment = approval_attachment(view)
    if attachment is not None:
        size = len(view.input_summary) + len(view.diff or "")
        blocks.append(_section(
            f":warning: *Preview only* — the input is too long for one message ({size:,} "
            f"characters). The whole of it, which is what runs, is attached in this thread "
            f"as `{attachment[0]}`: read it before deciding."))
    blocks.append(_section(_code(view.input_summary or "(no input)", _INPUT_MAX)))
    if view.diff:
        blocks.append(_section("*Changes*\n" + _code(view.diff, _DIFF_MAX)))
    return blocks


def deciders_text(view: ApprovalView) -> str:
    """Who may click, as mentions (others who click are told so, privately)."""
    if not view.deciders:
        return "Nobody here may approve this (no approvers are configured)."
    names = ", ".join(f"<@{_escape(u)}>" for u in view.deciders[:10])
    more = f" and {len(view.deciders) - 10} more" if len(view.deciders) > 10 else ""
    return f"Who may decide: {names}{more}"


def _feedback_buttons() -> dict[str, Any]:
    buttons = {"type": "feedback_buttons", "action_id": FEEDBACK_ACTION,
               "positive_button": {"text": {"type": "plain_text", "text": "Good answer"},
                                   "value": "good", "accessibility_label": "Good answer"},
               "negative_button": {"text": {"type": "plain_text", "text": "Bad answer"},
                                   "value": "bad", "accessibility_label": "Bad answer"}}
    return {"type": "context_actions", "elements": [buttons]}


MARKDOWN_LIMIT = 12_000
"""Characters a ``markdown`` block holds."""


_TABLE_RULE = re.compile(r"(?m)^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
_HEADING = re.compile(r"(?m)^#{1,6} \S")


def wants_markdown_block(markdown: str) -> bool:
    """Whether Slack's ``markdown`` block shows this better than mrkdwn can: tables and
    headings (mrkdwn has neither), within the block's 12,000 characters."""
    return len(markdown) <= MARKDOWN_LIMIT and bool(
        _TABLE_RULE.search(markdown) or _HEADING.search(markdown))


def markdown_block(markdown: str) -> dict[str, Any]:
    return {"type": "markdown", "text": markdown[:MARKDOWN_LIMIT] or " "}


def markdown_with_feedback(markdown: str) -> list[dict[str, Any]]:
    """An answer in standard markdown (streamed, or a block) in a ``markdown`` block,
    with the feedback buttons under it."""
    return [markdown_block(markdown), _feedback_buttons()]


def answer_with_feedback(text: str) -> list[dict[str, Any]]:
    """An answer (mrkdwn, in sections of at most 3,000 characters) with Slack's feedback
    buttons under it (``context_actions`` / ``feedback_buttons``)."""
    sections = [_section(text[i:i + 3000]) for i in range(0, len(text), 3000)] or [
        _section(" ")]
    return [*sections[:49], _feedback_buttons()]


def approval_blocks(view: ApprovalView) -> list[dict[str, Any]]:
    """The prompt: tool, input preview, diff preview, and the buttons."""
    buttons: list[dict[str, Any]] = [
        _button("Approve", "lettabot_approve", view.request_id, style="primary"),
        _button("Deny", "lettabot_deny", view.request_id, style="danger"),
    ]
    if view.allow_always:
        buttons.append(_button("Always allow", "lettabot_always", view.request_id))
    blocks = _question(view)
    if view.allow_always and view.always_covers:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"_Always allow_ covers: {_escape(view.always_covers)}"}]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": deciders_text(view)}]})
    if view.expires_at is not None:
        stamp = int(view.expires_at.timestamp())
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Expires <!date^{stamp}^{{time}}|in a while> if nobody decides.",
                    }
                ],
            }
        )
    blocks.append({"type": "actions", "block_id": BLOCK_ID, "elements": buttons})
    return blocks


def resolved_blocks(view: ApprovalView, outcome: str) -> list[dict[str, Any]]:
    """The same prompt without buttons, ending with the outcome ("Approved by @ada")."""
    return [
        *_question(view),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": to_mrkdwn(outcome)[:_SECTION_MAX]}],
        },
    ]


def _button(label: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button
