"""Daily usage budgets (``[budgets]``): each turn's tokens are recorded in the store, and a
turn whose person, scope or bot has used up a day's budget is refused before it starts.

Exact across restarts and replicas: a turn's tokens are one row keyed by its
``client_message_id`` (the same for a retried or taken-over turn, so it counts once), and
what a budget has used is a ``SUM`` over the day's rows in the database, never a counter
held in a process. A day starts at midnight in ``budgets.timezone``. An approver may lift a
scope's budgets for the day (``budget lift``): entirely, or by a number of tokens.

The person of a turn is ``<adapter>:<user id>`` of the message that started it; a scheduled
run counts as its creator's (a config schedule without ``as_user`` is nobody's: only the
scope and bot budgets apply).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from lettabot.runtime.adapter import Scope
from lettabot.runtime.config import BudgetsConfig
from lettabot.runtime.jobs import Job
from lettabot.runtime.metrics import Metrics
from lettabot.runtime.store import BudgetLift, Store, UsageTotal

__all__ = ["KINDS", "BudgetKind", "Budgets", "Refusal", "Used", "day_of", "next_midnight",
           "person_of"]

log = logging.getLogger("lettabot.runtime.budgets")

BudgetKind = Literal["person", "scope", "bot"]
KINDS: tuple[BudgetKind, ...] = ("person", "scope", "bot")


def day_of(now: datetime, zone: ZoneInfo) -> str:
    """The day (``YYYY-MM-DD``) ``now`` falls on in ``zone``."""
    return now.astimezone(zone).date().isoformat()


def next_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    """When the day after ``now``'s begins in ``zone`` (aware, in UTC)."""
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone).astimezone(UTC)


def person_of(job: Job) -> str:
    """``<adapter>:<user id>`` of whoever the turn counts against ("" for nobody)."""
    user = job.message.user_id
    return f"{job.scope.adapter}:{user}" if user else ""


@dataclass(frozen=True)
class Used:
    """What some turns used in a day."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Refusal:
    """Why a turn may not start: ``budget``'s ``unit`` is used up until ``resets_at``."""

    budget: BudgetKind
    unit: Literal["tokens", "cost"]
    used: float
    limit: float
    resets_at: datetime
    timezone: str
    person: str = ""
    scheduled: bool = False

    def note(self, now: datetime) -> str:
        """What the chat is told."""
        whose = {
            "person": (f"the daily budget of {self.person} (who set up this schedule)"
                       if self.scheduled else "your daily budget"),
            "scope": "the daily budget of this conversation",
            "bot": "the bot's daily budget (everyone together)",
        }[self.budget]
        local = self.resets_at.astimezone(ZoneInfo(self.timezone))
        used = f"{self.used:,.0f}" if self.unit == "tokens" else f"{self.used:,.2f}"
        return (f"⏳ Not answered: {whose} is used up — {used} of "
                f"{amount(self.unit, self.limit)} today ({self.budget} budget). It resets at "
                f"{local:%Y-%m-%d %H:%M} {self.timezone} (in {duration(self.resets_at - now)}). "
                "An approver can lift this conversation's budgets for today with "
                "`budget lift`.")


def amount(unit: str, value: float) -> str:
    return f"{int(value):,} tokens" if unit == "tokens" else f"{value:,.2f} in cost"


