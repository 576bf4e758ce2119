"""The SQL store: SQLite (aiosqlite) or PostgreSQL (asyncpg), chosen by URL alone.

Every write is one atomic statement (or an INSERT ... ON CONFLICT followed by a guarded
UPDATE in the same transaction): no read-modify-write, no DELETE-then-INSERT. SQLite runs
in WAL mode with a busy timeout, so concurrent tasks wait for the write lock instead of
failing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lettabot.runtime.store import migrations, schema
from lettabot.runtime.store.base import (
    AllowRule,
    Approval,
    ApprovalStatus,
    BudgetLift,
    Feedback,
    HeldMessage,
    Route,
    Schedule,
    StoreError,
    UsageTotal,
    input_digest,
)

Clock = Callable[[], datetime]

_SQLITE_BUSY_TIMEOUT_S = 30
_SUPPORTED = "sqlite+aiosqlite:///path/to/lettabot.db or postgresql+asyncpg://user@host:5432/db"


def utcnow() -> datetime:
    """The default clock: now, aware, in UTC."""
    return datetime.now(UTC)


def default_store_url(data_dir: Path) -> str:
    """The default store: ``lettabot.db`` in the data dir."""
    return f"sqlite+aiosqlite:///{(data_dir.expanduser() / 'lettabot.db').absolute()}"


def normalize_url(url: str) -> URL:
    """Parse a store URL, adding the async driver (``sqlite://`` → ``sqlite+aiosqlite://``).

    A bare filesystem path means a SQLite file.
    """
    if "://" not in url:
        url = f"sqlite+aiosqlite:///{Path(url).expanduser().absolute()}"
    try:
        parsed = make_url(url)
    except ArgumentError:  # its message repeats the URL, password included
        raise StoreError(f"store URL cannot be parsed — use {_SUPPORTED}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver in ("pysqlite", "aiosqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
        if parsed.database in (None, "", ":memory:"):
            raise StoreError(f"the SQLite store needs a file path — use {_SUPPORTED}")
    elif backend in ("postgresql", "postgres") and driver in ("psycopg2", "asyncpg", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise StoreError(f"unsupported store URL scheme {parsed.drivername!r} — use {_SUPPORTED}")
    return parsed


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite store URL, or None (PostgreSQL, or unparseable)."""
    try:
        parsed = normalize_url(url)
    except StoreError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser().absolute()


def _masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print or log)."""
    try:
        return _masked(make_url(url))
    except ArgumentError:
        return "<an unreadable URL>"


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_engine(url: URL) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def _ttl(ttl: float | timedelta) -> timedelta:
    value = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if value <= timedelta(0):
        raise ValueError("ttl must be positive")
    return value


class SQLStore:
    """:class:`~lettabot.runtime.store.base.Store` on SQLAlchemy 2.0 async."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._now = clock
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    @classmethod
    async def open(cls, url: str, *, clock: Clock = utcnow, migrate: bool = True) -> SQLStore:
        """Connect, then create or migrate the schema (``migrate=False``: only check it is
        current, for admins who run ``lettabot db upgrade`` themselves)."""
        parsed = normalize_url(url)
        engine = _create_engine(parsed)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: migrations.upgrade(c, apply=migrate))
        except StoreError:
            await engine.dispose()
            raise
        except Exception as exc:  # drivers raise their own types on connect (asyncpg, OSError)
            await engine.dispose()
            detail = f"{type(exc).__name__}: {exc}"
            if parsed.password:
                detail = detail.replace(str(parsed.password), "***")
            raise StoreError(f"cannot open the store at {_masked(parsed)}: {detail}") from exc
        return cls(engine, clock=clock)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise StoreError(f"the store at {_masked(self._engine.url)} does not answer: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # helpers -----------------------------------------------------------------
    async def _rows(self, stmt: Any) -> list[RowMapping]:
        async with self._engine.connect() as conn:
            result = await conn.execute(stmt)
            return [row._mapping for row in result]

    async def _write(self, stmt: Any) -> int:
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    # routes ------------------------------------------------------------------
    async def get_route(self, scope: str) -> Route | None:
        t = schema.routes
        rows = await self._rows(select(t).where(t.c.scope == scope))
        return Route.model_validate(rows[0]) if rows else None

    async def set_route(self, scope: str, agent_id: str, conversation_id: str) -> Route:
        t, now = schema.routes, self._now()
        stmt = self._insert(t).values(
            scope=scope,
            agent_id=agent_id,
            conversation_id=conversation_id,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.scope],
            set_={
                "agent_id": stmt.excluded.agent_id,
                "conversation_id": stmt.excluded.conversation_id,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(*t.c)
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).one()
        return Route.model_validate(row._mapping)

    async def delete_route(self, scope: str) -> bool:
        t = schema.routes
        return await self._write(delete(t).where(t.c.scope == scope)) > 0

    async def list_routes(self) -> list[Route]:
        t = schema.routes
        rows = await self._rows(select(t).order_by(t.c.created_at, t.c.scope))
        return [Route.model_validate(r) for r in rows]

    # dedupe ------------------------------------------------------------------
    async def claim_event(self, adapter: str, event_id: str, ttl: float | timedelta) -> bool:
        t, now = schema.processed_events, self._now()
        expires = now + _ttl(ttl)
        insert = (
            self._insert(t)
            .values(adapter=adapter, event_id=event_id, claimed_at=now, expires_at=expires)
            .on_conflict_do_nothing(index_elements=[t.c.adapter, t.c.event_id])
        )
        # An expired id not yet purged may be claimed again: a guarded UPDATE, so of
        # several concurrent re-claims only one matches ``expires_at <= now``.
        reclaim = (
            update(t)
            .where(t.c.adapter == adapter, t.c.event_id == event_id, t.c.expires_at <= now)
            .values(claimed_at=now, expires_at=expires)
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(insert)).rowcount == 1:
                return True
            return (await conn.execute(reclaim)).rowcount == 1

    async def event_claimed(self, adapter: str, event_id: str) -> bool:
        t = schema.processed_events
        rows = await self._rows(select(t.c.event_id).where(
            t.c.adapter == adapter, t.c.event_id == event_id, t.c.expires_at > self._now()))
        return bool(rows)

    async def release_event(self, adapter: str, event_id: str) -> None:
        t = schema.processed_events
        await self._write(delete(t).where(t.c.adapter == adapter, t.c.event_id == event_id))

    async def purge_expired_events(self) -> int:
        t = schema.processed_events
        return await self._write(delete(t).where(t.c.expires_at <= self._now()))

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
        t = schema.approvals
        insert = (
            self._insert(t)
            .values(
                request_id=request_id,
                scope=scope,
                conversation_id=conversation_id,
                tool_name=tool_name,
                input_digest=input_digest(tool_input),
                input_summary=input_summary,
                requested_by=requested_by,
                created_at=self._now(),
                status=ApprovalStatus.PENDING.value,
            )
            .on_conflict_do_nothing(index_elements=[t.c.request_id])
        )
        async with self._engine.begin() as conn:
            await conn.execute(insert)
            row = (await conn.execute(select(t).where(t.c.request_id == request_id))).one()
        return Approval.model_validate(row._mapping)

    async def get_approval(self, request_id: str) -> Approval | None:
        t = schema.approvals
        rows = await self._rows(select(t).where(t.c.request_id == request_id))
        return Approval.model_validate(rows[0]) if rows else None

    async def set_approval_message(self, request_id: str, message_ref: str) -> None:
        t = schema.approvals
        stmt = update(t).where(t.c.request_id == request_id).values(message_ref=message_ref)
        await self._write(stmt)

    async def decide(
        self, request_id: str, outcome: ApprovalStatus | str, by: str, reason: str | None = None
    ) -> bool:
        status = ApprovalStatus(outcome)
        if status is ApprovalStatus.PENDING:
            raise ValueError("an approval cannot be decided as 'pending'")
        t = schema.approvals
        stmt = (
            update(t)
            .where(t.c.request_id == request_id, t.c.status == ApprovalStatus.PENDING.value)
            .values(status=status.value, decided_by=by, decided_at=self._now(), reason=reason)
        )
        return await self._write(stmt) == 1

    async def list_pending(self, scope: str | None = None) -> list[Approval]:
        t = schema.approvals
        stmt = select(t).where(t.c.status == ApprovalStatus.PENDING.value)
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        rows = await self._rows(stmt.order_by(t.c.created_at, t.c.request_id))
        return [Approval.model_validate(r) for r in rows]

    async def list_approvals(self, scope: str | None = None, limit: int = 100) -> list[Approval]:
        t = schema.approvals
        stmt = select(t)
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        stmt = stmt.order_by(t.c.created_at.desc(), t.c.request_id.desc()).limit(limit)
        return [Approval.model_validate(r) for r in await self._rows(stmt)]

    async def expire_pending(self, reason: str) -> list[Approval]:
        t = schema.approvals
        stmt = (
            update(t)
            .where(t.c.status == ApprovalStatus.PENDING.value)
            .values(
                status=ApprovalStatus.EXPIRED.value,
                decided_by="lettabot",
                decided_at=self._now(),
                reason=reason,
            )
            .returning(*t.c)
        )
        async with self._engine.begin() as conn:
            rows = [r._mapping for r in await conn.execute(stmt)]
        expired = [Approval.model_validate(r) for r in rows]
        return sorted(expired, key=lambda a: (a.created_at, a.request_id))

    # allow rules -------------------------------------------------------------
    async def add_allow_rule(
        self, scope: str, tool_name: str, *, kind: str, pattern: str, created_by: str,
        ttl: float | timedelta,
    ) -> AllowRule:
        t, now = schema.tool_rules, self._now()
        key = f"{scope}\x00{tool_name}\x00{kind}\x00{pattern}"
        rule_id = "r-" + hashlib.sha256(key.encode()).hexdigest()[:10]
        values = {"scope": scope, "tool_name": tool_name, "kind": kind, "pattern": pattern,
                  "created_by": created_by, "created_at": now, "expires_at": now + _ttl(ttl)}
        stmt = (
            self._insert(t).values(id=rule_id, **values)
            .on_conflict_do_update(index_elements=[t.c.id], set_=values)
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(select(t).where(t.c.id == rule_id))).one()
        return AllowRule.model_validate(row._mapping)

    async def list_allow_rules(self, scope: str | None = None) -> list[AllowRule]:
        t = schema.tool_rules
        stmt = select(t).where(t.c.expires_at > self._now())
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        rows = await self._rows(stmt.order_by(t.c.created_at, t.c.id))
        return [AllowRule.model_validate(r) for r in rows]

    async def remove_allow_rule(self, rule_id: str) -> bool:
        t = schema.tool_rules
        return await self._write(delete(t).where(t.c.id == rule_id)) > 0

    async def clear_allow_rules(self, scope: str) -> int:
        t = schema.tool_rules
        return await self._write(delete(t).where(t.c.scope == scope))

    async def purge(self, *, approvals_older_than: float | timedelta) -> dict[str, int]:
        now = self._now()
        events, rules, approvals = schema.processed_events, schema.tool_rules, schema.approvals
        schedules = schema.schedules
        cutoff = now - _ttl(approvals_older_than)
        async with self._engine.begin() as conn:
            counts = {
                "events": (await conn.execute(
                    delete(events).where(events.c.expires_at <= now))).rowcount,
                "rules": (await conn.execute(
                    delete(rules).where(rules.c.expires_at <= now))).rowcount,
                "approvals": (await conn.execute(
                    delete(approvals).where(approvals.c.status != ApprovalStatus.PENDING.value,
                                            approvals.c.created_at < cutoff))).rowcount,
                "schedules": (await conn.execute(
                    delete(schedules).where(schedules.c.next_run.is_(None),
                                            schedules.c.last_run < cutoff))).rowcount,
            }
        return counts

    # settings ----------------------------------------------------------------
    async def record_feedback(self, scope: str, message_ref: str, user_id: str,
                              rating: Literal["good", "bad"],
                              conversation_id: str | None = None) -> Feedback:
        t = schema.feedback
        values = {"scope": scope, "message_ref": message_ref, "user_id": user_id,
                  "rating": rating, "conversation_id": conversation_id,
                  "created_at": self._now()}
        stmt = self._insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.scope, t.c.message_ref, t.c.user_id],
            set_={"rating": stmt.excluded.rating, "created_at": stmt.excluded.created_at},
        )
        await self._write(stmt)
        return Feedback(**values)

    async def list_feedback(self, scope: str | None = None,
                            limit: int = 100) -> list[Feedback]:
        t = schema.feedback
        stmt = select(t).order_by(t.c.created_at.desc()).limit(limit)
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        return [Feedback(**dict(row)) for row in await self._rows(stmt)]

    # schedules ------------------------------------------------------------------
    async def add_schedule(self, schedule: Schedule) -> Schedule:
        t = schema.schedules
        values = schedule.model_dump()
        stmt = self._insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.id],
            set_={k: getattr(stmt.excluded, k) for k in values if k not in ("id", "runs",
                                                                             "last_run")},
        )
        await self._write(stmt)
        return schedule

    async def list_schedules(self, scope: str | None = None) -> list[Schedule]:
        t = schema.schedules
        stmt = select(t).where(t.c.next_run.is_not(None)).order_by(t.c.next_run, t.c.id)
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        return [Schedule(**dict(row)) for row in await self._rows(stmt)]

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        t = schema.schedules
        rows = await self._rows(select(t).where(t.c.id == schedule_id))
        return Schedule(**dict(rows[0])) if rows else None

    async def delete_schedule(self, schedule_id: str) -> bool:
        t = schema.schedules
        return await self._write(delete(t).where(t.c.id == schedule_id)) > 0

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        t = schema.schedules
        stmt = select(t).where(t.c.next_run.is_not(None), t.c.next_run <= now)
        return [Schedule(**dict(row)) for row in await self._rows(stmt.order_by(t.c.next_run))]

    async def claim_run(self, schedule_id: str, due: datetime,
                        next_run: datetime | None) -> bool:
        t = schema.schedules
        stmt = (update(t).where(t.c.id == schedule_id, t.c.next_run == due)
                .values(next_run=next_run, runs=t.c.runs + 1, last_run=self._now()))
        return await self._write(stmt) == 1

    # usage and budgets ----------------------------------------------------------
    async def record_usage(self, turn_id: str, *, day: str, person: str, scope: str,
                           model: str, input_tokens: int, output_tokens: int) -> bool:
        t = schema.usage
        stmt = self._insert(t).values(
            turn_id=turn_id, day=day, person=person, scope=scope, model=model,
            input_tokens=input_tokens, output_tokens=output_tokens, recorded_at=self._now())
        return await self._write(stmt.on_conflict_do_nothing(index_elements=[t.c.turn_id])) == 1

    async def usage_totals(self, day: str, *, person: str | None = None,
                           scope: str | None = None) -> list[UsageTotal]:
        t = schema.usage
        stmt = (select(t.c.model, func.sum(t.c.input_tokens).label("input_tokens"),
                       func.sum(t.c.output_tokens).label("output_tokens"))
                .where(t.c.day == day).group_by(t.c.model).order_by(t.c.model))
        if person is not None:
            stmt = stmt.where(t.c.person == person)
        if scope is not None:
            stmt = stmt.where(t.c.scope == scope)
        return [UsageTotal(model=row["model"], input_tokens=int(row["input_tokens"]),
                           output_tokens=int(row["output_tokens"]))
                for row in await self._rows(stmt)]

    async def lift_budget(self, scope: str, day: str, tokens: int | None,
                          by: str) -> BudgetLift:
        t = schema.budget_lifts
        stmt = self._insert(t).values(scope=scope, day=day, tokens=tokens, lifted_by=by,
                                      updated_at=self._now())
        # NULL + n stays NULL: a full lift is not narrowed by a later amount
        added = None if tokens is None else t.c.tokens + stmt.excluded.tokens
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.scope, t.c.day],
            set_={"tokens": added, "lifted_by": stmt.excluded.lifted_by,
                  "updated_at": stmt.excluded.updated_at})
        await self._write(stmt)
        lift = await self.get_budget_lift(scope, day)
        assert lift is not None
        return lift

    async def get_budget_lift(self, scope: str, day: str) -> BudgetLift | None:
        t = schema.budget_lifts
        rows = await self._rows(select(t).where(t.c.scope == scope, t.c.day == day))
        return BudgetLift(**dict(rows[0])) if rows else None

    # messages waiting for their host ----------------------------------------------
    async def hold_message(self, client_message_id: str, scope: str, host: str,
                           message: str) -> bool:
        t = schema.held_messages
        stmt = self._insert(t).values(client_message_id=client_message_id, scope=scope,
                                      host=host, message=message, created_at=self._now())
        return await self._write(stmt.on_conflict_do_nothing(
            index_elements=[t.c.client_message_id])) == 1

    async def held_messages(self) -> list[HeldMessage]:
        t = schema.held_messages
        return [HeldMessage(**dict(row)) for row in await self._rows(select(t).order_by(t.c.id))]

    async def release_held(self, client_message_id: str) -> bool:
        t = schema.held_messages
        return await self._write(delete(t).where(t.c.client_message_id == client_message_id)) > 0

    async def get_setting(self, key: str) -> str | None:
        t = schema.settings
        async with self._engine.connect() as conn:
            value = await conn.scalar(select(t.c.value).where(t.c.key == key))
        return None if value is None else str(value)

    async def setting_if_absent(self, key: str, value: str) -> str:
        t = schema.settings
        stmt = self._insert(t).values(key=key, value=value, updated_at=self._now())
        await self._write(stmt.on_conflict_do_nothing(index_elements=[t.c.key]))
        current = await self.get_setting(key)
        assert current is not None
        return current

    async def set_setting(self, key: str, value: str) -> None:
        t = schema.settings
        stmt = self._insert(t).values(key=key, value=value, updated_at=self._now())
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        await self._write(stmt)


class StoreOpener:
    """What :func:`open_store` returns: ``await`` it, or use it as ``async with``."""

    def __init__(self, url: str, clock: Clock, migrate: bool = True) -> None:
        self._url = url
        self._clock = clock
        self._migrate = migrate
        self._store: SQLStore | None = None

    def __await__(self) -> Generator[Any, None, SQLStore]:
        return SQLStore.open(self._url, clock=self._clock, migrate=self._migrate).__await__()

    async def __aenter__(self) -> SQLStore:
        self._store = await SQLStore.open(self._url, clock=self._clock, migrate=self._migrate)
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
