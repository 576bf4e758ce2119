"""Benchmark the app_server transport (issue 7). Prints a table; asserts nothing.

    .venv/bin/python bench/bench_app_server.py [--turns 20] [--firsts 5] [--sessions 100]

1. a warm turn through the SDK vs the same turn over a raw WebSocket client (target <= 1.05x)
2. a new session's first reply: app_server vs subprocess (target >= 10x faster)
3. N sessions with one concurrent turn each: app_server vs subprocess capped at 8 processes,
   wall time and peak RSS of all Letta processes (target: all answered, none crossed, <= 450 MB)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _rss import Peak, letta_rss_mb  # bench/ is on sys.path when run as a script
from websockets.asyncio.client import connect

from lettabot import sdk
from lettabot.sdk._internal.app_server.pool import _slots
from lettabot.testing.letta_home import prepare_template
from lettabot.testing.scripted_model import ScriptedModelServer

MODEL = "openai-compatible/scripted"


async def warm_turns(agent: str, n: int) -> tuple[float, float]:
    sdk_times: list[float] = []
    async with sdk.create_session(agent, model=MODEL, transport="app_server") as session:
        await session.run_turn("warm up")
        for i in range(n):
            t = time.perf_counter()
            result = await session.run_turn(f"ping {i}")
            sdk_times.append(time.perf_counter() - t)
            assert result.result == f"You said: ping {i}"
        slot = next(iter(_slots.values()))
        assert slot.connection is not None
        url = slot.connection.url
        raw_times: list[float] = []
        auth = {"Authorization": f"Bearer {slot.token}"} if slot.token else None
        async with connect(url, max_size=None, additional_headers=auth) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "runtime_start",
                        "request_id": "rs",
                        "agent_id": agent,
                        "create_conversation": {},
                        "mode": "standard",
                    }
                )
            )
            runtime: dict[str, Any] = {}
            while not runtime:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "runtime_start_response":
                    runtime = frame["runtime"]
            for i in range(n + 1):
                t = time.perf_counter()
                await ws.send(
                    json.dumps(
                        {
                            "type": "input",
                            "request_id": f"in-{i}",
                            "runtime": runtime,
                            "payload": {
                                "kind": "create_message",
                                "messages": [
                                    {
                                        "role": "user",
                                        "content": f"ping {i}",
                                        "client_message_id": f"raw-{i}",
                                    }
                                ],
                            },
                        }
                    )
                )
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "turn_finished" and frame["runtime"] == runtime:
                        break
                if i:
                    raw_times.append(time.perf_counter() - t)
    return statistics.median(sdk_times), statistics.median(raw_times)


async def first_replies(agent: str, n: int) -> tuple[float, float]:
    out: dict[str, list[float]] = {"app_server": [], "subprocess": []}
    async with sdk.create_session(agent, transport="app_server") as keep:  # keeps the server up
        await keep.run_turn("warm")
        for name in out:
            for i in range(n):
                t = time.perf_counter()
                async with sdk.create_session(agent, transport=name) as session:  # type: ignore[arg-type]
                    await session.run_turn(f"first {i}")
                out[name].append(time.perf_counter() - t)
    return statistics.median(out["app_server"]), statistics.median(out["subprocess"])


async def first_replies_on_a_client(agent: str, n: int) -> float:
    """The same first reply through ``sdk.LettaClient`` (its own server, held by it)."""
    times = []
    async with sdk.LettaClient() as client:
        async with client.create_session(agent) as warm:
            await warm.run_turn("warm")
        for i in range(n):
            t = time.perf_counter()
            async with client.create_session(agent) as session:
                await session.run_turn(f"first {i}")
            times.append(time.perf_counter() - t)
    return statistics.median(times)


async def many(agent: str, n: int, transport: str, cap: int | None) -> tuple[float, float, int]:
    peak = Peak(letta_rss_mb)
    limiter = anyio.Semaphore(cap or n)
    good = 0

    async def one(i: int) -> None:
        nonlocal good
        async with limiter, sdk.create_session(agent, transport=transport) as session:  # type: ignore[arg-type]
            result = await session.run_turn(f"token-{i}")
            good += result.result == f"You said: token-{i}"

    async with sdk.create_session(agent, transport="app_server") as keep:
        await keep.run_turn("warm")
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(peak.run)
            async with anyio.create_task_group() as inner:
                for i in range(n):
                    inner.start_soon(one, i)
            peak.stop.set()
        wall = time.perf_counter() - t
    return wall, peak.peak, good


async def main(args: argparse.Namespace) -> None:
    with ScriptedModelServer() as model, tempfile.TemporaryDirectory() as tmp:
        home = prepare_template(Path(tmp), model.base_url)
        os.environ.update(
            HOME=str(home), LETTA_LOCAL_BACKEND_DIR=str(home / ".letta/lc-local-backend")
        )
        os.chdir(home / "work")
        agent = await sdk.create_agent(model=MODEL, transport="app_server")
        rows: list[tuple[str, str, str, str]] = []
        s, r = await warm_turns(agent, args.turns)
        rows.append(
            (
                "warm turn (median)",
                f"SDK {s * 1000:.1f} ms",
                f"raw WS {r * 1000:.1f} ms",
                f"{s / r:.2f}x (target <= 1.05x)",
            )
        )
        a, p = await first_replies(agent, args.firsts)
        rows.append(
            (
                "new session, first reply",
                f"app_server {a * 1000:.0f} ms",
                f"subprocess {p * 1000:.0f} ms",
                f"{p / a:.1f}x faster (target >= 10x)",
            )
        )
        c = await first_replies_on_a_client(agent, args.firsts)
        rows.append(
            (
                "new session, first reply",
                f"LettaClient {c * 1000:.0f} ms",
                f"subprocess {p * 1000:.0f} ms",
                f"{p / c:.1f}x faster (same run)",
            )
        )
        wa, ra, ga = await many(agent, args.sessions, "app_server", None)
        wp, rp, gp = await many(agent, args.sessions, "subprocess", 8)
        rows.append(
            (
                f"{args.sessions} sessions, wall",
                f"app_server {wa:.1f} s",
                f"subprocess(8) {wp:.1f} s",
                f"{wp / wa:.1f}x",
            )
        )
        rows.append(
            (
                f"{args.sessions} sessions, peak RSS",
                f"app_server {ra:.0f} MB",
                f"subprocess(8) {rp:.0f} MB",
                "target app_server <= 450 MB",
            )
        )
        rows.append(
            (
                "answered, not crossed",
                f"app_server {ga}/{args.sessions}",
                f"subprocess {gp}/{args.sessions}",
                "",
            )
        )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--firsts", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100)
    anyio.run(main, parser.parse_args())
