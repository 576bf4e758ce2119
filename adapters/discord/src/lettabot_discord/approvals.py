"""Approval buttons whose ``custom_id`` carries the request id, so they work after a restart.

A button's id is ``lettabot:<approve|deny|always>:<request_id>``. The buttons are
:class:`discord.ui.DynamicItem` s: registered once with ``client.add_dynamic_items`` they
are matched by that template on ANY message, including prompts posted by an earlier
process, so a click always reaches ``BotAPI.decide_approval`` (which answers "expired"
for a request it no longer knows).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from lettabot.runtime.adapter import ApprovalDecision, ApprovalView

__all__ = ["ApprovalButton", "DecisionHandler", "approval_view", "custom_id", "disabled_view"]

PREFIX = "lettabot"
_MAX_CUSTOM_ID = 100
_ACTIONS: dict[ApprovalDecision, tuple[str, discord.ButtonStyle]] = {
    "approve": ("Approve", discord.ButtonStyle.success),
    "deny": ("Deny", discord.ButtonStyle.danger),
    "always": ("Always allow", discord.ButtonStyle.secondary),
}

DecisionHandler = Callable[[discord.Interaction[Any], ApprovalDecision, str], Awaitable[None]]
"""``(interaction, decision, request_id)``: what a click does (the adapter provides it)."""


def custom_id(decision: ApprovalDecision, request_id: str) -> str:
    cid = f"{PREFIX}:{decision}:{request_id}"
    if len(cid) > _MAX_CUSTOM_ID:
        raise ValueError(
            f"approval request id {request_id!r} is too long for a Discord button "
            f"(custom_id max {_MAX_CUSTOM_ID} characters)"
        )
    return cid


class ApprovalButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{PREFIX}:(?P<decision>approve|deny|always):(?P<request_id>.+)",
):
    """One of Approve / Deny / Always allow for one request."""

    def __init__(self, decision: ApprovalDecision, request_id: str, *, disabled: bool = False):
        label, style = _ACTIONS[decision]
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                custom_id=custom_id(decision, request_id),
                disabled=disabled,
            )
        )
        self.decision: ApprovalDecision = decision
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ApprovalButton:
        decision = match["decision"]
        assert decision in _ACTIONS  # the template admits nothing else
        return cls(decision, match["request_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler: DecisionHandler | None = getattr(interaction.client, "lettabot_on_decision", None)
        if handler is None:  # pragma: no cover - a client without the adapter
            return
        await handler(interaction, self.decision, self.request_id)


def _decisions(view: ApprovalView) -> list[ApprovalDecision]:
    return ["approve", "deny", "always"] if view.allow_always else ["approve", "deny"]


def approval_view(view: ApprovalView) -> discord.ui.View:
    """The live buttons (no timeout: the runtime decides when a request expires)."""
    ui = discord.ui.View(timeout=None)
    for decision in _decisions(view):
        ui.add_item(ApprovalButton(decision, view.request_id))
    return ui


def disabled_view(
    request_id: str, decisions: list[ApprovalDecision] | None = None
) -> discord.ui.View:
    """The same buttons, greyed out, once the request is decided or has expired."""
    ui = discord.ui.View(timeout=None)
    for decision in decisions or ["approve", "deny", "always"]:
        ui.add_item(ApprovalButton(decision, request_id, disabled=True))
    return ui
