"""``sdk.LettaClient``: sessions pinned to App Servers the client owns (local and remote)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anyio
import pytest

from lettabot import sdk
from lettabot.testing.app_server import ExternalAppServer, external_app_server
from lettabot.testing.letta_home import LettaHome

pytestmark = pytest.mark.anyio


@pytest.fixture
def remote(letta_home: LettaHome) -> Iterator[ExternalAppServer]:
    with external_app_server("client-token", letta_home.workdir) as server:
        yield server


async def _gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await anyio.sleep(0.05)
    return False


async def test_a_client_runs_its_own_servers_and_pins_each_conversation(
    letta_home: LettaHome,
) -> None:
    async with sdk.LettaClient(servers=2, model=letta_home.model) as client:
        agent = await client.create_agent()
        assert [s.pid for s in client.servers()].count(None) >= 1  # started lazily
        first = client.create_session(agent, server=0)
        second = client.create_session(agent, server=1)
        async with first, second:
            assert (await first.run_turn("on zero")).result == "You said: on zero"
            assert (await second.run_turn("on one")).result == "You said: on one"
            servers = client.servers()
            assert [s.sessions for s in servers] == [1, 1]
            assert all(s.alive and s.pid for s in servers)
            assert servers[0].pid != servers[1].pid
            saved = first.conversation_id
        assert saved is not None
        home = client.server_for(saved)
        async with client.resume_session(saved) as again:
            assert (await again.run_turn("what was my first message?")).result == (
                "Your first message was: on zero")
            assert client.servers()[home].sessions == 1
        pids = [s.pid for s in client.servers() if s.pid]
        assert len(pids) == 2  # the client holds its servers between sessions
    for pid in pids:
        assert await _gone(pid)  # closing the client stopped and reaped them


async def test_a_client_uses_remote_servers_beside_local_ones(
    letta_home: LettaHome, remote: ExternalAppServer
) -> None:
    async with sdk.LettaClient(servers=1, urls=[(remote.url, "client-token")],
                               model=letta_home.model) as client:
        agent = await client.create_agent(server=0)  # agents live where they were made
        async with client.create_session(agent, server=0) as session:  # the remote one
            assert (await session.run_turn("over there")).result == "You said: over there"
            [on_remote, local] = client.servers()
        assert on_remote.remote and on_remote.pid is None and on_remote.url == remote.url
        assert on_remote.connected and on_remote.sessions == 1
        assert not local.remote


async def test_a_client_refuses_what_it_cannot_do(letta_home: LettaHome) -> None:
    with pytest.raises(ValueError, match="at least one"):
        sdk.LettaClient(servers=0)
    async with sdk.LettaClient(model=letta_home.model) as client:
        with pytest.raises(ValueError, match="does not exist"):
            client.create_session(server=3)
    with pytest.raises(RuntimeError, match="closed"):
        client.create_session()
