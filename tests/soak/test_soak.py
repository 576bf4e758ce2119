"""A short soak (issue 11): scopes talking at once through the runtime while faults are
injected (model 500s and hangs, slow and rate-limited posts, Stop and Reset mid-turn, the
App Server SIGKILLed twice). Nothing may be lost, answered twice or crossed. The full run
with its table is ``bench/soak.py``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lettabot.runtime.bot import Bot
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer
from lettabot.testing.soak import FaultyChat, SoakPlan, run_soak
from tests.runtime.bot_fixtures import make_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_message_is_answered_once_or_told_under_faults(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    config = make_config(letta_home, tmp_path / "data", access={"open": True},
                         turns={"stall_seconds": 10})
    plan = SoakPlan(scopes=16, messages=4, seed=5, hang=0.08, stop=0.08, reset=0.05)
    async with Bot.open(config, grace=10) as bot:
        chat = FaultyChat(random.Random(6), bot=bot)
        bot.add_adapter(chat)
        report = await run_soak(bot, chat, scripted_model, plan)
    table = "\n".join(f"{a}: {b}" for a, b, _ in report.rows())
    assert report.accepted == 64, table
    assert (report.lost, report.answered_twice, report.crossed) == (0, 0, 0), (
        table, report.lost_examples)
    assert report.answered_once + report.told == report.accepted, table
    assert report.faults.get("server_sigkill", 0) >= 2 and report.faults.get("hang"), table
