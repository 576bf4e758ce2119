"""The store on SQLite (a temp file) and on a real PostgreSQL (a database made for this run)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from lettabot.runtime.store import (
    ApprovalStatus,
    SQLStore,
    Store,
    StoreError,
    input_digest,
    open_store,
)

pytestmark = pytest.mark.anyio

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _pg_admin(database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for this test session, dropped afterwards."""
    name = f"lettabot_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await _pg_admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await _pg_admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        anyio.run(create)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is required for the store tests but {PG_USER}@{PG_HOST}:{PG_PORT} "
            f"is unreachable or refused CREATE DATABASE ({exc!r}). Start PostgreSQL 15 there "
            "with trust auth for user 'postgres'.",
            pytrace=False,
        )
    yield name
    anyio.run(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on an empty database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'lettabot.db'}"
    name = request.getfixturevalue("pg_database")

    async def empty() -> None:
        conn = await _pg_admin(name)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    anyio.run(empty)
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[SQLStore]:
    async with open_store(store_url, clock=clock) as opened:
        yield opened


# routes ---------------------------------------------------------------------


async def test_route_round_trip_and_survives_reopen(store_url: str, clock: FakeClock) -> None:
    scope = "slack:T1:C42:1700000000.000100"
    async with open_store(store_url, clock=clock) as store:
        assert isinstance(store, Store)
        assert await store.get_route(scope) is None
        first = await store.set_route(scope, "agent-local-1", "local-conv-1")
        assert (first.agent_id, first.conversation_id) == ("agent-local-1", "local-conv-1")
        assert first.created_at == first.updated_at == clock.now

    clock.advance(30)
    store = await open_store(store_url, clock=clock)  # the bot restarted
    try:
        again = await store.get_route(scope)
        assert again == first
        # reset then a new conversation: same scope, created_at kept on upsert
        moved = await store.set_route(scope, "agent-local-1", "local-conv-2")
        assert moved.conversation_id == "local-conv-2"
        assert moved.created_at == first.created_at
        assert moved.updated_at == clock.now
        await store.set_route("discord:@me:99", "agent-local-1", "local-conv-3")
        assert [r.scope for r in await store.list_routes()] == [scope, "discord:@me:99"]
        assert await store.delete_route(scope) is True
        assert await store.delete_route(scope) is False
        assert await store.get_route(scope) is None
    finally:
        await store.close()


async def test_unicode_and_long_scope_keys(store: SQLStore) -> None:
    scope = "web:tab-" + "é" * 300
    await store.set_route(scope, "agent-1", "conv-1")
    route = await store.get_route(scope)
    assert route is not None and route.scope == scope


# dedupe ---------------------------------------------------------------------


async def test_fifty_concurrent_claims_of_one_event_exactly_one_wins(
    store_url: str, clock: FakeClock
) -> None:
    results: list[bool] = []
    # two store objects on one database, as two bot processes would have
    async with open_store(store_url, clock=clock) as a, open_store(store_url, clock=clock) as b:

        async def claim(s: SQLStore) -> None:
            results.append(await s.claim_event("slack", "Ev0123", ttl=3600))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(claim, a if i % 2 else b)
        assert sorted(results) == [False] * 49 + [True]
        # the same id from another adapter is a different event
        assert await a.claim_event("discord", "Ev0123", ttl=3600) is True
        assert await b.claim_event("slack", "Ev0124", ttl=3600) is True


async def test_claimed_event_expires(store: SQLStore, clock: FakeClock) -> None:
    assert await store.claim_event("slack", "Ev1", ttl=timedelta(minutes=10)) is True
    clock.advance(9 * 60)
    assert await store.claim_event("slack", "Ev1", ttl=600) is False
    clock.advance(61)  # past the ttl: a retry that late is treated as new
    assert await store.claim_event("slack", "Ev1", ttl=600) is True
    assert await store.claim_event("slack", "Ev1", ttl=600) is False

    assert await store.claim_event("slack", "Ev2", ttl=60) is True
    clock.advance(61)
    assert await store.purge_expired_events() == 1  # Ev2 gone, Ev1 (re-claimed) kept
    assert await store.claim_event("slack", "Ev1", ttl=600) is False
    assert await store.claim_event("slack", "Ev2", ttl=600) is True
    with pytest.raises(ValueError):
        await store.claim_event("slack", "Ev3", ttl=0)


