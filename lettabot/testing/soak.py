"""A soak run: many scopes talking at once through the runtime while faults are injected.

Each scope sends its messages one after another (so every reply can be attributed to the
message that caused it); all scopes run at once. Per message, at random: the model answers
HTTP 500 (every retry), hangs, or streams slowly and the sender presses Stop or Reset
mid-turn; posts are slow or rate-limited (HTTP 429 with a Retry-After); the App Server is
SIGKILLed a few times during the run. What counts is the promise of issue 11: every
accepted message is answered once, in its own scope, or the sender is told why.

Used by ``bench/soak.py`` (the full run, a table) and by the test suite (a small run).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from lettabot.runtime.adapter import AdapterLimits, MessageRef, RateLimited, Scope
from lettabot.runtime.bot import Bot
from lettabot.testing.chat import TestChat
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

__all__ = ["FaultyChat", "RateLimited", "SoakPlan", "SoakReport", "run_soak"]

# What a reply says when the turn could not be answered (see lettabot.runtime.turns).
TOLD = ("⚠️", "_(stopped)_", "_(interrupted)_", "send again", "send it again",
        "send that again")


class FaultyChat(TestChat):
    """The test chat with slow and rate-limited posts and edits."""

    def __init__(self, rng: random.Random, *, slow: float = 0.2, rate_limited: float = 0.05,
                 **options: Any) -> None:
        options.setdefault("limits", AdapterLimits(max_message_length=4000,
                                                   min_edit_interval=0.2))
        super().__init__(**options)
        self.rng = rng
        self.slow = slow
        self.rate_limited = rate_limited
        self.faults = {"slow": 0, "429": 0}

    async def _weather(self) -> None:
        if self.rng.random() < self.slow:
            self.faults["slow"] += 1
            await anyio.sleep(self.rng.uniform(0.3, 1.5))
        if self.rng.random() < self.rate_limited:
            self.faults["429"] += 1
            raise RateLimited(self.rng.uniform(0.2, 1.0))

    async def post(self, scope: Scope, text: str) -> MessageRef:
        await self._weather()
        return await super().post(scope, text)

    async def edit(self, ref: MessageRef, text: str) -> None:
        await self._weather()
        await super().edit(ref, text)


@dataclass(frozen=True)
class SoakPlan:
    scopes: int = 100
    messages: int = 5
    seed: int = 11
    model_error: float = 0.10
    hang: float = 0.05
    stop: float = 0.04
    reset: float = 0.02
    server_kills: int = 2
    message_timeout: float = 240.0
    """How long a message may take to be answered or told before it counts as lost."""


@dataclass
class _Message:
    scope_index: int
    token: str
    fault: str
    sent: float = 0.0
    ended: float | None = None
    texts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    plan: SoakPlan
    accepted: int = 0
    answered_once: int = 0
    told: int = 0
    lost: int = 0
    answered_twice: int = 0
    crossed: int = 0
    latencies: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    wall: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    lost_examples: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str]]:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return [
            ("messages accepted", str(self.accepted),
             f"{self.plan.scopes} scopes x {self.plan.messages}"),
            ("answered once", str(self.answered_once), ""),
            ("answered with a clear error / stopped", str(self.told), ""),
            ("lost", str(self.lost), "must be 0"),
            ("answered twice", str(self.answered_twice), "must be 0"),
            ("crossed into another scope", str(self.crossed), "must be 0"),
            ("latency p50", f"{statistics.median(lat):.2f} s", "message → answer or error"),
            ("latency p99", f"{p99:.2f} s", ""),
            ("peak RSS (lettabot + Letta processes)", f"{self.peak_rss_mb:.0f} MB", ""),
            ("wall time", f"{self.wall:.1f} s", ""),
            ("faults injected", faults, ""),
        ]


def _pick(rng: random.Random, plan: SoakPlan) -> str:
    roll = rng.random()
    for name, p in (("model_500", plan.model_error), ("hang", plan.hang),
                    ("stop", plan.stop), ("reset", plan.reset)):
        if roll < p:
            return name
        roll -= p
    return "none"


async def run_soak(
    bot: Bot, chat: FaultyChat, model: ScriptedModelServer, plan: SoakPlan,
    *, rss: Callable[[], float] | None = None,
) -> SoakReport:
    """Run ``plan`` through ``bot`` (``chat`` must be its adapter); returns the report."""
    rng = random.Random(plan.seed)
    report = SoakReport(plan)
    faults: dict[str, int] = {}
    scopes = [chat.scope(f"C{i % 9}", f"soak-{i}") for i in range(plan.scopes)]
    messages: list[_Message] = []
    total = plan.scopes * plan.messages
    kill_at = sorted(rng.uniform(0.15, 0.8) * total for _ in range(plan.server_kills))
    done = anyio.Event()

    def ended() -> int:
        return sum(1 for m in messages if m.ended is not None)

    async def one_scope(i: int) -> None:
        scope = scopes[i]
        for k in range(plan.messages):
            token = f"soak{i:03d}m{k}z"
            fault = _pick(rng, plan)
            faults[fault] = faults.get(fault, 0) + 1
            if fault == "model_500":
                model.on(token, Reply.fail(500))  # every retry fails: the turn must fail
            elif fault == "hang":
                model.on(token, Reply.hanging(), times=1)
            elif fault in ("stop", "reset"):
                model.on(token, Reply.say(f"You said: {token} " + "and more " * 60,
                                          chunk_delay=0.1), times=1)
            msg = _Message(i, token, fault)
            messages.append(msg)
            posts_before = len(chat.messages(scope))
            notes_before = sum(1 for n in chat.notes if n.scope == scope)
            done_before = chat.done_count.get(scope.key, 0)
            msg.sent = time.monotonic()
            await chat.push(token, scope=scope, user=f"U{i}", user_name=f"user {i}")
            report.accepted += 1
            if fault in ("stop", "reset"):

                def streaming(scope: Scope = scope, token: str = token, posts: int = posts_before,
                              done: int = done_before) -> bool:
                    return chat.done_count.get(scope.key, 0) > done or any(
                        f"You said: {token}" in t for t in chat.texts(scope)[posts:])

                with anyio.move_on_after(60):
                    await chat.wait_for(streaming, within=61)
                await chat.command(fault, scope=scope, user=f"U{i}")

            def outcome(scope: Scope = scope, done_before: int = done_before,
                        notes_before: int = notes_before) -> bool:
                notes = [n for n in chat.notes if n.scope == scope][notes_before:]
                return chat.done_count.get(scope.key, 0) > done_before or bool(notes)

            with anyio.move_on_after(plan.message_timeout):
                await chat.wait_for(outcome, within=plan.message_timeout + 1)
            if outcome():
                msg.ended = time.monotonic()
            await anyio.sleep(0.2)  # a reply's last edit may trail the turn's end
            msg.texts = chat.texts(scope)[posts_before:]
            msg.notes = [n.text for n in chat.notes if n.scope == scope][notes_before:]

    def kill_one() -> bool:
        """SIGKILL a running server; False if none runs now (one is restarting)."""
        for server in bot.health()["servers"]:
            pid = server.get("pid")
            if not pid or not server.get("alive"):
                continue
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                continue
            faults["server_sigkill"] = faults.get("server_sigkill", 0) + 1
            return True
        return False

    async def killer() -> None:
        for at in kill_at:
            # polled: a count of ended messages, and a server that runs again after a kill
            while not done.is_set() and (ended() < at or not kill_one()):  # noqa: ASYNC110
                await anyio.sleep(0.2)
            if done.is_set():
                return

    async def sample() -> None:
        while not done.is_set() and rss is not None:
            report.peak_rss_mb = max(report.peak_rss_mb, rss())
            with anyio.move_on_after(0.5):
                await done.wait()

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(killer)
        tg.start_soon(sample)
        async with anyio.create_task_group() as talkers:
            for i in range(plan.scopes):
                talkers.start_soon(one_scope, i)
        done.set()
    report.wall = time.monotonic() - start
    _judge(report, messages, chat, scopes)
    report.faults = {**faults, **{f"post_{k}": v for k, v in chat.faults.items()}}
    return report


def _judge(report: SoakReport, messages: list[_Message], chat: TestChat,
           scopes: list[Scope]) -> None:
    transcripts = {s.key: "\n".join(chat.texts(s)) for s in scopes}
    for msg in messages:
        own = scopes[msg.scope_index].key
        answers = transcripts[own].count(f"You said: {msg.token}")
        if any(msg.token in text for key, text in transcripts.items() if key != own):
            report.crossed += 1
            report.lost_examples.append(f"crossed {msg.token} ({msg.fault})")
        if answers > 1:
            report.answered_twice += 1
            report.lost_examples.append(
                f"twice {msg.token} ({msg.fault}): {transcripts[own][-600:]!r}")
        said = "\n".join(msg.texts + msg.notes)
        if msg.ended is None or not said.strip():
            report.lost += 1
            if len(report.lost_examples) < 5:
                report.lost_examples.append(f"{msg.token} ({msg.fault}): {said[-200:]!r}")
            continue
        report.latencies.append(msg.ended - msg.sent)
        if any(marker in said for marker in TOLD):
            report.told += 1
        elif answers == 1:
            report.answered_once += 1
        else:
            report.lost += 1  # it ended, but said neither the answer nor why not
            if len(report.lost_examples) < 5:
                report.lost_examples.append(f"{msg.token} ({msg.fault}): {said[-200:]!r}")
