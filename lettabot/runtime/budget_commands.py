"""The chat side of budgets: ``usage`` (today's use against the limits), the ``status``
line, and ``budget lift [tokens]`` (approvers: lift a scope's budgets for today)."""

from __future__ import annotations

from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import CommandResult, Scope
from lettabot.runtime.budgets import (
    KINDS,
    BudgetKind,
    Budgets,
    Used,
    amount,
    duration,
    next_midnight,
)

__all__ = ["budget_command", "status_line", "usage_text"]

_WHO: dict[BudgetKind, str] = {"person": "You", "scope": "Here", "bot": "Everyone"}
_SHORT: dict[BudgetKind, str] = {"person": "you", "scope": "here", "bot": "bot"}


def _line(budgets: Budgets, kind: BudgetKind, used: Used, extra: int) -> str:
    tokens, cost = budgets.limits(kind)
    text = f"{used.tokens:,} tokens"
    if tokens is not None:
        text += f" of {tokens + extra:,}"
    if cost is not None or budgets.config.prices:
        text += f"; cost {used.cost:,.2f}" + (f" of {cost:,.2f}" if cost is not None else "")
    return text


async def _today(budgets: Budgets, scope: Scope, user_id: str) -> dict[BudgetKind, Used]:
    day = budgets.today()
    person = f"{scope.adapter}:{user_id}"
    return {kind: await budgets.used(kind, day, person=person, scope=scope.key)
            for kind in KINDS}


async def usage_text(budgets: Budgets, scope: Scope, user_id: str) -> str:
    """``usage``: today's tokens (and cost) of the asker, this scope and the bot, each
    against its limit, when the day resets, and any lift here."""
    now = budgets.now()
    lift = await budgets.lift_of(scope)
    extra = lift.tokens if lift is not None and lift.tokens else 0
    resets = next_midnight(now, budgets.zone)
    lines = [f"Usage today ({budgets.today()}, {budgets.config.timezone}; resets in "
             f"{duration(resets - now)}):"]
    for kind, used in (await _today(budgets, scope, user_id)).items():
        lines.append(f"• {_WHO[kind]}: {_line(budgets, kind, used, extra)}")
    if lift is not None:
        what = "no limits" if lift.tokens is None else f"+{lift.tokens:,} tokens"
        lines.append(f"• Lifted here today by {lift.lifted_by}: {what}")
    if not budgets.config.enabled:
        lines.append("No budgets are set ([budgets] in the config): nothing is refused.")
    return "\n".join(lines)


async def status_line(budgets: Budgets, scope: Scope, user_id: str) -> str:
    """One line for ``status``."""
    lift = await budgets.lift_of(scope)
    if lift is not None and lift.tokens is None:
        return "Budgets today: lifted here (no limits)"
    extra = lift.tokens if lift is not None and lift.tokens else 0
    parts = []
    for kind, used in (await _today(budgets, scope, user_id)).items():
        tokens, _ = budgets.limits(kind)
        limit = f"/{tokens + extra:,}" if tokens is not None else ""
        parts.append(f"{_SHORT[kind]} {used.tokens:,}{limit}")
    return "Budgets today (tokens): " + "; ".join(parts)


async def budget_command(budgets: Budgets, access: AccessPolicy, scope: Scope, user_id: str,
                         args: str) -> CommandResult:
    """``budget`` (same as ``usage``) and ``budget lift [tokens]`` (approvers only)."""
    words = args.split()
    if not words:
        return CommandResult(text=await usage_text(budgets, scope, user_id), ephemeral=True)
    if words[0] != "lift" or len(words) > 2:
        return CommandResult(text="Write `budget lift` (no limits here today) or `budget lift "
                                  "<tokens>` (that many more tokens here today).",
                             ephemeral=True)
    if not (access.config.approvers and access.config.is_approver(scope.adapter, user_id)):
        return CommandResult(text="Only the configured approvers can lift budgets.",
                             ephemeral=True)
    tokens: int | None = None
    if len(words) == 2:
        try:
            tokens = int(words[1].replace(",", "").replace("_", ""))
        except ValueError:
            tokens = 0
        if tokens <= 0:
            return CommandResult(text=f"{words[1]!r} is not a number of tokens.",
                                 ephemeral=True)
    by = f"{scope.adapter}:{user_id}"
    lift = await budgets.lift(scope, tokens, by)
    now = budgets.now()
    until = duration(next_midnight(now, budgets.zone) - now)
    if lift.tokens is None:
        text = f"Budgets lifted here for today by {by}: no limits for the next {until}."
    else:
        text = (f"Budgets raised here for today by {by}: {amount('tokens', lift.tokens)} more "
                f"than the limits (for the next {until}).")
    return CommandResult(text=text)
