"""Agents sharded over App Server hosts (``[[hosts]]``, ``[[agents]] host``): two real
``lettabot host`` processes, each on its own Letta home, one agent placed on each."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config
from lettabot.testing.app_server import LettabotHost
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer
from tests.runtime.bot_fixtures import make_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "host-capability-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def hosts(tmp_path: Path, _letta_home_template: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, LettabotHost]]:
    monkeypatch.setenv("LETTA_APP_SERVER_URL", "")
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "")
    made: dict[str, LettabotHost] = {}
    try:
        for name in ("alpha", "beta"):
            home = tmp_path / f"host-{name}"
            shutil.copytree(_letta_home_template, home, symlinks=True)  # connected, local
            workdir = tmp_path / f"host-{name}-run"
            workdir.mkdir()
            # the bot's letta.cwd (make_config: <data_dir>/workspace), as a shared volume
            made[name] = LettabotHost(home, TOKEN, workdir,
                                      workspaces=tmp_path / "data" / "workspace")
            made[name].start()
        yield made
    finally:
        for host in made.values():
            host.stop()


def _config(home: LettaHome, data: Path, hosts: dict[str, LettabotHost]) -> Config:
    agents: list[dict[str, Any]] = [
        {"name": "a", "host": "alpha", "default": True, "routes": [{"channel": "CA"}]},
        {"name": "b", "host": "beta", "routes": [{"channel": "CB"}]},
    ]
    return make_config(home, data, hosts=[
        {"name": name, "url": host.url, "token": TOKEN} for name, host in hosts.items()],
        agents=agents)


def _agents_on(host: LettabotHost) -> str:
    """Every file name of the host's local backend (agent ids appear in them)."""
    backend = host.home / ".letta" / "lc-local-backend"
    return "\n".join(str(p) for p in backend.rglob("*"))


async def test_each_agent_runs_on_its_host_and_waits_for_it(
    letta_home: LettaHome, hosts: dict[str, LettabotHost], tmp_path: Path,
    scripted_model: ScriptedModelServer,
) -> None:
    alpha, beta = hosts["alpha"], hosts["beta"]
    data = tmp_path / "data"
    async with Bot.open(_config(letta_home, data, hosts), grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        on_a, on_b = chat.scope("CA", "t1"), chat.scope("CB", "t1")
        also_a = chat.scope("CA", "t2")
        await chat.push("hello a", scope=on_a)
        await chat.push("hello b", scope=on_b)
        await chat.wait_done(on_a)
        await chat.wait_done(on_b)
        assert chat.texts(on_a) == ["You said: hello a"]
        assert chat.texts(on_b) == ["You said: hello b"]
        # each agent (and its conversations) lives on its own host's backend only
        agent_a = bot.agents.profiles[0].agent_id
        agent_b = bot.agents.profiles[1].agent_id
        assert agent_a and agent_b and agent_a != agent_b
        assert agent_a in _agents_on(alpha) and agent_a not in _agents_on(beta)
        assert agent_b in _agents_on(beta) and agent_b not in _agents_on(alpha)
        assert bot.conversations.open_now[on_a.key].server == bot.client.host_server("alpha")
        assert bot.conversations.open_now[on_b.key].server == bot.client.host_server("beta")
        # the agent's tools run in the host's tool sandbox: its Letta home (provider keys,
        # every conversation) and its capability token are out of their reach
        # (a path naming `.letta` is refused by the guard first: the home's folder is listed;
        # the sandbox shows only the folders its own mounts need there)
        await chat.push(f"run: cat {alpha.token_file}; echo cat=$?; ls -a {alpha.home}",
                        scope=on_a)
        prompt = await chat.wait_prompt(on_a)
        await chat.click(prompt.request_id, "approve", user="U1")
        await chat.wait_done(on_a, 2)
        result = scripted_model.requests[-1].tool_result or ""
        assert "No such file or directory" in result and "cat=1" in result, result
        assert TOKEN not in result and ".lettabot-host" not in result, result

        alpha.kill()
        await chat.push("first while down", scope=on_a)
        await chat.push("second while down", scope=on_a)
        await chat.push("new thread while down", scope=also_a)
        note = "host alpha is unreachable; your message will be answered when it is back"
        await chat.wait_for(lambda: sum(note in n.text for n in chat.notes) >= 3, within=30)
        assert {n.scope for n in chat.notes if note in n.text} == {on_a, also_a}
        # `reset` drops what waits there, as it drops queued messages
        dropped = chat.scope("CA", "t3")
        await chat.push("forget me", scope=dropped)
        await chat.wait_for(lambda: sum(note in n.text for n in chat.notes) >= 4, within=30)
        reset = await chat.command("reset", scope=dropped)
        assert "1 message still waiting for an answer was dropped" in reset.text
        # the other agent keeps answering; nothing of agent a is answered meanwhile
        await chat.push("still there?", scope=on_b)
        await chat.wait_done(on_b, 2)
        assert chat.texts(on_b)[-1] == "You said: still there?"
        assert len(chat.texts(on_a)) == 2 and chat.texts(also_a) == []

        alpha.start()
        await chat.wait_done(on_a, 4, within=90)
        await chat.wait_done(also_a, within=60)
        assert chat.texts(on_a)[0] == "You said: hello a"
        assert chat.texts(on_a)[2:] == ["You said: first while down",
                                        "You said: second while down"]
        assert chat.texts(also_a) == ["You said: new thread while down"]
        assert chat.texts(dropped) == []
        await _nothing_held(bot)  # forgotten once answered
        # ... answered once each, by agent a on alpha (the route kept its agent)
        route = await bot.store.get_route(also_a.key)
        assert route is not None and route.agent_id == agent_a

        # a message waiting for its host survives a lettabot restart
        alpha.kill()
        await chat.push("across a restart", scope=on_a)
        await chat.wait_for(lambda: sum(note in n.text for n in chat.notes) >= 5, within=30)
    assert len(await _held(data)) == 1

    alpha.start()
    async with Bot.open(_config(letta_home, data, hosts), grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        await chat.wait_done(on_a, within=90)
        assert chat.texts(on_a) == ["You said: across a restart"]
        await _nothing_held(bot)


async def _nothing_held(bot: Bot) -> None:
    """Wait until every held message was forgotten (just after its turn ended)."""
    with anyio.fail_after(10):
        for delay in itertools.repeat(0.1):
            if not await bot.store.held_messages():
                return
            await anyio.sleep(delay)


async def _held(data: Path) -> list[Any]:
    from lettabot.runtime.store import open_store

    async with open_store(f"sqlite+aiosqlite:///{data / 'lettabot.db'}") as store:
        return await store.held_messages()
