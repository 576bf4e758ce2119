"""How many conversations one App Server host keeps turning at once (issue 26, part 5).

The scripted model answers every request after a realistic delay (``--reply-seconds``,
2 s by default), streamed in 16-character chunks spread over it. For each N of the
``--plan``: N concurrent requests straight to the model over HTTP (the model's own
latency, in the same run, as the baseline), then N concurrent turns through lettabot.sdk,
one per conversation, all conversations already open on the App Server(s). Reported: p50 /
p99 / max turn latency beside the model's own, failures, the App Servers' peak RSS and CPU
seconds (with the git processes they spawn), and this process's CPU seconds (the SDK
client and the scripted model, which runs on threads here).

A plan item ``2:N,...`` runs the same on two App Servers, each on its own Letta home (two
"hosts" on this machine: their own agent, their own local backend; the client spreads the
conversations over them, half each); ``1t:N,...`` puts the App Server's input ledger
(``~/.letta/state``) on tmpfs, to see what its ``fsync``s cost. It is not three lettabot
cluster replicas: those share one App Server here (docs/scaling.md), so they would not add
App Server capacity.

    .venv/bin/python bench/capacity.py [--plan 1:100,300,1000 2:100,300,1000]
        [--reply-seconds 2] [--open-batch 25] [--json rows.json]

Asserts nothing; prints a table (and ``--json`` writes the rows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from _rss import rss_kb  # bench/ is on sys.path when run as a script

from lettabot import sdk
from lettabot.sdk._internal.app_server import pool
from lettabot.testing.letta_home import LettaHome, prepare_template
from lettabot.testing.scripted_model import ScriptedModelServer

_TICK = os.sysconf("SC_CLK_TCK")


# -- measuring ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (the git it runs)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_pids() -> list[int]:
    return [s.server.pid for s in pool.shared_slots()
            if s.server is not None and s.server.alive() and s.server.pid is not None]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Sampler:
    """Peak RSS (MB, summed) of some pids, every 100 ms until stopped."""

    pids: list[int]
    peak: float = 0.0
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, sum(rss_kb(p) for p in self.pids) / 1024)
            with anyio.move_on_after(0.1):
                await self.stop.wait()


# -- the model's own latency ----------------------------------------------------------------


async def model_request(port: int, n: int) -> float:
    """One streamed chat completion, straight to the model: seconds to its end."""
    body = json.dumps({"model": "scripted", "stream": True,
                       "messages": [{"role": "user", "content": f"baseline {n}"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    began = time.perf_counter()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head + body)
        data = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while b"data: [DONE]" not in data:
                data += await stream.receive()
    if b"data: [DONE]" not in data:
        raise RuntimeError("the model's stream ended early")
    return time.perf_counter() - began


async def model_baseline(port: int, n: int) -> list[float]:
    times: list[float] = []

    async def one(i: int) -> None:
        times.append(await model_request(port, i))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return times


# -- lettabot -------------------------------------------------------------------------------


@dataclass
class Host:
    """One App Server "host": a Letta home, its agent, its open conversations."""

    home: LettaHome
    env: dict[str, str]
    ledger: str = "disk"
    agent: str = ""
    sessions: list[sdk.Session] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


async def open_sessions(host: Host, count: int, batch: int, stack: contextlib.AsyncExitStack
                        ) -> None:
    """Open ``count`` more conversations on ``host`` (``batch`` at a time)."""
    async def one() -> None:
        session = sdk.create_session(host.agent, env=host.env)
        await stack.enter_async_context(session)
        host.sessions.append(session)

    while len(host.sessions) < count:
        todo = min(batch, count - len(host.sessions))
        async with anyio.create_task_group() as tg:
            for _ in range(todo):
                tg.start_soon(one)


async def turns(sessions: list[sdk.Session], tag: str) -> tuple[list[float], list[str]]:
    times: list[float] = []
    failures: list[str] = []

    async def one(i: int, session: sdk.Session) -> None:
        began = time.perf_counter()
        try:
            result = await session.run_turn(f"{tag} {i}")
        except Exception as exc:  # a benchmark counts failures, it does not stop
            failures.append(repr(exc)[:200])
            return
        if result.result != f"You said: {tag} {i}":
            failures.append(f"{result.subtype}: {result.error or result.result!r}"[:200])
            return
        times.append(time.perf_counter() - began)

    async with anyio.create_task_group() as tg:
        for i, session in enumerate(sessions):
            tg.start_soon(one, i, session)
    return times, failures


async def measure(hosts: list[Host], model: ScriptedModelServer, n: int, batch: int,
                  stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    per_host = -(-n // len(hosts))
    opened_at = time.perf_counter()
    for host in hosts:
        await open_sessions(host, per_host, batch, stack)
    open_seconds = time.perf_counter() - opened_at
    chosen = [s for host in hosts for s in host.sessions[:per_host]][:n]

    base = await model_baseline(model.port, n)

    pids = [p for host in hosts for p in host.pids]
    cpu_before = {p: cpu_seconds(p) for p in pids}
    own_before = own_cpu()
    sampler = Sampler(pids)
    idle_rss = sum(rss_kb(p) for p in pids) / 1024
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler.run)
        times, failures = await turns(chosen, f"cap{n}")
        sampler.stop.set()
    wall = time.perf_counter() - began
    return {
        "n": n, "hosts": len(hosts), "ledger": hosts[0].ledger,
        "model_p50": pct(base, 0.5), "model_p99": pct(base, 0.99),
        "p50": pct(times, 0.5), "p99": pct(times, 0.99), "max": max(times, default=0.0),
        "ok": len(times), "failed": len(failures), "failures": sorted(set(failures))[:5],
        "wall": wall, "open_s": open_seconds,
        "idle_rss_mb": idle_rss, "rss_mb": sampler.peak,
        "server_cpu_s": sum(cpu_seconds(p) - c for p, c in cpu_before.items()),
        "client_cpu_s": own_cpu() - own_before,
        "conversations_open": sum(len(h.sessions) for h in hosts),
    }


async def start_host(host: Host, stack: contextlib.AsyncExitStack) -> None:
    known = set(server_pids())
    host.agent = await sdk.create_agent(model=host.home.model, env=host.env)
    # The first turn of a fresh server goes alone (the SDK's warm-up rule).
    await open_sessions(host, 1, 1, stack)
    await host.sessions[0].run_turn("warm up")
    host.pids = [p for p in server_pids() if p not in known]


async def run_plan(plan: list[tuple[str, list[int]]], sets: dict[str, list[Host]],
                   model: ScriptedModelServer, batch: int, out: Path | None
                   ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        for hosts in sets.values():
            for host in hosts:
                await start_host(host, stack)
        for name, sizes in plan:
            for n in sizes:
                row = await measure(sets[name], model, n, batch, stack)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if out is not None:  # as it goes: a long run stopped early keeps its rows
                    await anyio.Path(out).write_text(json.dumps(rows, indent=2))
    return rows


def print_table(rows: list[dict[str, Any]], reply_seconds: float) -> None:
    head = ("hosts", "ledger", "N", "model p50 / p99", "turn p50 / p99 / max", "p99 / model p99",
            "failed", "server RSS", "server CPU", "client+model CPU", "wall")
    lines = [head]
    for r in rows:
        lines.append((
            str(r["hosts"]), r["ledger"], str(r["n"]),
            f"{r['model_p50']:.2f} / {r['model_p99']:.2f} s",
            f"{r['p50']:.2f} / {r['p99']:.2f} / {r['max']:.2f} s",
            f"{r['p99'] / r['model_p99']:.2f}x" if r["ok"] else "-",
            f"{r['failed']}/{r['n']}",
            f"{r['idle_rss_mb']:.0f} → {r['rss_mb']:.0f} MB",
            f"{r['server_cpu_s']:.1f} s ({1000 * r['server_cpu_s'] / r['n']:.0f} ms/turn)",
            f"{r['client_cpu_s']:.1f} s",
            f"{r['wall']:.1f} s",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print(f"\nscripted model: {reply_seconds:.1f} s per reply, streamed; goal: p99 <= 1.5x "
          "the model's own latency at N = 1,000 on one host\n")
    for i, line in enumerate(lines):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        if r["failures"]:
            print(f"  N={r['n']} hosts={r['hosts']} failures: {r['failures']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", nargs="+", default=["1:100,300,1000", "2:100,300,1000"],
                        metavar="HOSTS:N,N",
                        help="what to run, in order: host count (a 't' after it puts the "
                             "App Servers' input ledger, ~/.letta/state, on tmpfs), then the "
                             "Ns; e.g. 1:100,300 2:100,300 1:1000 1t:100")
    parser.add_argument("--reply-seconds", type=float, default=2.0)
    parser.add_argument("--open-batch", type=int, default=25,
                        help="conversations opened at once while preparing")
    parser.add_argument("--json", type=Path, help="also write the rows here (after each)")
    parser.add_argument("--print", type=Path, metavar="JSON",
                        help="only print the table of rows a --json run wrote")
    args = parser.parse_args()
    if args.print:
        print_table(json.loads(args.print.read_text()), args.reply_seconds)
        return
    plan = [(item.split(":")[0], [int(n) for n in item.split(":")[1].split(",")])
            for item in args.plan]
    with ScriptedModelServer() as model, tempfile.TemporaryDirectory() as tmp:
        template = prepare_template(Path(tmp) / "template", model.base_url)
        model.reply_seconds = args.reply_seconds
        os.environ.setdefault("NODE_COMPILE_CACHE", str(Path(tmp) / "node-cache"))
        os.environ["LETTABOT_SDK_APP_SERVER_IDLE"] = "0"
        shm = Path(tempfile.mkdtemp(prefix="lettabot-capacity-", dir="/dev/shm"))
        sets: dict[str, list[Host]] = {}
        try:
            for name, _ in plan:
                if name in sets:
                    continue
                tmpfs = name.endswith("t")
                sets[name] = []
                for h in range(int(name.rstrip("t"))):
                    folder = f"hosts{name}-{h}"
                    home = LettaHome.copy_of(template, Path(tmp) / folder,
                                             model=f"openai-compatible/{model.models[0]}")
                    if tmpfs:
                        (shm / folder).mkdir(mode=0o700)
                        (home.path / ".letta" / "state").symlink_to(shm / folder)
                    sets[name].append(Host(home=home, env=dict(home.env),
                                           ledger="tmpfs" if tmpfs else "disk"))
            os.chdir(next(iter(sets.values()))[0].home.workdir)
            rows = anyio.run(run_plan, plan, sets, model, args.open_batch, args.json)
            pool.stop_idle()
        finally:
            shutil.rmtree(shm, ignore_errors=True)
    print_table(rows, args.reply_seconds)


if __name__ == "__main__":
    main()
