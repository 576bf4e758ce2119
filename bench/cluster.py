"""Benchmark the cluster (issues 15, 26): one ``lettabot run`` without ``[cluster]`` (the
baseline), then 1, 2 and 3 replicas, behind one Slack app (HTTP mode) on one PostgreSQL
store, an instant scripted model. Prints a table; asserts only that every message was
answered.

    .venv/bin/python bench/cluster.py [--threads 40] [--messages 3] [--replicas 0,1,2,3]
                                      [--turns-per-server 16]

``0`` in ``--replicas`` is the baseline: one process, the same store, no ``[cluster]``.

For each replica count: ``threads`` Slack threads × ``messages`` messages, each thread's
messages sent one after the other (as a person would), all threads at once, delivered
round-robin to the replicas' endpoints. Reported: turns per second over the run, latency
from Slack getting 200 to the answer's final text reaching the Slack API (p50, p99), and
the peak RSS of everything started (replicas, the shared App Server), with the ratios to
one replica (turns/s) and to one process (p50 latency) measured in the same run.

Runs offline: the real CLI, the scripted model, PostgreSQL on 127.0.0.1:5432, the mock
Slack Web API. The replicas share one App Server (see docs/scaling.md).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import anyio
from _offline import offline_home
from _rss import Peak, own_and_descendants_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "adapters" / "slack" / "tests"))

from slack_harness import SIGNING_SECRET, free_port  # noqa: E402
from slack_mock_api import MockSlack, SlackSender, mention, message, new_ts  # noqa: E402
from slack_replicas import (  # noqa: E402
    TOKEN,
    Replica,
    replica_settings,
    toml,
)

from lettabot.testing.app_server import external_app_server  # noqa: E402
from lettabot.testing.postgres import create_database, drop_database  # noqa: E402
from lettabot.testing.scripted_model import Reply  # noqa: E402


async def run_load(mock: MockSlack, replicas: list[Replica], threads: int, messages: int,
                   tag: str) -> tuple[float, list[float]]:
    sent: dict[str, float] = {}
    channels = [f"C0B{n}" for n in range(8)]

    async def deliver(event: dict[str, object], start: int, text: str) -> None:
        for attempt in range(10):
            replica = replicas[(start + attempt) % len(replicas)]
            status, _ = await SlackSender(replica.events_url, SIGNING_SECRET).event(
                event, event_id=f"Ev{uuid.uuid4().hex[:12]}")
            if status == 200:
                sent[text] = time.monotonic()
                return
        raise RuntimeError("no replica took a message")

    def answered(text: str) -> float | None:
        want = f"You said: {text}"
        for call in mock.calls:
            if call.method in ("chat.postMessage", "chat.update") and \
                    str(call.args.get("text", "")) == want:
                return call.at
        return None

    async def thread(i: int) -> None:
        root, channel = new_ts(), channels[i % len(channels)]
        for m in range(messages):
            text = f"{tag}-t{i}-m{m}"
            event = (mention(text, ts=root, channel=channel) if m == 0 else
                     message(text, ts=new_ts(), thread_ts=root, channel=channel))
            await deliver(event, i + m, text)
            await mock.wait_for(lambda t=text: answered(t), limit=300)

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(threads):
            tg.start_soon(thread, i)
    wall = time.monotonic() - start
    latencies = []
    for text, at in sent.items():
        done = answered(text)
        assert done is not None, text
        latencies.append(done - at)
    return wall, latencies


async def main(threads: int, messages: int, counts: list[int],
               turns_per_server: int = 16) -> None:
    rows: list[str] = []
    base: float | None = None  # turns/s of one replica
    single: float | None = None  # p50 of one process without [cluster]
    with offline_home() as (model, home):
        model.on(re.compile(r"-t\d+-m\d+$"), lambda r: Reply.say(f"You said: {r.user_text}"))
        with external_app_server(TOKEN, home.workdir) as server:
            for count in counts:
                pg = await create_database("lettabot_bench")
                mock = MockSlack()
                mock.streaming = False
                await mock.start()
                root = home.path / f"bench-{count}"
                replicas = []
                try:
                    for n in range(max(count, 1)):
                        folder = root / f"r{n}"
                        folder.mkdir(parents=True)
                        replica = Replica(f"r{n}", folder / "lettabot.toml", free_port(),
                                          free_port(), folder / "lettabot.log")
                        settings = replica_settings(replica, folder, model=home.model,
                                                    store_url=pg, server_url=server.url,
                                                    slack_api=mock.api_url)
                        settings["log_level"] = "WARNING"
                        # the one App Server's turns shared by the replicas, as an operator
                        # sizes servers.max_concurrent_turns (it is per replica)
                        servers = settings["servers"]
                        assert isinstance(servers, dict)
                        if turns_per_server:
                            servers["max_concurrent_turns"] = -(-turns_per_server
                                                                // max(count, 1))
                        if count == 0:
                            del settings["cluster"]  # the baseline: one process
                        replica.config.write_text(toml(settings))
                        replica.start()
                        await replica.ready()
                        replicas.append(replica)
                    await run_load(mock, replicas, 4, 1, f"w{count}")  # warm: agent, caches
                    peak = Peak(own_and_descendants_rss_mb)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(peak.run)
                        wall, lat = await run_load(mock, replicas, threads, messages,
                                                   f"b{count}")
                        peak.stop.set()
                finally:
                    for replica in replicas:
                        replica.stop()
                    await mock.stop()
                    await drop_database(pg)
                rate = len(lat) / wall
                q = statistics.quantiles(lat, n=100)
                if count == 0:
                    single = q[49]
                elif base is None:
                    base = rate
                name = ("one process, no [cluster]" if count == 0 else
                        f"{count} replica{'s' * (count > 1)}")
                rows.append(" | ".join([
                    name, f"{rate:.1f}", f"{rate / base:.2f}x" if base else "–",
                    f"{q[49]:.2f} / {q[98]:.2f} s",
                    f"{q[49] / single:.2f}x" if single and count else "–",
                    f"{peak.peak:.0f} MB"]))
                print(f"{name}: {len(lat)} turns in {wall:.1f} s", flush=True)
    print("\n| setup | turns/s | vs 1 replica | latency p50 / p99 | p50 vs one process "
          "| peak RSS |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--replicas", default="0,1,2,3")
    parser.add_argument("--turns-per-server", type=int, default=16,
                        help="turns at once on the one App Server, shared by the replicas: "
                             "each gets max_concurrent_turns = this / replicas (0: 16 each)")
    args = parser.parse_args()
    anyio.run(main, args.threads, args.messages, [int(c) for c in args.replicas.split(",")],
              args.turns_per_server)
