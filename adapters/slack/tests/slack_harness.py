"""Run a real :class:`SlackAdapter` (HTTP mode, real slack-bolt) against :class:`MockSlack`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from lettabot_slack import SlackAdapter
from lettabot_slack.settings import SlackConfig
from slack_mock_api import MockSlack, SlackSender

from lettabot.runtime.adapter import (
    ApprovalDecision,
    BotAPI,
    CommandResult,
    DecisionOutcome,
    HistoryEntry,
    InboundMessage,
    Scope,
)

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the adapter binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings(mock: MockSlack, **overrides: Any) -> SlackConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "mode": "http",
        "bot_token": "xoxb-test-token",
        "signing_secret": SIGNING_SECRET,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "api_url": mock.api_url,
    }
    values.update(overrides)
    return SlackConfig(**values)


@dataclass
class RecordingBot:
    """A BotAPI that records what the adapter delivers and answers as scripted."""

    messages: list[InboundMessage] = field(default_factory=list)
    decisions: list[tuple[str, ApprovalDecision, str, str]] = field(default_factory=list)
    commands: list[tuple[Scope, str, str, str]] = field(default_factory=list)
    outcome: DecisionOutcome = field(
        default_factory=lambda: DecisionOutcome(status="decided", message="Approved.")
    )
    command_result: CommandResult = field(
        default_factory=lambda: CommandResult(text="ok", ephemeral=True)
    )
    changed: anyio.Event = field(default_factory=anyio.Event)

    def _bump(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    refused: set[str] = field(default_factory=set)
    platform_errors: list[tuple[str, str]] = field(default_factory=list)

    async def history(self, scope: Scope, limit: int = 100) -> list[HistoryEntry]:
        return []

    def platform_error(self, adapter: str, status: int | str) -> None:
        self.platform_errors.append((adapter, str(status)))

    async def handle_message(self, message: InboundMessage) -> None:
        self.messages.append(message)
        self._bump()

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return user_id not in self.refused

    async def decide_approval(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str = ""
    ) -> DecisionOutcome:
        self.decisions.append((request_id, decision, user_id, user_name))
        self._bump()
        return self.outcome

    async def run_command(
        self, scope: Scope, user_id: str, command: str, args: str = ""
    ) -> CommandResult:
        self.commands.append((scope, user_id, command, args))
        self._bump()
        return self.command_result


@asynccontextmanager
async def running_adapter(
    mock: MockSlack, bot: BotAPI, **overrides: Any
) -> AsyncIterator[tuple[SlackAdapter, SlackSender]]:
    """A started adapter in HTTP mode and a sender of signed requests to it."""
    adapter = SlackAdapter(settings(mock, **overrides), bot)
    async with anyio.create_task_group() as tg:
        tg.start_soon(adapter.run)
        with anyio.fail_after(20):
            await adapter.ready.wait()
        sender = SlackSender(
            f"http://127.0.0.1:{adapter.http_port}{adapter.settings.http_path}", SIGNING_SECRET
        )
        try:
            yield adapter, sender
        finally:
            tg.cancel_scope.cancel()
