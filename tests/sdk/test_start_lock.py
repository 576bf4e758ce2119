"""The CLI start lock and the settings guard, without a CLI (the subprocess transport's
concurrency tests use the real one)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import pytest

from lettabot.sdk._internal.start_lock import (
    LOCK_NAME,
    SettingsGuard,
    StartGate,
    cli_start_lock,
    letta_dirs,
)

pytestmark = pytest.mark.anyio

_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_the_lock_covers_the_settings_and_the_backend_folders(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert letta_dirs(env) == [tmp_path / ".letta", tmp_path / ".letta" / "lc-local-backend"]
    elsewhere = tmp_path / "backend"
    env["LETTA_LOCAL_BACKEND_DIR"] = str(elsewhere)
    assert set(letta_dirs(env)) == {tmp_path / ".letta", elsewhere}


async def test_a_start_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    (tmp_path / ".letta").mkdir()
    async with await anyio.open_process(
        [sys.executable, "-c", _HOLDER, str(tmp_path / ".letta" / LOCK_NAME), "1.0"]
    ) as holder:
        assert holder.stdout is not None
        assert (await holder.stdout.receive()).startswith(b"held")
        began = time.monotonic()
        with anyio.fail_after(10):
            async with cli_start_lock(env):
                waited = time.monotonic() - began
        await holder.wait()
    assert waited >= 0.7


async def test_starts_in_one_process_take_turns(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    inside = 0
    most = 0

    async def start() -> None:
        nonlocal inside, most
        async with cli_start_lock(env):
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.01)
            inside -= 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(start)
    assert most == 1


def test_the_guard_puts_back_lost_keys_and_keeps_changes(tmp_path: Path) -> None:
    settings = tmp_path / ".letta" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"agents": [1], "mine": "x", "tokenStreaming": False,
                                    "pinnedAgents": []}))
    guard = SettingsGuard({"HOME": str(tmp_path)})
    # What a start that read a half-written file leaves: its defaults, the rest gone.
    settings.write_text(json.dumps({"tokenStreaming": True}))
    assert guard.repair()
    assert json.loads(settings.read_text()) == {"agents": [1], "mine": "x",
                                                "tokenStreaming": True}
    settings.write_text('{"agen')  # truncated
    assert guard.repair()
    assert json.loads(settings.read_text())["mine"] == "x"
    assert not guard.repair()  # nothing lost now


def _letta() -> str:
    return str(Path(sys.executable).parent / "letta")


def test_the_gate_is_only_for_a_cli_run_by_node(tmp_path: Path) -> None:
    binary = tmp_path / "letta"
    binary.write_bytes(b"\x7fELF...")
    env: dict[str, str] = {}
    StartGate().prepare(env, str(binary))
    assert "NODE_OPTIONS" not in env
    gate = StartGate()
    gate.prepare(env, _letta())
    assert gate.active and "cli_start_gate.cjs" in env["NODE_OPTIONS"]
    gate.close()


def _node() -> str:
    import letta_code

    node = Path(letta_code.__file__).parent / "_payload" / "bin" / "node"
    if not node.is_file():
        pytest.skip("no bundled node")
    return str(node)


@pytest.mark.parametrize("opened", [True, False])
def test_the_gate_holds_the_cli_at_the_home_until_opened(tmp_path: Path, opened: bool) -> None:
    import os
    import subprocess

    (tmp_path / ".letta").mkdir()
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    gate = StartGate()
    gate.prepare(env, _letta())
    assert gate.active
    script = ("const fs = require('fs');"
              "console.log('booted');"
              "fs.existsSync(process.env.HOME + '/.letta/settings.json');"
              "console.log('touched', process.env.NODE_OPTIONS === undefined,"
              " process.env.LETTABOT_START_GATE_FD === undefined);")
    proc = subprocess.Popen([_node(), "-e", script], env=env, pass_fds=gate.pass_fds,
                            stdout=subprocess.PIPE, text=True)
    gate.started()
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "booted"
    time.sleep(0.3)
    assert proc.poll() is None  # waiting at the gate
    if opened:
        gate.open()
    else:
        gate.close()
    out, _ = proc.communicate(timeout=10)
    if opened:
        assert proc.returncode == 0 and out.strip() == "touched true true"
    else:
        assert proc.returncode == 75 and "touched" not in out
