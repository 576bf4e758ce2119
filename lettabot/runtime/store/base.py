"""The store's records and its typed interface.

One :class:`Store` holds what must survive a restart: chat routes, processed platform
event ids (dedupe), the approvals audit log, "Always allow" rules and a few settings.
Every write is a single atomic statement, so many tasks may share one store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class StoreError(Exception):
    """The store cannot be opened or used (bad URL, unreachable database, newer schema)."""


class ApprovalStatus(StrEnum):
    """Where an approval request stands. Only ``pending`` can change."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Route(_Record):
    """A chat scope's conversation: ``scope`` is an opaque key such as ``slack:T1:C1:123.4``."""

    scope: str
    agent_id: str
    conversation_id: str
    created_at: datetime
    updated_at: datetime


class HeldMessage(_Record):
    """An accepted message waiting for its agent's App Server host (see
    :mod:`lettabot.runtime.hosts`); ``message`` is the ``InboundMessage`` as JSON."""

    id: int
    client_message_id: str
    scope: str
    host: str
    message: str
    created_at: datetime


class Approval(_Record):
    """One ``can_use_tool`` request and, once decided, who decided it, how and why."""

    request_id: str
    scope: str
    conversation_id: str
    tool_name: str
    input_digest: str
    input_summary: str
    requested_by: str
    created_at: datetime
    status: ApprovalStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    message_ref: str | None = None
    """Adapter-specific reference to the chat message showing the buttons (to update it later)."""


class AllowRule(_Record):
    """"Always allow" as an approver saw it: ``tool_name`` calls in ``scope`` that match
    ``pattern`` (a ``kind``) run without asking until ``expires_at``."""

    id: str
    scope: str
    tool_name: str
    kind: str
    """``command`` (exactly this shell command), ``prefix`` (a plain shell command starting
    with these words), ``path`` (a file tool on paths under this folder), ``input`` (this exact
    tool input, by digest)."""
    pattern: str
    created_by: str
    created_at: datetime
    expires_at: datetime


class Feedback(_Record):
    """One person's rating of one answer (their latest click counts)."""

    scope: str
    message_ref: str
    user_id: str
    rating: Literal["good", "bad"]
    conversation_id: str | None = None
    created_at: datetime


class Schedule(_Record):
    """A prompt run later in a scope: once (``cron`` None) or on a cron schedule."""

    id: str
    scope: str
    prompt: str
    cron: str | None = None
    timezone: str = "UTC"
    next_run: datetime | None
    """When it runs next; None once a one-off has run."""
    created_by: str = ""
    """Whose message it is (``adapter:user``), "" for nobody's."""
    source: Literal["chat", "config"] = "chat"
    name: str | None = None
    runs: int = 0
    last_run: datetime | None = None
    created_at: datetime


class UsageTotal(_Record):
    """A day's tokens of one model, summed over some turns (a person's, a scope's, all)."""

    model: str
    input_tokens: int
    output_tokens: int


class BudgetLift(_Record):
    """An approver's lift of a scope's budgets for one ``day`` (``YYYY-MM-DD``)."""

    scope: str
    day: str
    tokens: int | None
    """Tokens added to each limit; None: no limit at all for the day."""
    lifted_by: str
    updated_at: datetime


