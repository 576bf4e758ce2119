"""The store's schema under Alembic, on SQLite and a real PostgreSQL: a store written by
release 0.1.0 opens after the upgrade with its data; the models match the migrations; a
newer schema is refused; replicas starting at once migrate once; ``lettabot db``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from lettabot.runtime.store import StoreError, normalize_url, open_store
from lettabot.runtime.store.migrations import VERSION_TABLE, head
from lettabot.runtime.store.schema import metadata
from tests.runtime.test_store import PG_HOST, PG_PORT, PG_USER, _pg_admin, pg_database, store_url

__all__ = ["pg_database", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio
DATA = Path(__file__).parent / "data"
LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _load_previous_release(url: str, tmp_path: Path) -> None:
    """The database a 0.1.0 lettabot left (dumped from that release's own code)."""
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split(":///", 1)[1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as db:
            db.executescript((DATA / "store-0.1.0.sqlite.sql").read_text())
        return
    name = url.rsplit("/", 1)[1]
    conn = await _pg_admin(name)
    try:
        await conn.execute((DATA / "store-0.1.0.postgresql.sql").read_text())
    finally:
        await conn.close()


async def _tables_and_revision(url: str) -> tuple[set[str], str | None]:
    engine = create_async_engine(normalize_url(url))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        revision = await conn.run_sync(lambda c: MigrationContext.configure(
            c, opts={"version_table": VERSION_TABLE}).get_current_revision())
    await engine.dispose()
    return names, revision


async def test_a_store_written_by_the_previous_release_opens_with_its_data(
    store_url: str, tmp_path: Path,
) -> None:
    await _load_previous_release(store_url, tmp_path)
    async with open_store(store_url) as store:
        route = await store.get_route("slack:T1:C1:1700000000.1")
        assert route is not None and route.conversation_id == "local-conv-7"
        assert len(await store.list_routes()) == 2
        approval = await store.get_approval("req-1")
        assert approval is not None and approval.decided_by == "slack:U1"
        [rule] = await store.list_allow_rules()
        assert rule.pattern == "git status"
        assert await store.get_setting("bot_agent_id") == "agent-local-1111"
        assert not await store.claim_event("slack", "Ev123", 60)  # still a duplicate
    names, revision = await _tables_and_revision(store_url)
    assert revision == head() and "lettabot_schema_version" not in names
    async with open_store(store_url) as store:  # and again: nothing left to do
        assert await store.get_setting("bot_agent_id") == "agent-local-1111"


async def test_the_models_match_the_migrations(store_url: str) -> None:
    async with open_store(store_url):
        pass
    engine = create_async_engine(normalize_url(store_url))
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    await engine.dispose()
    assert [d for d in diff if VERSION_TABLE not in str(d)] == []


async def test_a_newer_schema_is_refused(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.set_route("s", "a", "c")
    engine = create_async_engine(normalize_url(store_url))
    async with engine.begin() as conn:
        await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0999'"))
    await engine.dispose()
    with pytest.raises(StoreError, match="revision 0999, newer than this lettabot"):
        await open_store(store_url)


async def test_upgrade_drops_the_old_always_allow_rules_and_keeps_the_rest(
    store_url: str,
) -> None:
    """0.1.0's first schema had "always allow <tool> here" (any input, forever): the
    upgrade drops those rules, nobody approved that breadth, and keeps everything else."""
    await _load_previous_release(store_url, Path())
    engine = create_async_engine(normalize_url(store_url))
    async with engine.begin() as conn:  # back to 0.1.0's version 1, with one such rule
        await conn.execute(text("DROP TABLE lettabot_tool_rules"))
        await conn.execute(text("CREATE TABLE lettabot_allow_rules (scope VARCHAR NOT NULL, "
                                "tool_name VARCHAR NOT NULL, created_by VARCHAR NOT NULL, "
                                "created_at TIMESTAMP NOT NULL, PRIMARY KEY (scope, tool_name))"))
        await conn.execute(text("INSERT INTO lettabot_allow_rules VALUES "
                                "('s', 'Bash', 'slack:U1', '2026-11-20 10:00:00')"))
        await conn.execute(text("UPDATE lettabot_schema_version SET version = 1"))
    await engine.dispose()
    async with open_store(store_url) as store:
        assert await store.list_allow_rules() == []
        assert await store.get_route("discord:G1:C9") is not None
    names, revision = await _tables_and_revision(store_url)
    assert "lettabot_allow_rules" not in names and revision == head()


async def test_replicas_starting_at_once_migrate_once(pg_database: str) -> None:
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{pg_database}"
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=pg_database)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    opened = []

    async def replica() -> None:
        async with open_store(url) as store:
            opened.append(await store.get_setting("x"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(replica)
    assert opened == [None] * 5
    names, revision = await _tables_and_revision(url)
    assert revision == head() and "lettabot_routes" in names


def _db(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    return subprocess.run([*LETTABOT, "db", *args, "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=config.parent)


async def test_db_current_and_upgrade_for_admins_who_migrate_first(
    store_url: str, tmp_path: Path,
) -> None:
    await _load_previous_release(store_url, tmp_path)
    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[store]\nurl = "{store_url}"\n'
                      "migrate_on_start = false\n")
    before = _db("current", config=config)
    assert before.returncode == 0, before.stderr
    assert "0002" in before.stdout and f"needs {head()}" in before.stdout
    with pytest.raises(StoreError, match="run `lettabot db upgrade`"):
        await open_store(store_url, migrate=False)
    done = _db("upgrade", config=config)
    assert done.returncode == 0, done.stderr
    after = _db("current", config=config)
    assert f"at {head()}" in after.stdout and "up to date" in after.stdout
    async with open_store(store_url, migrate=False) as store:
        assert await store.get_setting("bot_agent_id") == "agent-local-1111"


async def test_the_schedules_command_lists_and_cancels_for_an_operator(
    store_url: str, tmp_path: Path,
) -> None:
    from lettabot.runtime.store import Schedule, utcnow

    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[store]\nurl = "{store_url}"\n')
    now = utcnow()
    async with open_store(store_url) as store:
        await store.add_schedule(Schedule(id="s-op1", scope="slack:T1:C1", prompt="standup",
                                          cron="0 9 * * 1-5", timezone="UTC", next_run=now,
                                          created_by="slack:U1", created_at=now))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LETTABOT, "schedules", *args, "--config", str(config)], env=env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    listed = run()
    assert listed.returncode == 0, listed.stderr
    assert all(word in listed.stdout for word in ("slack:T1:C1", "s-op1", "standup"))
    assert run("cancel", "s-op1").stdout.strip() == "cancelled s-op1"
    assert run().stdout.strip() == "no schedules"
    assert run("cancel").returncode == 2
