"""👍 / 👎 buttons under a final answer, and the Stop button of a running turn: persistent
(``custom_id`` only, no state), so a click after a restart still counts."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import discord

__all__ = ["FeedbackButton", "FeedbackHandler", "StopButton", "feedback_view", "stop_view"]

Rating = Literal["good", "bad"]
FeedbackHandler = Callable[[discord.Interaction[Any], Rating], Awaitable[None]]
_LOOK: dict[Rating, tuple[str, str]] = {"good": ("👍", "Good"), "bad": ("👎", "Bad")}


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"lettabot-fb:(?P<rating>good|bad)",
):
    """One of the two buttons; the answer is the message it is on."""

    def __init__(self, rating: Rating) -> None:
        emoji, label = _LOOK[rating]
        super().__init__(discord.ui.Button(emoji=emoji, label=label,
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"lettabot-fb:{rating}"))
        self.rating: Rating = rating

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> FeedbackButton:
        return cls("good" if match["rating"] == "good" else "bad")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler: FeedbackHandler | None = getattr(interaction.client, "lettabot_on_feedback",
                                                  None)
        if handler is not None:
            await handler(interaction, self.rating)


def feedback_view() -> discord.ui.View:
    ui = discord.ui.View(timeout=None)
    ui.add_item(FeedbackButton("good"))
    ui.add_item(FeedbackButton("bad"))
    return ui


StopHandler = Callable[[discord.Interaction[Any]], Awaitable[None]]


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"lettabot-stop",
):
    """Stop the turn running in the channel the button is in."""

    def __init__(self) -> None:
        super().__init__(discord.ui.Button(label="Stop", emoji="⏹️",
                                           style=discord.ButtonStyle.danger,
                                           custom_id="lettabot-stop"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> StopButton:
        return cls()

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler: StopHandler | None = getattr(interaction.client, "lettabot_on_stop", None)
        if handler is not None:
            await handler(interaction)


def stop_view() -> discord.ui.View:
    ui = discord.ui.View(timeout=None)
    ui.add_item(StopButton())
    return ui
