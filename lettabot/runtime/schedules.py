"""Schedules: prompts the bot runs later in a scope, once or on a cron schedule.

They come from the agent's ``schedule`` tool ("remind this thread every weekday at 9:00")
and from ``[[schedules]]`` in the config. They live in the store, so they survive a
restart. :class:`ScheduleRunner` wakes when the soonest is due and hands each due run to
the bot; the store's atomic :meth:`~lettabot.runtime.store.Store.claim_run` makes each run
happen once, whoever else (a retry, another replica) sees it due.

A run is an ordinary turn in its scope, with the schedule's creator as the asker: its
tool calls ask for approval exactly as that person's message would.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from croniter import CroniterBadCronError, croniter

from lettabot.runtime.store import Schedule, Store, utcnow

if TYPE_CHECKING:
    from lettabot.runtime.config import ScheduleConfig

__all__ = [
    "ScheduleRunner",
    "check_cron",
    "check_timezone",
    "describe",
    "min_gap",
    "new_schedule_id",
    "next_run",
]

log = logging.getLogger("lettabot.runtime.schedules")

LATE_CRON = timedelta(hours=1)
"""A repeating run missed by more than this (lettabot was down) is skipped, not run late."""
LATE_ONCE = timedelta(hours=24)
"""A one-off missed by more than this is dropped (and logged)."""
MAX_SLEEP = 30.0
"""Seconds between looks at the store (schedules added by another replica)."""


def check_cron(expression: str) -> str | None:
    """Why ``expression`` is not a five-field cron expression, or None."""
    if len(expression.split()) != 5:
        return "is not five fields (minute hour day month weekday)"
    try:
        croniter(expression)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        return f"is not a cron expression ({exc})"
    return None


def check_timezone(name: str) -> str | None:
    """Why ``name`` is not a known IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not a known time zone"
    return None


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` (read in ``timezone``) names,
    in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    found = croniter(cron, local).get_next(datetime)
    assert isinstance(found, datetime)
    return found.astimezone(UTC)


def min_gap(cron: str, timezone: str, now: datetime, samples: int = 24) -> timedelta:
    """The shortest time between two runs among the next ``samples``."""
    times = [now]
    for _ in range(samples):
        times.append(next_run(cron, timezone, times[-1]))
    return min(b - a for a, b in itertools.pairwise(times[1:]))


def new_schedule_id() -> str:
    return "s-" + secrets.token_hex(4)


def describe(schedule: Schedule) -> str:
    """One line for a list: id, when, what."""
    when = (f"`{schedule.cron}` ({schedule.timezone})" if schedule.cron else "once")
    nxt = ""
    if schedule.next_run is not None:
        local = schedule.next_run.astimezone(ZoneInfo(schedule.timezone))
        nxt = f", next {local:%Y-%m-%d %H:%M} {schedule.timezone}"
    prompt = " ".join(schedule.prompt.split())
    prompt = prompt if len(prompt) <= 80 else prompt[:79] + "…"
    origin = f"config `{schedule.name}`" if schedule.source == "config" else (
        f"by {schedule.created_by.split(':', 1)[-1]}" if schedule.created_by else "")
    return f"`{schedule.id}` {when}{nxt}: “{prompt}” {origin}".rstrip()


StartRun = Callable[[Schedule, datetime], Awaitable[None]]
"""Start a claimed run (``schedule``, due at ``datetime``)."""
CanStart = Callable[[Schedule], bool]
"""Whether a run can start now (its adapter is running); if not it stays due."""


class ScheduleRunner:
    """Finds due schedules and starts each run once (see the module doc)."""

    def __init__(self, store: Store, start: StartRun, *, can_start: CanStart = lambda s: True,
                 clock: Callable[[], datetime] = utcnow, max_sleep: float = MAX_SLEEP) -> None:
        self.store = store
        self._start = start
        self._can_start = can_start
        self._clock = clock
        self.max_sleep = max_sleep
        self._wake = anyio.Event()

    def wake(self) -> None:
        """Look again now (a schedule was added)."""
        self._wake.set()

    async def sync_config(self, entries: Iterable[ScheduleConfig]) -> None:
        """Make the store's config schedules those of ``entries`` (by name): new ones are
        added, changed ones replaced (next run recomputed), removed ones deleted."""
        now = self._clock()
        wanted = {e.name: e for e in entries}
        stored = {s.name or s.id: s for s in await self.store.list_schedules()
                  if s.source == "config"}
        for name, old in stored.items():
            if name not in wanted:
                await self.store.delete_schedule(old.id)
                log.info("schedule %s is no longer in the config; removed", name)
        for name, entry in wanted.items():
            current = stored.get(name)
            created_by = entry.as_user and f"{entry.target.split(':', 1)[0]}:{entry.as_user}"
            same = current is not None and (
                current.cron, current.timezone, current.scope, current.prompt,
                current.created_by) == (entry.cron, entry.timezone,
                                                            entry.target, entry.prompt,
                                                            created_by)
            if same:
                continue
            await self.store.add_schedule(Schedule(
                id=f"config-{name}", scope=entry.target, prompt=entry.prompt, cron=entry.cron,
                timezone=entry.timezone, next_run=next_run(entry.cron, entry.timezone, now),
                created_by=created_by, source="config", name=name, created_at=now))
        self.wake()

    async def run(self) -> None:
        """Serve until cancelled."""
        while True:
            try:
                await self.run_due()
                soonest = await self.store.list_schedules()
            except Exception:
                log.warning("could not read the schedules", exc_info=True)
                soonest = []
            delay = self.max_sleep
            if soonest and soonest[0].next_run is not None:
                until = (soonest[0].next_run - self._clock()).total_seconds()
                delay = min(delay, max(until, 0.05))
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def run_due(self) -> int:
        """Start every run due now; returns how many started."""
        started = 0
        now = self._clock()
        for schedule in await self.store.due_schedules(now):
            due = schedule.next_run
            assert due is not None
            following = next_run(schedule.cron, schedule.timezone, now) if schedule.cron \
                else None
            late = now - due
            if late > (LATE_CRON if schedule.cron else LATE_ONCE):
                if await self.store.claim_run(schedule.id, due, following):
                    log.warning("schedule %s missed its run due %s (lettabot was not "
                                "running); skipped", schedule.id, due.isoformat())
                continue
            if not self._can_start(schedule):
                continue  # not claimed: tried again on the next look
            if not await self.store.claim_run(schedule.id, due, following):
                continue  # another replica (or a retry) has it
            try:
                await self._start(schedule, due)
            except Exception:
                log.warning("could not start schedule %s", schedule.id, exc_info=True)
                continue
            started += 1
        return started
