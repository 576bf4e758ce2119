"""A turn outlives an App Server that answers nothing for a while: under a thousand
concurrent turns the server's one event loop answered no WebSocket ping for more than the
websockets library's default 20 s, and the client closing the connection then lost every
turn in flight (bench/capacity.py). Here the server is frozen (SIGSTOP) for longer than that,
mid-turn, and thawed: the turn still ends with its answer."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from lettabot import sdk
from lettabot.sdk._internal.app_server.pool import shared_slots
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FROZEN = 45  # > the library's ping interval + ping timeout (20 s + 20 s)


async def test_a_turn_survives_a_server_that_does_not_answer_pings(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    # The model answers after 2 s: the turn is in flight when the server is frozen.
    scripted_model.on("slow one", Reply.say("the answer", delay=2))
    async with sdk.create_session(model=letta_home.model, transport="app_server") as session:
        assert (await session.run_turn("warm up")).success
        pid = next(s.server.pid for s in shared_slots() if s.server is not None)
        assert pid is not None
        await session.send("slow one")
        await anyio.sleep(0.5)
        os.kill(pid, signal.SIGSTOP)
        try:
            await anyio.sleep(FROZEN)
        finally:
            os.kill(pid, signal.SIGCONT)
        with anyio.fail_after(60):
            async for msg in session.stream():
                if msg.type == "result":
                    assert msg.success and msg.result == "the answer", msg
