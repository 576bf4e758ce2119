"""lettabot.sdk beside the TypeScript Letta Code SDK, measured in the same run (issue 26).

Both drive the same CLI (the ``letta.js`` of the installed ``letta`` wheel, run by its bundled
``node``: lettabot through ``letta``, the TS SDK through ``LETTA_CLI_PATH`` with that ``node``
first on PATH) against the scripted model, in one temporary HOME. The TS SDK
(``@letta-ai/letta-code-sdk``) is installed into ``bench/ts/`` by ``npm install`` on first run;
``bench/ts/bench.mjs`` runs its side. lettabot runs on its default transport (``app_server``),
and on ``subprocess`` where noted. Prints a table; asserts nothing.

    .venv/bin/python bench/ts_sdk.py [--turns 20] [--prompts 10] [--resumes 8] [--sessions 50]

Rows (medians; ratio = lettabot / TS, lower is better):
1. a warm turn on an open session;
2. ``prompt()`` called N times in a row (per call), and each SDK's ratio to its cold start
   (lettabot: the first call, which starts the App Server; target <= 0.2x);
3. a default-conversation resume (``resume_session(agent_id)``) and one turn, to the answer
   (lettabot also recompiles the conversation's prompt from the agent's memory first, which the
   TS SDK does not do);
4. N sessions at once, one turn each: wall time, peak RSS of the Letta CLI processes, how many
   sessions landed on a conversation another one also got, whether settings.json survived.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
from _offline import offline_home  # bench/ is on sys.path when run as a script
from _rss import Peak, letta_rss_mb

from lettabot import sdk
from lettabot.sdk._internal.app_server import pool

TS_DIR = Path(__file__).resolve().parent / "ts"
TS_SDK = TS_DIR / "node_modules" / "@letta-ai" / "letta-code-sdk"


def ensure_ts_sdk() -> None:
    if not TS_SDK.is_dir():
        print("installing @letta-ai/letta-code-sdk into bench/ts (npm install) ...", flush=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=TS_DIR, check=True)


def cli_payload() -> tuple[Path, Path]:
    """The node binary and ``letta.js`` the ``letta`` wheel runs."""
    import letta_code

    payload = Path(letta_code.__file__).resolve().parent / "_payload"
    return payload / "bin" / "node", payload / "app" / "letta.js"


def ts_env() -> dict[str, str]:
    node, letta_js = cli_payload()
    env = dict(os.environ)
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    env["LETTA_CLI_PATH"] = str(letta_js)
    env["LETTA_CODE_DISTRIBUTION"] = "pypi"  # what the `letta` launcher sets
    return env


def settings_digest() -> str:
    path = Path.home() / ".letta" / "settings.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def settings_ok() -> bool:
    path = Path.home() / ".letta" / "settings.json"
    try:
        return bool(json.loads(path.read_text()))
    except (OSError, ValueError):
        return False


async def ts_phase(phase: str, agent: str, count: int, *, sample_rss: bool = False
                   ) -> dict[str, Any]:
    node, _ = cli_payload()
    peak = Peak(letta_rss_mb)
    async with anyio.create_task_group() as tg:
        if sample_rss:
            tg.start_soon(peak.run)
        proc = await anyio.run_process(
            [str(node), str(TS_DIR / "bench.mjs"), phase, agent, str(count)],
            cwd=os.getcwd(), env=ts_env(), check=False)
        peak.stop.set()
    if proc.returncode != 0:
        raise RuntimeError(f"TS {phase} failed:\n{proc.stderr.decode()[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    out["peak_mb"] = peak.peak
    return out


def shared(conversations: list[str | None]) -> int:
    """Sessions whose conversation another session of the batch also got."""
    seen: dict[str | None, int] = {}
    for c in conversations:
        seen[c] = seen.get(c, 0) + 1
    return sum(n for c, n in seen.items() if n > 1 or c is None)


# -- lettabot ----------------------------------------------------------------------------


async def py_warm(agent: str, turns: int) -> list[float]:
    times = []
    async with sdk.create_session(agent) as session:
        await session.run_turn("warm up")
        for n in range(turns):
            start = time.perf_counter()
            result = await session.run_turn(f"turn {n}")
            times.append((time.perf_counter() - start) * 1000)
            assert result.result == f"You said: turn {n}", result
    return times


async def interleaved_warm(agent: str, turns: int) -> dict[str, list[float]]:
    """Warm turns on one App Server, taking turns: a lettabot session's, then two over the
    bare protocol (one WebSocket, ``input`` → ``turn_finished``, no SDK) with and without a
    client_message_id (with one, the server records the input in its durable ledger). Taking
    turns puts the three under the same machine load."""
    from websockets.asyncio.client import connect

    from lettabot.sdk._internal.app_server import frames

    times: dict[str, list[float]] = {"sdk": [], "with_id": [], "no_id": []}
    async with sdk.create_session(agent) as session:
        await session.run_turn("warm up")
        server = next(s.server for s in pool.shared_slots() if s.server is not None)
        assert server.url is not None
        async with connect(server.url.rstrip("/") + "/ws", max_size=None, additional_headers={
                "Authorization": f"Bearer {server.token}"}) as ws:

            async def until(kind: str) -> dict[str, Any]:
                while True:
                    frame: dict[str, Any] = json.loads(await ws.recv())
                    if frame.get("type") == kind:
                        return frame

            await ws.send(json.dumps(frames.runtime_start(
                "rs-1", agent_id=agent, create_conversation={}, mode="standard",
                cwd=os.getcwd())))
            runtime = (await until("runtime_start_response"))["runtime"]

            async def bare(n: int, with_id: bool) -> float:
                message: dict[str, Any] = {"role": "user", "content": f"raw {n}"}
                if with_id:
                    message["client_message_id"] = f"raw-{n}-{time.time_ns()}"
                start = time.perf_counter()
                await ws.send(json.dumps({
                    "type": "input", "request_id": f"in-{n}-{with_id}", "runtime": runtime,
                    "payload": {"kind": "create_message", "messages": [message]}}))
                await until("turn_finished")
                return (time.perf_counter() - start) * 1000

            await bare(-1, True)  # the bare conversation's first turn
            for n in range(turns):
                start = time.perf_counter()
                await session.run_turn(f"turn {n}")
                times["sdk"].append((time.perf_counter() - start) * 1000)
                times["with_id"].append(await bare(n, True))
                times["no_id"].append(await bare(n, False))
    return times


async def py_prompts(agent: str, count: int) -> list[float]:
    times = []
    for n in range(count):
        start = time.perf_counter()
        result = await sdk.prompt(f"prompt {n}", agent)
        times.append((time.perf_counter() - start) * 1000)
        assert result.result == f"You said: prompt {n}", result
    return times


async def py_resumes(agent: str, count: int, transport: str) -> list[float]:
    times = []
    for n in range(count):
        start = time.perf_counter()
        async with sdk.resume_session(agent, transport=transport) as session:
            result = await session.run_turn(f"resume {n}")
            times.append((time.perf_counter() - start) * 1000)
        assert result.result == f"You said: resume {n}", result
    return times


async def py_concurrent(agent: str, count: int, transport: str) -> dict[str, Any]:
    peak = Peak(letta_rss_mb)
    rows: list[dict[str, Any]] = [{} for _ in range(count)]

    async def one(i: int) -> None:
        try:
            async with sdk.create_session(agent, transport=transport) as session:
                result = await session.run_turn(f"token-{i}-xyz")
                rows[i] = {"conversation": session.conversation_id, "answer": result.result,
                           "expected": f"You said: token-{i}-xyz"}
        except Exception as exc:
            rows[i] = {"error": repr(exc)[:300]}

    start = time.perf_counter()
    async with anyio.create_task_group() as outer:
        outer.start_soon(peak.run)
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
        wall = (time.perf_counter() - start) * 1000
        peak.stop.set()
    return {"wall": wall, "sessions": rows, "peak_mb": peak.peak}


# -- the table ---------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def summarize(batch: dict[str, Any]) -> tuple[int, int, int]:
    """(errors, crossed answers, sessions on a shared conversation)"""
    sessions = batch["sessions"]
    errors = sum(1 for s in sessions if "error" in s)
    crossed = sum(1 for s in sessions if "error" not in s and s["answer"] != s["expected"])
    landed = shared([s.get("conversation") for s in sessions if "error" not in s])
    return errors, crossed, landed


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    head = ("measure", "lettabot", "TS SDK", "ratio", "target / note")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = f"{{:<{widths[0]}}}  {{:>{widths[1]}}}  {{:>{widths[2]}}}  {{:>{widths[3]}}}  {{}}"
    print()
    print(line.format(*head))
    print("-" * (sum(widths) + 30))
    for row in rows:
        print(line.format(*row))


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--resumes", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--warm-only", action="store_true",
                        help="only the warm-turn rows (a quick before/after)")
    parser.add_argument("--subprocess-concurrent", action="store_true",
                        help="also start --sessions sessions at once on lettabot's subprocess "
                             "transport")
    args = parser.parse_args()
    ensure_ts_sdk()
    rows: list[tuple[str, str, str, str, str]] = []
    with offline_home() as (_model, home):
        os.environ.pop("LETTABOT_SDK_APP_SERVER_IDLE", None)  # the default idle period
        agent = anyio.run(lambda: sdk.create_agent(model=home.model))
        pool.stop_idle()

        # 1. warm turn
        py = anyio.run(py_warm, agent, args.turns)
        ts = anyio.run(ts_phase, "warm", agent, args.turns)
        pool.stop_idle()
        rows.append(("warm turn (median)", ms(med(py)), ms(med(ts["times"])),
                     ratio(med(py), med(ts["times"])), "<= 1.0x"))
        # ... and, taking turns on one App Server: lettabot, and the bare protocol with and
        # without a client_message_id (what the server itself costs per turn)
        mixed = anyio.run(interleaved_warm, agent, args.turns)
        pool.stop_idle()
        for key, label, note in (
                ("sdk", "lettabot", "interleaved with the next two"),
                ("with_id", "bare App Server protocol, with client_message_id",
                 "no SDK (what lettabot sends)"),
                ("no_id", "bare App Server protocol, no client_message_id", "no SDK")):
            rows.append((f"  ... {label}", ms(med(mixed[key])), ms(med(ts["times"])),
                         ratio(med(mixed[key]), med(ts["times"])), note))
        if args.warm_only:
            print_table(rows)
            return

        # 2. sequential prompt() x N, from no server running (first call = cold start)
        py = anyio.run(py_prompts, agent, args.prompts)
        pool.stop_idle()
        ts = anyio.run(ts_phase, "prompt", agent, args.prompts)
        py_warm_calls, ts_calls = med(py[1:]), med(ts["times"][1:])
        rows.append((f"prompt() x{args.prompts}, cold first call", ms(py[0]),
                     ms(ts["times"][0]), ratio(py[0], ts["times"][0]), "starts the server/CLI"))
        rows.append((f"prompt() x{args.prompts}, median of calls 2..N", ms(py_warm_calls),
                     ms(ts_calls), ratio(py_warm_calls, ts_calls), ""))
        rows.append(("  ... each SDK's ratio to its cold start", ratio(py_warm_calls, py[0]),
                     ratio(ts_calls, ts["times"][0]), "", "lettabot <= 0.2x"))

        # 3. default-conversation resume + one turn (lettabot: app_server, then subprocess;
        # each from no server running)
        py_app = anyio.run(py_resumes, agent, args.resumes, "app_server")
        pool.stop_idle()
        py_sub = anyio.run(py_resumes, agent, args.resumes, "subprocess")
        pool.stop_idle()
        ts = anyio.run(ts_phase, "resume", agent, args.resumes)
        tsr = med(ts["times"])
        rows.append(("default-conversation resume + turn", ms(med(py_app)), ms(tsr),
                     ratio(med(py_app), tsr), f"<= 1.0x (first: {py_app[0]:.0f} ms)"))
        rows.append(("  ... lettabot on subprocess", ms(med(py_sub)), ms(tsr),
                     ratio(med(py_sub), tsr), f"<= 1.0x (first: {py_sub[0]:.0f} ms)"))

        # 4. N sessions at once
        before = settings_digest()
        batch = anyio.run(py_concurrent, agent, args.sessions, "app_server")
        pool.stop_idle()
        py_settings = settings_ok()
        errors, crossed, landed = summarize(batch)
        ts = anyio.run(lambda: ts_phase("concurrent", agent, args.sessions, sample_rss=True))
        ts_settings = settings_ok()
        t_errors, t_crossed, t_landed = summarize(ts)
        n = args.sessions
        rows.append((f"{n} sessions at once, wall", ms(batch["wall"]), ms(ts["wall"]),
                     ratio(batch["wall"], ts["wall"]), "one turn each"))
        rows.append((f"{n} sessions at once, peak RSS", f"{batch['peak_mb']:.0f} MB",
                     f"{ts['peak_mb']:.0f} MB", ratio(batch["peak_mb"], ts["peak_mb"]),
                     "Letta CLI processes"))
        rows.append((f"{n} sessions at once, on a shared conversation", str(landed),
                     str(t_landed), "", "0"))
        rows.append((f"{n} sessions at once, failed / crossed answers",
                     f"{errors} / {crossed}", f"{t_errors} / {t_crossed}", "", "0 / 0"))
        rows.append(("settings.json intact after the batch", "yes" if py_settings else "NO",
                     "yes" if ts_settings else "NO", "",
                     "unchanged" if settings_digest() == before else "rewritten"))
        if args.subprocess_concurrent:
            batch = anyio.run(py_concurrent, agent, args.sessions, "subprocess")
            pool.stop_idle()
            errors, crossed, landed = summarize(batch)
            rows.append(("  ... lettabot subprocess: wall / shared / failed",
                         ms(batch["wall"]), "", ratio(batch["wall"], ts["wall"]),
                         f"shared {landed}, failed {errors}, crossed {crossed}, "
                         f"settings {'ok' if settings_ok() else 'DAMAGED'}"))
        print(f"\nTS SDK {json.loads((TS_SDK / 'package.json').read_text())['version']} on node "
              f"{ts['node']}; CLI {cli_payload()[1]}")
    print_table(rows)


if __name__ == "__main__":
    main()
