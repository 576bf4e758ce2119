"""Helpers for the Discord adapter tests: a recording BotAPI and the adapter on a fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from lettabot_discord import DiscordAdapter, DiscordSettings
from lettabot_discord.testing import FakeDiscord

from lettabot.runtime.adapter import (
    ApprovalDecision,
    CommandResult,
    DecisionOutcome,
    HistoryEntry,
    InboundMessage,
    Scope,
)

TOKEN = "fake-bot-token"


@dataclass
class RecordingBot:
    """A BotAPI that records what the adapter delivers and answers as told."""

    messages: list[InboundMessage] = field(default_factory=list)
    decisions: list[tuple[str, ApprovalDecision, str, str]] = field(default_factory=list)
    commands: list[tuple[Scope, str, str]] = field(default_factory=list)
    outcome: Callable[[str, str], DecisionOutcome] = lambda rid, uid: DecisionOutcome(
        status="decided", message="ok", final_text="Approved by someone"
    )

    refused: set[str] = field(default_factory=set)
    """User ids the access policy refuses."""
    platform_errors: list[tuple[str, str]] = field(default_factory=list)

    async def handle_message(self, message: InboundMessage) -> None:
        self.messages.append(message)

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return user_id not in self.refused

    async def history(self, scope: Scope, limit: int = 100) -> list[HistoryEntry]:
        return []

    def platform_error(self, adapter: str, status: int | str) -> None:
        self.platform_errors.append((adapter, str(status)))

    async def decide_approval(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str = ""
    ) -> DecisionOutcome:
        self.decisions.append((request_id, decision, user_id, user_name))
        return self.outcome(request_id, user_id)

    async def run_command(
        self, scope: Scope, user_id: str, command: str, args: str = ""
    ) -> CommandResult:
        self.commands.append((scope, user_id, command))
        return CommandResult(text=f"{command} for {scope.key}", ephemeral=command == "status")


@dataclass
class World:
    fake: FakeDiscord
    guild: dict[str, Any]
    channel: dict[str, Any]
    other: dict[str, Any]
    ada: dict[str, Any]
    bob: dict[str, Any]


@asynccontextmanager
async def running(fake: FakeDiscord, bot: Any, **settings: Any) -> AsyncIterator[DiscordAdapter]:
    """The adapter connected to ``fake`` until the block ends."""
    config = DiscordSettings.from_mapping({"enabled": True, "token": TOKEN, **settings})
    adapter = DiscordAdapter(config, bot, guild_ready_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(adapter.run)
        await fake.wait_for(lambda: adapter.client.is_ready())
        yield adapter
        tg.cancel_scope.cancel()