async def test_concurrent_reclaims_of_an_expired_event_one_wins(
    store: SQLStore, clock: FakeClock
) -> None:
    assert await store.claim_event("slack", "Ev9", ttl=1) is True
    clock.advance(5)
    results: list[bool] = []

    async def claim() -> None:
        results.append(await store.claim_event("slack", "Ev9", ttl=60))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claim)
    assert results.count(True) == 1


# approvals ------------------------------------------------------------------


async def _pending(store: SQLStore, request_id: str, scope: str = "slack:T1:C1:1.0") -> None:
    await store.create_pending(
        request_id,
        scope=scope,
        conversation_id="local-conv-1",
        tool_name="Bash",
        tool_input={"command": "rm -rf build", "timeout": 5},
        input_summary="rm -rf build",
        requested_by="slack:U1",
    )


async def test_approval_is_recorded_with_a_digest_of_its_input(
    store: SQLStore, clock: FakeClock
) -> None:
    await _pending(store, "perm-call_1")
    approval = await store.get_approval("perm-call_1")
    assert approval is not None
    assert approval.status is ApprovalStatus.PENDING
    assert approval.created_at == clock.now
    assert approval.decided_by is None and approval.decided_at is None
    canonical = json.dumps({"command": "rm -rf build", "timeout": 5}, separators=(",", ":"))
    assert approval.input_digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert input_digest({"timeout": 5, "command": "rm -rf build"}) == approval.input_digest
    await store.set_approval_message("perm-call_1", "C1:1700000000.2")
    updated = await store.get_approval("perm-call_1")
    assert updated is not None and updated.message_ref == "C1:1700000000.2"
    assert await store.get_approval("perm-unknown") is None


async def test_a_re_sent_request_keeps_its_first_record(store: SQLStore, clock: FakeClock) -> None:
    await _pending(store, "perm-call_5")
    first = await store.get_approval("perm-call_5")
    assert await store.decide("perm-call_5", "approved", by="slack:U1") is True
    clock.advance(3)
    again = await store.create_pending(
        "perm-call_5",
        scope="elsewhere",
        conversation_id="local-conv-9",
        tool_name="Bash",
        tool_input={"command": "other"},
        input_summary="other",
        requested_by="slack:U9",
    )
    assert first is not None
    assert again.status is ApprovalStatus.APPROVED and again.decided_by == "slack:U1"
    assert (again.scope, again.input_digest, again.created_at) == (
        first.scope,
        first.input_digest,
        first.created_at,
    )


async def test_double_click_decides_once(store: SQLStore, clock: FakeClock) -> None:
    await _pending(store, "perm-call_2")
    clock.advance(12)
    results: list[tuple[str, bool]] = []

    async def click(i: int) -> None:
        outcome = ApprovalStatus.APPROVED if i % 2 else ApprovalStatus.DENIED
        won = await store.decide("perm-call_2", outcome, by=f"slack:U{i}", reason=f"click {i}")
        results.append((f"slack:U{i}", won))

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(click, i)
    winners = [who for who, won in results if won]
    assert len(winners) == 1

    decided = await store.get_approval("perm-call_2")
    assert decided is not None
    assert decided.decided_by == winners[0]
    winner_index = int(winners[0].removeprefix("slack:U"))
    expected = ApprovalStatus.APPROVED if winner_index % 2 else ApprovalStatus.DENIED
    assert decided.status is expected
    assert decided.reason == f"click {winner_index}"
    assert decided.decided_at == clock.now
    # the timeout firing after the click changes nothing
    assert await store.decide("perm-call_2", "timed_out", by="lettabot") is False
    assert await store.decide("perm-never-asked", "approved", by="slack:U1") is False
    with pytest.raises(ValueError):
        await store.decide("perm-call_2", "pending", by="slack:U1")
    with pytest.raises(ValueError):
        await store.decide("perm-call_2", "maybe", by="slack:U1")