def duration(left: timedelta) -> str:
    minutes = max(0, int(left.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class Budgets:
    """Counts turns' tokens and judges whether a turn may start (see the module doc)."""

    def __init__(self, config: BudgetsConfig, store: Store, *, metrics: Metrics | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.zone = ZoneInfo(config.timezone)
        self._clock = clock or (lambda: datetime.now(UTC))
        if metrics is not None:
            for unit in ("tokens", "cost"):
                limit = self.limits("bot")[0 if unit == "tokens" else 1]
                if limit is not None:
                    metrics.budget_limit.labels(unit).set(limit)

    def now(self) -> datetime:
        return self._clock()

    def today(self) -> str:
        return day_of(self.now(), self.zone)

    def limits(self, kind: BudgetKind) -> tuple[int | None, float | None]:
        """``kind``'s (tokens, cost) limits; None where unset."""
        return getattr(self.config, f"{kind}_tokens"), getattr(self.config, f"{kind}_cost")

    def cost_of(self, totals: Iterable[UsageTotal]) -> Used:
        """Sum ``totals``; cost counts only models with a price."""
        inp = out = 0
        cost = 0.0
        for total in totals:
            inp += total.input_tokens
            out += total.output_tokens
            price = self.config.price_of(total.model)
            if price is not None:
                cost += (price.input * total.input_tokens
                         + price.output * total.output_tokens) / 1_000_000
        return Used(inp, out, cost)

    async def used(self, kind: BudgetKind, day: str, *, person: str = "",
                   scope: str = "") -> Used:
        """What ``kind``'s turns used on ``day`` (summed in the database)."""
        if kind == "person":
            totals = await self.store.usage_totals(day, person=person)
        elif kind == "scope":
            totals = await self.store.usage_totals(day, scope=scope)
        else:
            totals = await self.store.usage_totals(day)
        used = self.cost_of(totals)
        if kind == "bot" and self.metrics is not None:
            self.metrics.budget_used.labels("tokens").set(used.tokens)
            self.metrics.budget_used.labels("cost").set(used.cost)
        return used

    async def lift_of(self, scope: Scope, day: str | None = None) -> BudgetLift | None:
        return await self.store.get_budget_lift(scope.key, day or self.today())

    async def check(self, job: Job) -> Refusal | None:
        """Why ``job``'s turn may not start now, or None (it may)."""
        if not self.config.enabled:
            return None
        now = self.now()
        day = day_of(now, self.zone)
        lift = await self.lift_of(job.scope, day)
        if lift is not None and lift.tokens is None:
            return None
        extra = lift.tokens if lift is not None and lift.tokens else 0
        person = person_of(job)
        for kind in KINDS:
            tokens, cost = self.limits(kind)
            if (tokens is None and cost is None) or (kind == "person" and not person):
                continue
            used = await self.used(kind, day, person=person, scope=job.scope.key)
            over: tuple[Literal["tokens", "cost"], float, float] | None = None
            if tokens is not None and used.tokens >= tokens + extra:
                over = ("tokens", used.tokens, tokens + extra)
            elif cost is not None and used.cost >= cost:
                over = ("cost", used.cost, cost)
            if over is not None:
                refusal = Refusal(kind, *over, resets_at=next_midnight(now, self.zone),
                                  timezone=self.config.timezone, person=person,
                                  scheduled=job.scheduled)
                if self.metrics is not None:
                    self.metrics.budget_refusals.labels(kind).inc()
                log.info("turn refused: %s budget used up (%s of %s %s)", kind, refusal.used,
                         refusal.limit, refusal.unit)
                return refusal
        return None

    async def record(self, job: Job, input_tokens: int, output_tokens: int,
                     model: str | None) -> bool:
        """Count the tokens of ``job``'s turn (once per turn id, whoever records it again);
        True if this call counted them."""
        if not (input_tokens or output_tokens):
            return False
        day = self.today()
        new = await self.store.record_usage(
            job.client_message_id, day=day, person=person_of(job), scope=job.scope.key,
            model=model or "", input_tokens=input_tokens, output_tokens=output_tokens)
        if self.metrics is not None:
            if new:
                self.metrics.tokens.labels("input").inc(input_tokens)
                self.metrics.tokens.labels("output").inc(output_tokens)
            await self.used("bot", day)  # the gauge: every replica's turns so far
        return new

    async def lift(self, scope: Scope, tokens: int | None, by: str) -> BudgetLift:
        """Lift ``scope``'s budgets for today: by ``tokens``, or entirely (None)."""
        return await self.store.lift_budget(scope.key, self.today(), tokens, by)
