"""A request to a busy App Server: the server runs commands one after another on one event
loop, so under a burst of turns an answer comes late (measured with CLI 0.34.12: 60
inputs sent at once were acknowledged 1.6-5.1 s later on a loaded machine, each recorded
in a durable ledger first). A server that keeps sending frames is busy, not deaf: a request
waits for it, and gives up only after its timeout of silence (or ten timeouts in all)."""

from __future__ import annotations

import anyio
import pytest

from lettabot import sdk
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import shared_slots
from lettabot.sdk.errors import ProtocolTimeoutError
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_request_waits_while_the_server_is_busy_sending(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    # A reply streamed over ~2 s in 20 chunks: frames every ~0.1 s, for longer than the
    # request's 0.5 s timeout.
    scripted_model.on("stream slowly", Reply.say("x" * 320, chunk_delay=0.1))
    async with sdk.create_session(model=letta_home.model, transport="app_server",
                                  include_partial_messages=True) as session:
        assert (await session.run_turn("warm up")).success
        conn = next(iter(shared_slots())).connection
        assert isinstance(conn, Connection)
        finished = anyio.Event()
        streaming = anyio.Event()

        async def turn() -> None:
            await session.send("stream slowly")
            async for msg in session.stream():
                if msg.type == "stream_event":
                    streaming.set()
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(turn)
            with anyio.fail_after(30):
                await streaming.wait()
            # A command the server never answers, sent while the turn streams.
            with pytest.raises(ProtocolTimeoutError):
                await conn.request({"type": "no_such_command", "request_id": "x-1"},
                                   "never", 0.5)
            assert finished.is_set(), "gave up while the server was still sending frames"