async def test_expire_pending_after_restart(store_url: str, clock: FakeClock) -> None:
    async with open_store(store_url, clock=clock) as store:
        await _pending(store, "perm-a", scope="slack:T1:C1:1.0")
        clock.advance(1)
        await _pending(store, "perm-b", scope="discord:G1:C2")
        clock.advance(1)
        await _pending(store, "perm-c", scope="slack:T1:C1:1.0")
        assert await store.decide("perm-c", "denied", by="slack:U2", reason="no") is True
        assert [a.request_id for a in await store.list_pending()] == ["perm-a", "perm-b"]
        pending_here = await store.list_pending(scope="discord:G1:C2")
        assert [a.request_id for a in pending_here] == ["perm-b"]

    clock.advance(60)
    async with open_store(store_url, clock=clock) as store:
        expired = await store.expire_pending("lettabot restarted")
        assert [a.request_id for a in expired] == ["perm-a", "perm-b"]
        assert all(a.status is ApprovalStatus.EXPIRED for a in expired)
        assert all(a.reason == "lettabot restarted" for a in expired)
        assert await store.list_pending() == []
        assert await store.decide("perm-a", "approved", by="slack:U1") is False
        kept = await store.get_approval("perm-c")
        assert kept is not None and kept.status is ApprovalStatus.DENIED and kept.reason == "no"
        audit = await store.list_approvals()
        assert [a.request_id for a in audit] == ["perm-c", "perm-b", "perm-a"]
        assert await store.expire_pending("again") == []


# allow rules ----------------------------------------------------------------


async def test_allow_rules_are_scoped_and_expire(store: SQLStore, clock: FakeClock) -> None:
    here, there = "slack:T1:C1:1.0", "slack:T1:C2:2.0"
    assert await store.list_allow_rules(here) == []
    rule = await store.add_allow_rule(here, "Bash", kind="prefix", pattern="git status",
                                      created_by="slack:U1", ttl=timedelta(hours=24))
    assert rule.id.startswith("r-") and rule.expires_at == rule.created_at + timedelta(hours=24)
    clock.advance(5)
    again = await store.add_allow_rule(here, "Bash", kind="prefix", pattern="git status",
                                       created_by="slack:U2", ttl=timedelta(hours=24))
    assert again.id == rule.id and again.created_by == "slack:U2"  # renewed, one rule
    await store.add_allow_rule(here, "Read", kind="path", pattern="/srv/work",
                               created_by="slack:U1", ttl=60)
    await store.add_allow_rule(there, "Bash", kind="command", pattern="make",
                               created_by="slack:U3", ttl=timedelta(hours=1))
    assert [r.tool_name for r in await store.list_allow_rules(here)] == ["Bash", "Read"]
    assert len(await store.list_allow_rules()) == 3
    clock.advance(61)  # the Read rule expired
    assert [r.tool_name for r in await store.list_allow_rules(here)] == ["Bash"]
    assert await store.remove_allow_rule(rule.id) is True
    assert await store.remove_allow_rule(rule.id) is False
    assert await store.list_allow_rules(here) == []
    assert await store.clear_allow_rules(there) == 1
    assert await store.list_allow_rules() == []


async def test_purge_keeps_only_what_is_needed(store: SQLStore, clock: FakeClock) -> None:
    await store.claim_event("slack", "Ev-old", ttl=60)
    await store.add_allow_rule("s", "Bash", kind="command", pattern="ls", created_by="u", ttl=60)
    await store.create_pending("old", scope="s", conversation_id="c", tool_name="Bash",
                               tool_input={}, input_summary="ls", requested_by="u")
    await store.decide("old", "denied", by="slack:U1")
    await store.create_pending("waiting", scope="s", conversation_id="c", tool_name="Bash",
                               tool_input={}, input_summary="ls", requested_by="u")
    clock.advance(3 * 86400)
    await store.claim_event("slack", "Ev-new", ttl=60)
    counts = await store.purge(approvals_older_than=timedelta(days=2))
    assert counts == {"events": 1, "rules": 1, "approvals": 1, "schedules": 0}
    assert await store.get_approval("old") is None
    assert await store.get_approval("waiting") is not None  # pending is never purged
    assert await store.claim_event("slack", "Ev-new", ttl=60) is False


async def test_settings_persist(store_url: str) -> None:
    async with open_store(store_url) as store:
        assert await store.get_setting("agent_id") is None
        await store.set_setting("agent_id", "agent-local-1")
        await store.set_setting("agent_id", "agent-local-2")
    async with open_store(store_url) as store:
        assert await store.get_setting("agent_id") == "agent-local-2"


# opening ----------------------------------------------------------------------