def input_digest(tool_input: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a tool input: sorted keys, no spaces, UTF-8."""
    canonical = json.dumps(
        tool_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@runtime_checkable
class Store(Protocol):
    """Persistent state of the runtime. Safe for concurrent use from many tasks."""

    # routes ------------------------------------------------------------------
    async def get_route(self, scope: str) -> Route | None:
        """The route of ``scope``, or None if the scope has never been seen (or was reset)."""
        ...

    async def set_route(self, scope: str, agent_id: str, conversation_id: str) -> Route:
        """Create or replace the route of ``scope`` (keeps its ``created_at``)."""
        ...

    async def delete_route(self, scope: str) -> bool:
        """Forget the route of ``scope`` (the reset command). True if there was one."""
        ...

    async def list_routes(self) -> list[Route]:
        """Every route, oldest first."""
        ...

    # dedupe ------------------------------------------------------------------
    async def claim_event(self, adapter: str, event_id: str, ttl: float | timedelta) -> bool:
        """Mark a platform event processed; True only for the first claim within ``ttl``.

        Atomic: of many concurrent claims of one id exactly one gets True. Call it only
        once the event is accepted (queued for a turn), never before.
        """
        ...

    async def event_claimed(self, adapter: str, event_id: str) -> bool:
        """Whether ``event_id`` is claimed now (and not expired)."""
        ...

    async def release_event(self, adapter: str, event_id: str) -> None:
        """Forget a claim (the message could not be queued: its retry must get through)."""
        ...

    async def purge_expired_events(self) -> int:
        """Delete processed-event ids whose ttl has passed; returns how many."""
        ...

    # approvals ---------------------------------------------------------------
    async def create_pending(
        self,
        request_id: str,
        *,
        scope: str,
        conversation_id: str,
        tool_name: str,
        tool_input: Mapping[str, Any],
        input_summary: str,
        requested_by: str,
    ) -> Approval:
        """Record a new pending approval (the input is kept only as its digest).

        Asking again for a known ``request_id`` (a re-sent ``can_use_tool``) changes nothing
        and returns the stored record, whose status may already be decided.
        """
        ...

    async def get_approval(self, request_id: str) -> Approval | None:
        """One approval by request id, whatever its status."""
        ...

    async def set_approval_message(self, request_id: str, message_ref: str) -> None:
        """Remember where the approval's buttons were posted."""
        ...

    async def decide(
        self, request_id: str, outcome: ApprovalStatus | str, by: str, reason: str | None = None
    ) -> bool:
        """Move a pending approval to ``outcome`` in one atomic step.

        True only for the call that made the transition: a double click, a click racing
        the timeout, or a decision on an unknown request all get False.
        """
        ...

    async def list_pending(self, scope: str | None = None) -> list[Approval]:
        """Pending approvals (of one scope, or all), oldest first."""
        ...

    async def list_approvals(self, scope: str | None = None, limit: int = 100) -> list[Approval]:
        """The audit log: approvals of any status, newest first."""
        ...

    async def expire_pending(self, reason: str) -> list[Approval]:
        """Mark every pending approval ``expired`` (at startup, after a restart); returns them."""
        ...

    # allow rules -------------------------------------------------------------
    async def add_allow_rule(
        self, scope: str, tool_name: str, *, kind: str, pattern: str, created_by: str,
        ttl: float | timedelta,
    ) -> AllowRule:
        """Add a rule; the same (scope, tool, kind, pattern) again renews it."""
        ...

    async def list_allow_rules(self, scope: str | None = None) -> list[AllowRule]:
        """Unexpired rules (of one scope, or all), oldest first."""
        ...

    async def remove_allow_rule(self, rule_id: str) -> bool:
        """Remove a rule by id. True if it existed."""
        ...

    async def clear_allow_rules(self, scope: str) -> int:
        """Remove every rule of ``scope`` (``reset``); returns how many."""
        ...

    async def purge(self, *, approvals_older_than: float | timedelta) -> dict[str, int]:
        """Delete expired dedupe ids and rules, and decided approvals older than the
        retention; returns counts by kind."""
        ...

    # settings ----------------------------------------------------------------
    async def record_feedback(self, scope: str, message_ref: str, user_id: str,
                              rating: Literal["good", "bad"],
                              conversation_id: str | None = None) -> Feedback:
        """Store (or change) ``user_id``'s rating of the answer ``message_ref``."""
        ...

    async def list_feedback(self, scope: str | None = None,
                            limit: int = 100) -> list[Feedback]:
        """Ratings (of one scope, or all), newest first."""
        ...

    # schedules ------------------------------------------------------------------
    async def add_schedule(self, schedule: Schedule) -> Schedule:
        """Create or replace a schedule (by id)."""
        ...

    async def list_schedules(self, scope: str | None = None) -> list[Schedule]:
        """Schedules still to run (of one scope, or all), soonest first."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule | None: ...

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Cancel a schedule; False if there was none."""
        ...

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        """Schedules whose ``next_run`` is at or before ``now``."""
        ...

    async def claim_run(self, schedule_id: str, due: datetime,
                        next_run: datetime | None) -> bool:
        """Atomically move a schedule from the run due at ``due`` to ``next_run``: True for
        the one caller that did (it runs the prompt), False for every other (a retry,
        another replica)."""
        ...

    # usage and budgets ----------------------------------------------------------
    async def record_usage(self, turn_id: str, *, day: str, person: str, scope: str,
                           model: str, input_tokens: int, output_tokens: int) -> bool:
        """Record the tokens of the turn ``turn_id`` on ``day``; True only the first time
        (a turn recorded again, by a retry or another replica, is counted once)."""
        ...

    async def usage_totals(self, day: str, *, person: str | None = None,
                           scope: str | None = None) -> list[UsageTotal]:
        """``day``'s tokens by model: of ``person``'s turns, of ``scope``'s, or (neither
        given) of all turns."""
        ...

    async def lift_budget(self, scope: str, day: str, tokens: int | None,
                          by: str) -> BudgetLift:
        """Add ``tokens`` to ``scope``'s limits on ``day`` (None: lift them entirely);
        lifts by an amount add up, a full lift stays full."""
        ...

    async def get_budget_lift(self, scope: str, day: str) -> BudgetLift | None:
        """``scope``'s lift on ``day``, if an approver gave one."""
        ...

    async def get_setting(self, key: str) -> str | None:
        """A small persisted value (e.g. the id of the agent the bot created), or None."""
        ...

    async def setting_if_absent(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless it has a value; returns the value it has now."""
        ...

    async def set_setting(self, key: str, value: str) -> None:
        """Create or replace a persisted value."""
        ...

    async def hold_message(self, client_message_id: str, scope: str, host: str,
                           message: str) -> bool:
        """Keep a message until its host is back (once per ``client_message_id``: a message
        held again keeps its place). True if it was not held yet."""
        ...

    async def held_messages(self) -> list[HeldMessage]:
        """Every held message, oldest first."""
        ...

    async def release_held(self, client_message_id: str) -> bool:
        """Forget a held message (it was answered, or dropped by a reset)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers a trivial query now."""
        ...

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...
