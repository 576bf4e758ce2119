"""SDK benchmarks on the subprocess transport (stream-json), against raw baselines.

1. Cold start to ``init``: a plain spawn of the CLI vs a spawn with NODE_COMPILE_CACHE
   (what the SDK sets). Target: <= 0.75x the plain spawn.
2. A warm turn: through ``Session.run_turn`` vs the same turn over a raw pipe to the CLI.
   Target: <= 1.02x the raw pipe.

Runs the real CLI against the scripted model in a temporary HOME. Prints a table.

    .venv/bin/python bench/bench_sdk.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import anyio

from lettabot import sdk
from lettabot.sdk._internal.cli import find_cli
from lettabot.testing.letta_home import LettaHome, prepare_template
from lettabot.testing.scripted_model import ScriptedModelServer


def _spawn(cli: str, env: dict[str, str], cwd: Path, agent_id: str) -> subprocess.Popen[bytes]:
    """A raw stream-json CLI on a new conversation of ``agent_id``, already initialised."""
    argv = [cli, "--output-format", "stream-json", "--input-format", "stream-json",
            "--permission-mode", "standard", "--agent", agent_id, "--new"]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env, cwd=cwd,
    )  # fmt: skip
    assert proc.stdin
    proc.stdin.write(
        b'{"type":"control_request","request_id":"i","request":{"subtype":"initialize"}}\n'
    )
    proc.stdin.flush()
    return proc


def _read_until(proc: subprocess.Popen[bytes], key: str, value: str) -> None:
    assert proc.stdout
    for line in proc.stdout:
        if json.loads(line).get(key) == value:
            return
    raise RuntimeError(f"the CLI exited before {key}={value}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin
    proc.stdin.close()
    proc.wait(timeout=30)


def _cold_start(cli: str, env: dict[str, str], cwd: Path, agent_id: str) -> float:
    """Seconds from spawn to the init message of `letta --agent X --new` in stream-json."""
    start = time.perf_counter()
    proc = _spawn(cli, env, cwd, agent_id)
    _read_until(proc, "subtype", "init")
    elapsed = time.perf_counter() - start
    _stop(proc)
    return elapsed


def _raw_turn(proc: subprocess.Popen[bytes], text: str) -> float:
    """One turn over a raw pipe: write a user line, read until the result line."""
    assert proc.stdin
    start = time.perf_counter()
    msg = {"type": "user", "message": {"role": "user", "content": text}}
    proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    _read_until(proc, "type", "result")
    return time.perf_counter() - start


async def _warm_turns(
    cli: str, env: dict[str, str], cwd: Path, agent_id: str, runs: int
) -> tuple[list[float], list[float]]:
    """Warm turns, raw pipe and SDK alternately (so drift and history growth hit both)."""
    raw, through_sdk = [], []
    proc = _spawn(cli, env, cwd, agent_id)
    try:
        async with sdk.create_session(agent_id, transport="subprocess") as session:
            _raw_turn(proc, "warm up")
            await session.run_turn("warm up")
            for n in range(runs):
                raw.append(_raw_turn(proc, f"turn {n}"))
                start = time.perf_counter()
                result = await session.run_turn(f"turn {n}")
                through_sdk.append(time.perf_counter() - start)
                assert result.success
    finally:
        _stop(proc)
    return raw, through_sdk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with (
        ScriptedModelServer() as model,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
    ):
        home = LettaHome.copy_of(
            prepare_template(Path(tmp) / "t", model.base_url),
            Path(tmp) / "h",
            model="openai-compatible/scripted",
        )
        os.environ.update(home.env)
        os.chdir(home.workdir)
        cli = find_cli()
        cache = Path(tmp) / "ncc"
        base_env = {k: v for k, v in os.environ.items() if k != "NODE_COMPILE_CACHE"}
        agent_id = anyio.run(lambda: sdk.create_agent(model=home.model, transport="subprocess"))

        plain, cached = [], []
        _cold_start(cli, {**base_env, "NODE_COMPILE_CACHE": str(cache)}, home.workdir, agent_id)
        for _ in range(max(5, args.runs // 2)):  # interleaved, so drift hits both alike
            plain.append(_cold_start(cli, base_env, home.workdir, agent_id))
            cached.append(
                _cold_start(
                    cli, {**base_env, "NODE_COMPILE_CACHE": str(cache)}, home.workdir, agent_id
                )
            )
        os.environ["NODE_COMPILE_CACHE"] = str(cache)
        raw, through_sdk = anyio.run(
            _warm_turns, cli, os.environ.copy(), home.workdir, agent_id, args.runs
        )

    rows = [
        ("cold start to init, plain spawn", statistics.median(plain), None, "baseline"),
        (
            "cold start to init, compile cache",
            statistics.median(cached),
            statistics.median(cached) / statistics.median(plain),
            "<= 0.75x",
        ),
        ("warm turn, raw pipe", statistics.median(raw), None, "baseline"),
        (
            "warm turn, SDK run_turn",
            statistics.median(through_sdk),
            statistics.median(through_sdk) / statistics.median(raw),
            "<= 1.02x",
        ),
    ]
    print(f"{'measurement':40} {'median ms':>10} {'ratio':>7}  target")
    for name, value, ratio, target in rows:
        r = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"{name:40} {value * 1000:10.1f} {r:>7}  {target}")


if __name__ == "__main__":
    main()