async def test_url_alone_picks_the_backend(store_url: str) -> None:
    async with open_store(store_url) as store:
        expected = "sqlite" if store_url.startswith("sqlite") else "postgresql"
        assert store.dialect == expected
    if expected == "sqlite":  # WAL persists in the file: readers never block the writer
        path = store_url.removeprefix("sqlite+aiosqlite:///")
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_short_urls_and_bare_paths_are_sqlite_files(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "nested" / "b.db")):
        async with open_store(url) as store:
            assert store.dialect == "sqlite"
    assert (tmp_path / "a.db").exists() and (tmp_path / "nested" / "b.db").exists()


async def test_bad_urls_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported store URL scheme 'mysql"):
        await open_store("mysql://root@localhost/db")
    with pytest.raises(StoreError, match="needs a file path"):
        await open_store("sqlite+aiosqlite:///:memory:")
    with pytest.raises(StoreError, match="cannot open the store at") as info:
        await open_store("postgresql://postgres:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(info.value)


async def test_feedback_keeps_each_persons_latest_rating(store: SQLStore) -> None:
    await store.record_feedback("web:t1", "m1", "web:u1", "bad", conversation_id="c1")
    await store.record_feedback("web:t1", "m1", "web:u1", "good", conversation_id="c1")
    await store.record_feedback("web:t1", "m1", "web:u2", "bad")
    await store.record_feedback("web:t2", "m9", "web:u1", "good")
    mine = {(f.user_id, f.rating) for f in await store.list_feedback("web:t1")}
    assert mine == {("web:u1", "good"), ("web:u2", "bad")}
    assert len(await store.list_feedback()) == 3


async def test_a_due_schedule_is_claimed_once_however_many_ask(store: SQLStore,
                                                                clock: FakeClock) -> None:
    from lettabot.runtime.schedules import ScheduleRunner
    from lettabot.runtime.store import Schedule

    due = clock.now - timedelta(seconds=1)
    await store.add_schedule(Schedule(id="s-1", scope="web:-:t1", prompt="standup",
                                      cron="0 9 * * 1-5", timezone="Europe/Berlin",
                                      next_run=due, created_by="web:u1", created_at=due))
    started: list[tuple[str, datetime]] = []

    async def start(schedule: Schedule, at: datetime) -> None:
        started.append((schedule.id, at))

    runners = [ScheduleRunner(store, start, clock=clock) for _ in range(5)]
    async with anyio.create_task_group() as tg:
        for runner in runners:
            tg.start_soon(runner.run_due)
    assert started == [("s-1", due)]
    [after] = await store.list_schedules()
    assert after.runs == 1 and after.next_run is not None and after.next_run > clock.now
    # the next run is 9:00 Berlin on a weekday (2025-01-01 12:00 UTC is a Wednesday)
    assert after.next_run == datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
    assert await store.claim_run("s-1", due, None) is False  # a late retry of the old run


async def test_a_one_off_schedule_runs_once_and_is_purged_later(store: SQLStore,
                                                                clock: FakeClock) -> None:
    from lettabot.runtime.schedules import ScheduleRunner
    from lettabot.runtime.store import Schedule

    due = clock.now
    await store.add_schedule(Schedule(id="s-2", scope="web:-:t1", prompt="check the deploy",
                                      next_run=due, created_at=due))
    started: list[str] = []

    async def start(schedule: Schedule, at: datetime) -> None:
        started.append(schedule.id)

    runner = ScheduleRunner(store, start, clock=clock)
    assert await runner.run_due() == 1
    assert await runner.run_due() == 0
    assert started == ["s-2"] and await store.list_schedules() == []
    assert (await store.get_schedule("s-2")) is not None  # kept (runs, last_run) until purged
    clock.advance(3 * 86400)
    counts = await store.purge(approvals_older_than=timedelta(days=2))
    assert counts["schedules"] == 1 and await store.get_schedule("s-2") is None


async def test_a_run_whose_adapter_is_not_running_stays_due(store: SQLStore,
                                                             clock: FakeClock) -> None:
    from lettabot.runtime.schedules import ScheduleRunner
    from lettabot.runtime.store import Schedule

    await store.add_schedule(Schedule(id="s-3", scope="slack:T1:C1", prompt="hi",
                                      next_run=clock.now, created_at=clock.now))
    started: list[str] = []

    async def start(schedule: Schedule, at: datetime) -> None:
        started.append(schedule.id)

    ready = False
    runner = ScheduleRunner(store, start, can_start=lambda s: ready, clock=clock)
    assert await runner.run_due() == 0 and len(await store.list_schedules()) == 1
    ready = True
    assert await runner.run_due() == 1 and started == ["s-3"]
