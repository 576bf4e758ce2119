"""A real restart (the whole bot, twice, on one store and data dir) and a homeserver that
goes away: nothing is answered twice, and ``/readyz`` says when Matrix is not connected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import entry_points

import pytest
from lettabot_matrix import MatrixAdapter
from matrix_helpers import unique, wait_for
from synapse_server import Person, Synapse

from lettabot.runtime.bot import Bot, adapter_settings
from lettabot.runtime.config import Config
from lettabot.testing.letta_home import LettaHome

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def running_bot(config: Config) -> AsyncIterator[tuple[Bot, MatrixAdapter]]:
    factory = entry_points(group="lettabot.adapters")["matrix"].load()
    async with Bot.open(config, grace=5) as bot:
        adapter = bot.add_adapter_from(factory, adapter_settings(config)["matrix"])
        assert isinstance(adapter, MatrixAdapter)
        await wait_for(adapter.is_ready, seconds=30)
        await wait_for(lambda: adapter.state.since is not None)
        yield bot, adapter


def _answers(ada: Person, me: Person, room: str) -> list[str]:
    return [str(m["content"].get("body")) for m in ada.messages(room)
            if m["sender"] == me.user_id]


async def test_restart_and_a_homeserver_that_goes_away(
        synapse: Synapse, module_letta_home: LettaHome) -> None:
    me, ada = synapse.register(unique("lettabot")), synapse.register(unique("ada"))
    config = Config(
        _env_file=None, data_dir=module_letta_home.path / "lettabot-data",
        letta={"model": module_letta_home.model},
        access={"allowed_users": [f"matrix:{ada.user_id}"]},
        matrix={"enabled": True, "homeserver": synapse.url, "user_id": me.user_id,
                "access_token": me.token, "sync_timeout_seconds": 2})
    room = ada.create_room([me.user_id], direct=True)
    async with running_bot(config) as (bot, adapter):
        await wait_for(lambda: room in me.joined_rooms())
        ada.say(room, "before the restart")
        await wait_for(lambda: "You said: before the restart" in _answers(ada, me, room),
                       seconds=90)
        assert (await bot.readiness())["checks"]["adapter:matrix"] == "ok"

        synapse.stop()
        try:
            await wait_for(lambda: not adapter.is_ready(), seconds=60)
            ready = await bot.readiness()
            assert ready["checks"]["adapter:matrix"] == "not connected"
            assert ready["status"] == "not_ready"
        finally:
            synapse.start()
        await wait_for(adapter.is_ready, seconds=90)
        ada.say(room, "after the outage")
        await wait_for(lambda: "You said: after the outage" in _answers(ada, me, room),
                       seconds=90)

    ada.say(room, "while it was stopped")
    async with running_bot(config):
        await wait_for(lambda: "You said: while it was stopped" in _answers(ada, me, room),
                       seconds=90)
        ada.say(room, "marker")
        await wait_for(lambda: "You said: marker" in _answers(ada, me, room), seconds=90)
    answers = _answers(ada, me, room)
    for text in ("before the restart", "after the outage", "while it was stopped"):
        assert answers.count(f"You said: {text}") == 1, answers
