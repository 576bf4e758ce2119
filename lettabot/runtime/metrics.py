"""Prometheus metrics for one bot: ``GET /metrics`` on the health port.

Counters and the turn-latency histogram are updated where things happen (turn runner,
approval broker, adapters through :meth:`Metrics.platform_call`); gauges (queue depth,
turns running, approvals pending, App Server restarts and RSS) are read from the bot's
state at scrape time, so they can never drift. Each bot has its own registry: two bots in
one process (tests) do not share numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel

__all__ = ["CONTENT_TYPE", "Metrics", "ServerSample", "StateSample", "TurnOutcome", "rss_bytes"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TurnOutcome = str
"""``completed``, ``failed``, ``stopped`` (by a person), ``interrupted`` (shutdown or a
cancelled turn), ``stalled`` (no progress; see ``turns.stall_seconds``)."""

_TURN_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class ServerSample(BaseModel):
    index: int
    remote: bool
    alive: bool
    restarts: int
    sessions: int
    rss_bytes: int | None = None


class StateSample(BaseModel):
    """What the gauges show, read from the bot at scrape time."""

    queued: int
    turns_running: int
    turns_waiting_for_slot: int
    approvals_pending: int
    open_conversations: int
    draining: bool
    servers: list[ServerSample]


class _StateCollector(Collector):
    def __init__(self, sample: Callable[[], StateSample]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        state = self._sample()
        for name, doc, value in (
            ("lettabot_queue_depth", "Accepted messages waiting behind a running turn",
             state.queued),
            ("lettabot_turns_running", "Turns running now", state.turns_running),
            ("lettabot_turns_waiting_for_slot",
             "Turns ready to run but waiting for servers.max_concurrent_turns",
             state.turns_waiting_for_slot),
            ("lettabot_approvals_pending", "Approval prompts waiting for a click",
             state.approvals_pending),
            ("lettabot_open_conversations", "Conversations with an open session",
             state.open_conversations),
            ("lettabot_draining", "1 while shutting down", int(state.draining)),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        labels = ["server", "kind"]
        up = GaugeMetricFamily("lettabot_app_server_up", "The App Server process runs",
                               labels=labels)
        restarts = CounterMetricFamily("lettabot_app_server_restarts",
                                       "Times a local App Server was started again", labels=labels)
        sessions = GaugeMetricFamily("lettabot_app_server_sessions", "Sessions open on it",
                                     labels=labels)
        rss = GaugeMetricFamily("lettabot_app_server_rss_bytes",
                                "Resident memory of a local App Server and its children",
                                labels=labels)
        for server in state.servers:
            key = [str(server.index), "remote" if server.remote else "local"]
            up.add_metric(key, int(server.alive))
            restarts.add_metric(key, server.restarts)
            sessions.add_metric(key, server.sessions)
            if server.rss_bytes is not None:
                rss.add_metric(key, server.rss_bytes)
        yield from (up, restarts, sessions, rss)


class Metrics:
    """The bot's metrics. ``watch(sample)`` adds the state gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("lettabot_turns", "Turns ended, by outcome", ["outcome"],
                             registry=self.registry)
        self.turn_seconds = Histogram(
            "lettabot_turn_duration_seconds",
            "From a turn's start (session open) to its reply posted", ["outcome"],
            buckets=_TURN_BUCKETS, registry=self.registry)
        self.approvals = Counter(
            "lettabot_approvals_decided", "Approval requests decided, by outcome and by whom "
            "(person, policy, rule, timeout, runtime)", ["outcome", "by"],
            registry=self.registry)
        self.platform_errors = Counter(
            "lettabot_platform_api_errors", "Platform API calls that failed, by status",
            ["adapter", "status"], registry=self.registry)
        self.rate_limited = Counter(
            "lettabot_platform_rate_limited", "Platform API calls answered 429",
            ["adapter"], registry=self.registry)
        self.feedback = Counter(
            "lettabot_feedback", "Ratings people gave answers", ["adapter", "rating"],
            registry=self.registry)
        self.messages = Counter(
            "lettabot_messages", "Inbound messages, by what happened to them",
            ["adapter", "result"], registry=self.registry)
        self.tokens = Counter(
            "lettabot_tokens", "Tokens turns used, by kind (input, output)", ["kind"],
            registry=self.registry)
        self.budget_refusals = Counter(
            "lettabot_budget_refusals", "Turns refused before they started because a daily "
            "budget was used up, by budget (person, scope, bot)", ["budget"],
            registry=self.registry)
        self.budget_used = Gauge(
            "lettabot_budget_bot_used", "Today's use of the whole bot (every replica), read "
            "from the store at this replica's last turn, by unit (tokens, cost)", ["unit"],
            registry=self.registry)
        self.budget_limit = Gauge(
            "lettabot_budget_bot_limit", "The bot's daily limit, by unit (tokens, cost); "
            "absent when not set", ["unit"], registry=self.registry)
        self.sessions_opened = Counter(
            "lettabot_sessions_opened", "Sessions opened for a scope's conversation: "
            "resumed (its conversation reopened) or new", ["how"], registry=self.registry)

    def watch(self, sample: Callable[[], StateSample]) -> None:
        self.registry.register(_StateCollector(sample))

    def turn_ended(self, outcome: TurnOutcome, seconds: float) -> None:
        self.turns.labels(outcome).inc()
        self.turn_seconds.labels(outcome).observe(seconds)

    def approval_decided(self, outcome: str, by: str) -> None:
        kind = by if by in ("policy", "rule", "timeout", "runtime") else "person"
        self.approvals.labels(outcome, kind).inc()

    def platform_call(self, adapter: str, status: int | str) -> None:
        """An adapter's failed platform call (``status``: HTTP status or an error code)."""
        self.platform_errors.labels(adapter, str(status)).inc()
        if str(status) == "429":
            self.rate_limited.labels(adapter).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` and its descendants (Linux ``/proc``; else None)."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        proc = Path(f"/proc/{current}")
        try:
            total += int((proc / "statm").read_text().split()[1]) * page
            for task in (proc / "task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            if current == pid:
                return None
    return total
