"""The scheduler's queueing rules, with a recording turn stage and a conversation pool
that opens at once in place of the agent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import anyio
import pytest

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import InboundMessage, Scope
from lettabot.runtime.agents import AgentProfile, Agents
from lettabot.runtime.approvals import ApprovalBroker, ToolPolicy
from lettabot.runtime.config import AccessConfig, ApprovalsConfig, Config
from lettabot.runtime.jobs import Job
from lettabot.runtime.router import Router
from lettabot.runtime.scheduler import Scheduler
from lettabot.runtime.store import open_store

pytestmark = pytest.mark.anyio


class Log(list[str]):
    """What the recording runner saw; ``wait(n)`` until it has ``n`` entries."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = anyio.Event()

    def add(self, entry: str) -> None:
        self.append(entry)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait(self, n: int) -> None:
        with anyio.fail_after(20):
            while len(self) < n:
                await self.changed.wait()


def _job(scope: Scope, text: str) -> Job:
    message = InboundMessage(scope=scope, user_id="U1", text=text, message_id=text)
    return Job(message, client_message_id=text)


class _Conversation:
    session = cast(sdk.Session, None)

    @contextmanager
    def serving(self, job: Job) -> Iterator[sdk.Session]:
        yield self.session


class _Pool:
    """Conversations that open at once (the turn below never uses them)."""

    def __init__(self) -> None:
        self.open_now: dict[str, _Conversation] = {}

    async def open(self, scope: Scope) -> _Conversation:
        return self.open_now.setdefault(scope.key, _Conversation())

    def get(self, scope: Scope) -> _Conversation | None:
        return self.open_now.get(scope.key)

    async def close_scope(self, key: str) -> None:
        self.open_now.pop(key, None)

    def turn_ended(self) -> None:
        pass

    def count(self) -> int:
        return len(self.open_now)

    async def close(self) -> None:
        self.open_now.clear()


class _Turns:
    """Records each turn; at most ``peak[0]`` ran at once."""

    def __init__(self, log: Log, peak: list[int]) -> None:
        self.log, self.peak, self.running = log, peak, 0

    async def run(self, job: Job, session: sdk.Session) -> None:
        self.running += 1
        self.peak[0] = max(self.peak[0], self.running)
        self.log.add(job.message.text)
        await anyio.sleep(0.02)
        self.running -= 1

    async def could_not_start(self, job: Job, error: Exception) -> None:
        raise AssertionError(f"not expected: {error!r}")


async def _scheduler(tmp_path: Path, slots: int, log: Log, peak: list[int]) -> Scheduler:
    store = await open_store(str(tmp_path / "s.db"))
    access = AccessPolicy(AccessConfig())

    async def no_agent(profile: AgentProfile) -> str:
        raise AssertionError("not needed")

    agents = Agents(Config(_env_file=None, data_dir=tmp_path), store, guard=lambda _: None,
                    adapter_settings={}, create_agent=no_agent)
    router = Router(store, agents)
    broker = ApprovalBroker(store, access, ApprovalsConfig(), ToolPolicy("standard"),
                            lambda name: None)

    async def notify(scope: Scope, text: str) -> None:
        log.add(f"note: {text}")

    return Scheduler(conversations=_Pool(), turns=_Turns(log, peak), router=router,
                     broker=broker, notify=notify, max_concurrent_turns=slots)


async def test_a_busy_scope_cannot_starve_the_others(tmp_path: Path) -> None:
    log = Log()
    peak = [0]
    scheduler = await _scheduler(tmp_path, 1, log, peak)
    a, b, c = (Scope(adapter="t", channel=x) for x in "ABC")
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg)
        for n in range(1, 5):
            scheduler.enqueue(_job(a, f"A{n}"))
        scheduler.enqueue(_job(b, "B1"))
        scheduler.enqueue(_job(c, "C1"))
        await log.wait(6)
        tg.cancel_scope.cancel()
    # B and C (whose conversations open concurrently) both go before A's second turn
    assert log[0] == "A1" and sorted(log[1:3]) == ["B1", "C1"]
    assert log[3:] == ["A2", "A3", "A4"]
    assert peak[0] == 1


async def test_the_turn_limit_holds_and_each_scope_keeps_its_order(tmp_path: Path) -> None:
    log = Log()
    peak = [0]
    scheduler = await _scheduler(tmp_path, 3, log, peak)
    scopes = [Scope(adapter="t", channel=f"C{i}") for i in range(8)]
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg)
        for n in range(4):
            for scope in scopes:
                scheduler.enqueue(_job(scope, f"{scope.channel}-{n}"))
        await log.wait(32)
        tg.cancel_scope.cancel()
    assert peak[0] == 3
    for scope in scopes:
        mine = [t for t in log if t.startswith(f"{scope.channel}-")]
        assert mine == [f"{scope.channel}-{n}" for n in range(4)]


async def test_queued_messages_are_reported_not_lost_on_shutdown(tmp_path: Path) -> None:
    log = Log()
    scheduler = await _scheduler(tmp_path, 1, log, [0])
    scope = Scope(adapter="t", channel="A")
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg)
        for n in range(3):
            scheduler.enqueue(_job(scope, f"m{n}"))
        await log.wait(1)
        await scheduler.drain(grace=5)
        tg.cancel_scope.cancel()
    assert log[0] == "m0"
    notes = [line for line in log if line.startswith("note:")]
    assert len(notes) == 2 and "m1" in notes[0] and "m2" in notes[1]
    assert not scheduler.can_accept(scope)


def test_the_server_of_a_conversation_is_the_same_in_every_process() -> None:
    # sha256-based, unlike hash(): a restarted bot reopens a conversation on the same server
    client = sdk.LettaClient(servers=5)
    assert client.server_for("local-conv-7") == 0xBABE3348773DF220 % 5
