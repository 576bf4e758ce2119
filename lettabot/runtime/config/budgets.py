"""``[budgets]``: daily token (and cost) limits per person, per scope and for the whole bot,
and ``[[budgets.prices]]``, what a model's tokens cost."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from pydantic import Field, model_validator

from lettabot.runtime.config.base import Section
from lettabot.runtime.config.problems import Problem
from lettabot.runtime.schedules import check_timezone


class ModelPrice(Section):
    """What one model's tokens cost, per million, in the unit the ``*_cost`` limits use."""

    model: str = Field(min_length=1, examples=["anthropic/claude-sonnet-4-5"])
    """The model handle, as ``letta.model`` names it (``status`` shows it)."""
    input: float = Field(ge=0, examples=[3.0])
    """Per million input (prompt) tokens."""
    output: float = Field(ge=0, examples=[15.0])
    """Per million output (completion) tokens."""


class BudgetsConfig(Section):
    """Daily limits on what turns use, counted from each turn's tokens. A turn is refused
    before it starts once a budget it counts against is used up (the note says which and
    when it resets); an approver may lift the limits of a scope for the day
    (``budget lift``). Unset: no limit."""

    timezone: str = Field(default="UTC", examples=["UTC"])
    """The IANA time zone whose midnight starts a new day."""
    person_tokens: int | None = Field(default=None, ge=1, examples=[200000])
    """Tokens (input + output) one person's turns may use per day, wherever they ask (a
    scheduled run counts as its creator's)."""
    scope_tokens: int | None = Field(default=None, ge=1, examples=[1000000])
    """Tokens the turns of one scope (channel, thread or DM) may use per day."""
    bot_tokens: int | None = Field(default=None, ge=1, examples=[5000000])
    """Tokens all turns together may use per day (every replica on the store)."""
    person_cost: float | None = Field(default=None, gt=0)
    """Cost one person's turns may reach per day (models without a price count 0)."""
    scope_cost: float | None = Field(default=None, gt=0)
    """Cost the turns of one scope may reach per day."""
    bot_cost: float | None = Field(default=None, gt=0)
    """Cost all turns together may reach per day."""
    prices: list[ModelPrice] = Field(default_factory=list)
    """What each model's tokens cost (``[[budgets.prices]]``); needed by the cost limits."""

    @property
    def enabled(self) -> bool:
        """Whether any limit is set (else usage is still counted, nothing is refused)."""
        return any(v is not None for v in (
            self.person_tokens, self.scope_tokens, self.bot_tokens,
            self.person_cost, self.scope_cost, self.bot_cost))

    def price_of(self, model: str) -> ModelPrice | None:
        for price in self.prices:
            if price.model == model:
                return price
        return None

    def unpriced(self, models: Iterable[str | None]) -> list[str]:
        """Warnings: a cost limit is set but a configured model has no price (its turns
        count 0 against it)."""
        if all(v is None for v in (self.person_cost, self.scope_cost, self.bot_cost)):
            return []
        return [f"budgets: model {m!r} has no [[budgets.prices]] entry, so its turns cost 0 "
                "against the cost limits" for m in dict.fromkeys(models)
                if m and self.price_of(m) is None]

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if (why := check_timezone(self.timezone)) is not None:
            problems.append(Problem("timezone", why, 'write an IANA name, e.g. "Europe/Berlin"'))
        costs = [k for k in ("person_cost", "scope_cost", "bot_cost")
                 if getattr(self, k) is not None]
        if costs and not self.prices:
            problems.append(Problem(costs[0], "is set but no model has a price",
                                    'add [[budgets.prices]] with model = "<handle>", input = '
                                    "…, output = … (per million tokens)"))
        seen: set[str] = set()
        for i, price in enumerate(self.prices):
            if price.model in seen:
                problems.append(Problem(f"prices[{i}].model", f"{price.model!r} is priced twice",
                                        "keep one [[budgets.prices]] per model"))
            seen.add(price.model)
        return self.raise_problems(problems)
