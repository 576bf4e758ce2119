"""Benchmark the runtime (issue 8). Prints a table; asserts nothing.

    .venv/bin/python bench/bench_runtime.py [--turns 20] [--firsts 5] [--scopes 100]

1. a warm turn through the runtime (test chat → Bot → App Server → reply posted) vs the same
   turn straight through the SDK (target <= 1.05x)
2. the first reply in a new scope (prewarmed conversation) vs a warm turn (target <= 1.2x)
3. N scopes with one message each, all at once: answered, none crossed, wall time, peak RSS
   of this process plus every Letta process (target <= 600 MB)

Runs offline: the real `letta` CLI against the scripted model, in a temporary HOME.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import anyio
from _offline import offline_home, print_table
from _rss import Peak, own_and_descendants_rss_mb  # bench/ is on sys.path as a script

from lettabot import sdk
from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome


async def timed_turn(chat: TestChat, scope: object, text: str, n: int) -> float:
    t = time.perf_counter()
    await chat.push(text, scope=scope)  # type: ignore[arg-type]
    await chat.wait_done(scope, n)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t
    assert chat.texts(scope)[-1] == f"You said: {text}", chat.texts(scope)  # type: ignore[arg-type]
    return elapsed


async def direct_sdk(agent: str, n: int, cwd: Path) -> float:
    """The same turn with the options the runtime uses (standard mode, partial messages)."""
    times = []

    async def ask(name: str, tool_input: dict[str, object]) -> sdk.PermissionResult:
        return sdk.PermissionDeny(message="no")

    async with sdk.create_session(agent, permission_mode="standard", cwd=cwd,
                                  include_partial_messages=True, can_use_tool=ask) as session:
        await session.run_turn("warm up")
        for i in range(n):
            t = time.perf_counter()
            result = await session.run_turn(f"ping {i}")
            times.append(time.perf_counter() - t)
            assert result.result == f"You said: ping {i}"
    return statistics.median(times)


async def bench(args: argparse.Namespace, home: LettaHome) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    config = Config(_env_file=None, data_dir=home.path / "data",  # type: ignore[call-arg]
                    letta={"model": home.model},
                    servers={"max_concurrent_turns": args.max_turns, "count": args.servers})
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        agent = await bot.router.agent_id()

        # 1. warm turns: runtime vs SDK
        scope = chat.scope("C0", "warm")
        await timed_turn(chat, scope, "warm up", 1)
        runtime = [await timed_turn(chat, scope, f"ping {i}", i + 2) for i in range(args.turns)]
        direct = await direct_sdk(agent, args.turns, config.letta_cwd)
        warm = statistics.median(runtime)
        rows.append(("warm turn, direct SDK (median)", f"{direct * 1000:.0f} ms", ""))
        rows.append(("warm turn, through the runtime (median)", f"{warm * 1000:.0f} ms",
                     f"{warm / direct:.2f}x SDK (target <= 1.05x)"))

        # 2. first reply in a new scope (each takes the prewarmed conversation)
        firsts = []
        for i in range(args.firsts):
            await anyio.sleep(0.5)  # let the prewarm refill, as between real new threads
            firsts.append(await timed_turn(chat, chat.scope("C1", f"new-{i}"), f"hi {i}", 1))
        first = statistics.median(firsts)
        rows.append(("first reply in a new scope (median)", f"{first * 1000:.0f} ms",
                     f"{first / warm:.2f}x warm turn (target <= 1.2x)"))

        # 3. many scopes at once
        scopes = [chat.scope(f"C{i % 7}", f"many-{i}") for i in range(args.scopes)]
        peak = Peak(own_and_descendants_rss_mb)
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(peak.run)
            async def push(i: int) -> None:
                await chat.push(f"token-{i}-z", scope=scopes[i])

            async with anyio.create_task_group() as pushers:
                for i in range(len(scopes)):
                    pushers.start_soon(push, i)
            accepted = time.perf_counter() - t
            for s in scopes:
                await chat.wait_done(s, 1, within=300)
            peak.stop.set()
        wall = time.perf_counter() - t
        answered = sum(1 for s in scopes if chat.texts(s))
        crossed = sum(1 for i, s in enumerate(scopes)
                      if chat.texts(s) != [f"You said: token-{i}-z"])
        rows.append((f"{args.scopes} scopes at once: answered / crossed",
                     f"{answered} / {crossed}", "target: all / 0"))
        rows.append((f"{args.scopes} scopes at once: wall time", f"{wall:.2f} s",
                     f"{args.servers} server(s), max_concurrent_turns = {args.max_turns}; "
                     f"all accepted after "
                     f"{accepted:.2f} s"))
        rows.append(("peak RSS (lettabot + Letta processes)", f"{peak.peak:.0f} MB",
                     "target <= 600 MB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--firsts", type=int, default=5)
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--servers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with offline_home() as (_, home):
        rows = anyio.run(bench, args, home)
    print_table(rows)


if __name__ == "__main__":
    main()
