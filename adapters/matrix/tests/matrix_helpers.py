"""Helpers for the Matrix adapter tests: a recording BotAPI, the adapter on the real
Synapse, and waiting for what people would see."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from lettabot_matrix import MatrixAdapter, MatrixSettings
from synapse_server import Person, Synapse

from lettabot.runtime.adapter import (
    ApprovalDecision,
    CommandResult,
    DecisionOutcome,
    HistoryEntry,
    InboundMessage,
    Scope,
)

T = TypeVar("T")
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}x{int(time.time() * 1000) % 100000}"


async def wait_for(probe: Callable[[], T | None], seconds: float = 30.0,
                   every: float = 0.1) -> T:
    """``probe()`` once it is truthy (called in a worker thread: it may do HTTP)."""
    with anyio.fail_after(seconds):
        while True:
            value = await anyio.to_thread.run_sync(probe)
            if value:
                return value
            await anyio.sleep(every)


@dataclass
class RecordingBot:
    """A BotAPI that records what the adapter delivers and answers as told."""

    messages: list[InboundMessage] = field(default_factory=list)
    decisions: list[tuple[str, ApprovalDecision, str]] = field(default_factory=list)
    commands: list[tuple[Scope, str, str, str]] = field(default_factory=list)
    allowed: set[str] = field(default_factory=set)
    outcome: Callable[[str, str], DecisionOutcome] = lambda rid, uid: DecisionOutcome(
        status="decided", message="ok", final_text="Approved")

    async def handle_message(self, message: InboundMessage) -> None:
        self.messages.append(message)

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return user_id in self.allowed

    async def history(self, scope: Scope, limit: int = 100) -> list[HistoryEntry]:
        return []

    def platform_error(self, adapter: str, status: int | str) -> None:
        pass

    async def record_feedback(self, *args: Any) -> bool:
        return False

    async def decide_approval(self, request_id: str, decision: ApprovalDecision,
                              user_id: str, user_name: str = "") -> DecisionOutcome:
        self.decisions.append((request_id, decision, user_id))
        return self.outcome(request_id, user_id)

    async def run_command(self, scope: Scope, user_id: str, command: str,
                          args: str = "") -> CommandResult:
        self.commands.append((scope, user_id, command, args))
        return CommandResult(text=f"{command} done", ephemeral=command == "status")


def settings(synapse: Synapse, bot_user: Person, **extra: Any) -> MatrixSettings:
    return MatrixSettings.from_mapping({
        "enabled": True, "homeserver": synapse.url, "user_id": bot_user.user_id,
        "access_token": bot_user.token, "sync_timeout_seconds": 2, **extra})


@asynccontextmanager
async def running(synapse: Synapse, bot_user: Person, bot: Any, state: Path | None,
                  **extra: Any) -> AsyncIterator[MatrixAdapter]:
    """The adapter syncing with ``synapse`` until the block ends."""
    adapter = MatrixAdapter(settings(synapse, bot_user, **extra), bot, state_path=state)
    async with anyio.create_task_group() as tg:
        tg.start_soon(adapter.run)
        await wait_for(adapter.is_ready)
        # the first sync has been handled once the position is stored
        await wait_for(lambda: adapter.state.since is not None)
        yield adapter
        tg.cancel_scope.cancel()
