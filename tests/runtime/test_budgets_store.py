"""Budgets without the CLI: a turn counted once whoever records it, sums exact across two
stores on one PostgreSQL database recording at once, lifts, the day boundary, cost, and
the config's checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from lettabot.runtime.adapter import InboundMessage, Scope
from lettabot.runtime.budgets import Budgets, day_of, next_midnight
from lettabot.runtime.config import BudgetsConfig, ConfigError, load_config
from lettabot.runtime.jobs import Job
from lettabot.runtime.metrics import Metrics
from lettabot.runtime.store import open_store
from lettabot.testing.postgres import fresh_database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("lettabot_budgets") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "lettabot.db")
    else:
        with fresh_database("lettabot_budgets") as url:
            yield url


SCOPE = Scope(adapter="chat", workspace="W", channel="C1", thread="t1")


def job(turn: str, user: str = "U1", scope: Scope = SCOPE) -> Job:
    message = InboundMessage(scope=scope, user_id=user, user_name=user, text="hi",
                             message_id=f"m-{turn}")
    return Job(message, client_message_id=f"chat:{turn}")


async def test_a_turn_recorded_twice_counts_once(store_url: str) -> None:
    async with open_store(store_url) as store:
        budgets = Budgets(BudgetsConfig(person_tokens=1000), store)
        assert await budgets.record(job("a"), 600, 50, "m1") is True
        assert await budgets.record(job("a"), 600, 50, "m1") is False  # a retry, a takeover
        assert await budgets.record(job("b"), 100, 0, "m1") is True
        used = await budgets.used("person", budgets.today(), person="chat:U1")
        assert (used.input_tokens, used.output_tokens) == (700, 50)
        assert await budgets.check(job("c")) is None  # 750 of 1000
        await budgets.record(job("d"), 250, 0, "m1")
        refusal = await budgets.check(job("e"))
        assert refusal is not None and refusal.budget == "person"
        assert (refusal.used, refusal.limit) == (1000, 1000)


async def test_two_replicas_recording_at_once_sum_exactly(pg_url: str) -> None:
    """Two stores (two replicas' connection pools) on one PostgreSQL database, each
    recording 40 turns at once; 20 turn ids are recorded by both (a takeover)."""
    config = BudgetsConfig(bot_tokens=10_000_000)
    async with open_store(pg_url) as one, open_store(pg_url) as two:
        replicas = [Budgets(config, one), Budgets(config, two)]
        results: list[bool] = []

        async def record(budgets: Budgets, turn: str, tokens: int) -> None:
            results.append(await budgets.record(job(turn, user=f"U{turn}"), tokens, 1, "m"))

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(record, replicas[0], f"r0-{n}", 100)
                tg.start_soon(record, replicas[1], f"r1-{n}", 10)
            for n in range(20):  # the same turns, counted by both replicas
                tg.start_soon(record, replicas[0], f"both-{n}", 1000)
                tg.start_soon(record, replicas[1], f"both-{n}", 1000)
        assert results.count(True) == 100
        day = replicas[0].today()
        for budgets in replicas:
            used = await budgets.used("bot", day)
            assert used.input_tokens == 40 * 100 + 40 * 10 + 20 * 1000
            assert used.output_tokens == 100


async def test_what_one_replica_records_refuses_on_the_other(pg_url: str) -> None:
    config = BudgetsConfig(scope_tokens=500)
    scope = Scope(adapter="chat", workspace="W", channel="C-replicas")
    async with open_store(pg_url) as one, open_store(pg_url) as two:
        first, second = Budgets(config, one), Budgets(config, two)
        await first.record(job("x1", scope=scope), 500, 0, "m")
        refusal = await second.check(job("x2", user="U2", scope=scope))
        assert refusal is not None and refusal.budget == "scope"


async def test_a_lift_by_amount_adds_up_and_a_full_lift_stays(tmp_path: Path) -> None:
    metrics = Metrics()
    async with open_store(str(tmp_path / "s.db")) as store:
        budgets = Budgets(BudgetsConfig(scope_tokens=100), store, metrics=metrics)
        await budgets.record(job("a"), 100, 0, "m")
        assert await budgets.check(job("b")) is not None
        await budgets.lift(SCOPE, 50, "chat:BOSS")
        await budgets.lift(SCOPE, 50, "chat:BOSS")
        assert await budgets.check(job("b")) is None  # 100 of 200
        await budgets.record(job("b"), 100, 0, "m")
        refusal = await budgets.check(job("c"))
        assert refusal is not None and refusal.limit == 200
        other = Scope(adapter="chat", workspace="W", channel="C2")
        await budgets.record(job("o", scope=other), 100, 0, "m")
        assert await budgets.check(job("o2", scope=other)) is not None  # not lifted there
        await budgets.lift(SCOPE, None, "chat:BOSS")
        await budgets.lift(SCOPE, 10, "chat:BOSS")  # a full lift is not narrowed again
        assert await budgets.check(job("c")) is None
        text = metrics.render().decode()
        assert 'lettabot_budget_refusals_total{budget="scope"} 3.0' in text
        assert 'lettabot_tokens_total{kind="input"} 300.0' in text
        assert 'lettabot_budget_bot_used{unit="tokens"} 300.0' in text


async def test_cost_counts_priced_models_only(tmp_path: Path) -> None:
    config = BudgetsConfig(person_cost=1.0, prices=[
        {"model": "openai/gpt-x", "input": 2.0, "output": 10.0}])
    async with open_store(str(tmp_path / "s.db")) as store:
        budgets = Budgets(config, store)
        await budgets.record(job("a"), 250_000, 40_000, "openai/gpt-x")  # 0.5 + 0.4
        await budgets.record(job("b"), 5_000_000, 0, "local/free")  # no price: 0
        assert await budgets.check(job("c")) is None
        await budgets.record(job("d"), 50_000, 0, "openai/gpt-x")  # + 0.1
        refusal = await budgets.check(job("e"))
        assert refusal is not None and refusal.unit == "cost"
        assert refusal.used == pytest.approx(1.0)


async def test_the_day_starts_at_midnight_in_the_configured_zone(tmp_path: Path) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    late = datetime(2026, 12, 5, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert day_of(late, berlin) == "2026-12-05"
    assert next_midnight(late, berlin) == datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    after = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)  # 00:30 the next day in Berlin
    assert day_of(after, berlin) == "2026-12-06"
    now = [late]
    async with open_store(str(tmp_path / "s.db")) as store:
        budgets = Budgets(BudgetsConfig(person_tokens=100, timezone="Europe/Berlin"), store,
                          clock=lambda: now[0])
        await budgets.record(job("a"), 100, 0, "m")
        refusal = await budgets.check(job("b"))
        assert refusal is not None
        assert "resets at 2026-12-06 00:00 Europe/Berlin (in 30 min)" in refusal.note(late)
        now[0] = after  # a new day: nothing used yet
        assert await budgets.check(job("b")) is None


def test_check_config_refuses_a_cost_limit_without_prices_and_a_bad_zone(
        tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[budgets]\nbot_cost = 5.0\ntimezone = "Mars/Olympus"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    done = subprocess.run([sys.executable, "-m", "lettabot.runtime.cli", "check-config",
                           "--config", str(bad)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "budgets.bot_cost: is set but no model has a price" in done.stderr
    assert "budgets.timezone: is not a known time zone" in done.stderr
    zero = tmp_path / "zero.toml"
    zero.write_text("[budgets]\nperson_tokens = 0\n")
    with pytest.raises(ConfigError, match=r"budgets\.person_tokens"):
        load_config(zero, env_file=None)
    good = tmp_path / "good.toml"
    good.write_text('[budgets]\nperson_tokens = 200000\nbot_cost = 20\n'
                    '[[budgets.prices]]\nmodel = "anthropic/claude-sonnet-4-5"\n'
                    'input = 3\noutput = 15\n')
    config = load_config(good, env_file=None)
    assert config.budgets.enabled and config.budgets.bot_cost == 20
    assert config.budgets.price_of("anthropic/claude-sonnet-4-5") is not None
    assert config.warnings() == [w for w in config.warnings() if "budgets" not in w]
    good.write_text(good.read_text() + '[letta]\nmodel = "openai/gpt-4.1"\n')
    assert any("model 'openai/gpt-4.1' has no [[budgets.prices]] entry" in w
               for w in load_config(good, env_file=None).warnings())


@pytest.mark.parametrize("doc", ["README.md", "docs/operate.md"])
def test_the_documented_example_is_a_valid_config(doc: str, tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / doc).read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[budgets]" in b)
    path = tmp_path / "lettabot.toml"
    path.write_text(block)
    config = load_config(path, env_file=None)
    assert config.budgets.enabled and config.budgets.person_tokens == 200000
    assert config.budgets.price_of("anthropic/claude-sonnet-4-5") is not None
