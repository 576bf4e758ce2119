"""The ``lettabot`` command: check-config, --version, and run with a SIGTERM drain."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in (env or os.environ).items() if not k.startswith("LETTABOT_")}
    return subprocess.run([*LETTABOT, *args], cwd=cwd, env=clean, capture_output=True,
                          text=True, timeout=60)


def test_version(tmp_path: Path) -> None:
    done = _run("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("lettabot ")


def test_check_config_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[servers]\nmax_concurrent_turns = 0\n[letta]\npermission_mode = "yolo"\n')
    done = _run("check-config", "--config", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "servers.max_concurrent_turns" in done.stderr and "larger value" in done.stderr
    assert "letta.permission_mode" in done.stderr
    missing = _run("check-config", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_check_config_prints_what_would_run_with_secrets_masked(
    tmp_path: Path, letta_home: LettaHome,
) -> None:
    good = tmp_path / "lettabot.toml"
    good.write_text(
        '[letta]\nallowed_tools = ["Bash"]\nenv = { OPENAI_API_KEY = "sk-very-secret-env" }\n'
        '[web]\nhost = "0.0.0.0"\ntoken = "very-secret-web-token"\n'
    )
    done = _run("check-config", "--config", str(good), cwd=tmp_path,
                env={**os.environ, **letta_home.env})
    assert done.returncode == 0, done.stderr
    assert "very-secret-web-token" not in done.stdout + done.stderr
    assert "sk-very-secret-env" not in done.stdout + done.stderr
    assert "OPENAI_API_KEY" in done.stdout  # the key is shown, its value masked
    assert "# adapter web:" in done.stdout and "# config OK" in done.stdout
    assert "CLI runs in strict mode" in done.stdout  # every call reaches lettabot


def test_check_config_says_which_agent_serves_where(
    tmp_path: Path, letta_home: LettaHome,
) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text(
        '[access]\napprovers = ["web:boss"]\n'
        '[[agents]]\nname = "default"\ndefault = true\n'
        '[[agents]]\nname = "ops"\nmodel = "openai/gpt-4.1"\npermission_mode = "strict"\n'
        'approvers = ["slack:UOPS"]\nroutes = [{ adapter = "slack", channel = "COPS" }]\n'
        '[[agents]]\nname = "idle"\n'
    )
    env = {**os.environ, **letta_home.env}
    done = _run("check-config", "--config", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 2  # the ops agent's model is not one this CLI offers
    assert ("lettabot run would fail: agents.ops.model: 'openai/gpt-4.1' is not a model the "
            "Letta CLI offers — use one of:") in done.stderr
    assert letta_home.model in done.stderr
    config.write_text(config.read_text().replace("openai/gpt-4.1", letta_home.model))
    done = _run("check-config", "--config", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("# agents (3;") for line in lines)
    assert ("#   default: agent created on first use, model the CLI default, permission_mode "
            "standard, approvers web:boss; serves every scope no rule matches") in lines
    assert ("#   ops: agent created on first use, model openai/gpt-4.1, permission_mode strict,"
            " approvers slack:UOPS; serves adapter=slack channel=COPS").replace(
                "openai/gpt-4.1", letta_home.model) in lines
    assert ("# warning: agent idle has no routes and is not the default: it serves nothing"
            in lines)


def test_check_config_fails_where_run_would_without_a_model_provider(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"  # the Letta CLI never set up: no provider connected
    home.mkdir()
    config = tmp_path / "lettabot.toml"
    config.write_text("[web]\nenabled = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA")}
    env["HOME"] = str(home)
    done = _run("check-config", "--config", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "no model provider is connected" in done.stderr and "--demo" in done.stderr
    assert "config OK" not in done.stdout and "Traceback" not in done.stderr


SLACK = ('[slack]\nenabled = true\nbot_token = "xoxb-1-SECRETSLACK"\n'
         'app_token = "xapp-1-SECRETAPP"\n')


def test_run_refuses_an_open_chat_bot_unless_opted_in(tmp_path: Path) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n' + SLACK)
    for command in ("run", "check-config"):
        done = _run(command, "--config", str(config), cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert "access.allowed_users" in done.stderr and "access.approvers" in done.stderr
        assert "access.open = true" in done.stderr
        assert "SECRET" not in done.stdout + done.stderr
    opted = tmp_path / "open.toml"
    opted.write_text(f'data_dir = "{tmp_path / "data"}"\n[access]\nopen = true\n' + SLACK)
    done = _run("check-config", "--config", str(opted), cwd=tmp_path)
    assert "refuse" not in done.stderr and "access.open = true" in done.stdout
    assert "SECRET" not in done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _start_run(home: LettaHome, tmp_path: Path, grace: int, top: str = "",
               **popen: object) -> tuple[subprocess.Popen[str], int, int]:
    """``lettabot run`` with the web chat on a free port; returns it, web and health ports."""
    web_port, health_port = _free_port(), _free_port()
    config = tmp_path / "lettabot.toml"
    config.write_text(
        f'{top}data_dir = "{tmp_path / "data"}"\n[letta]\nmodel = "{home.model}"\n'
        f"[web]\nport = {web_port}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    proc = subprocess.Popen(  # type: ignore[call-overload]
        [*LETTABOT, "run", "--config", str(config), "--health-port", str(health_port),
         "--grace", str(grace)],
        cwd=home.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, **popen,
    )
    return proc, web_port, health_port


def test_run_serves_health_and_drains_on_sigterm(letta_home: LettaHome, tmp_path: Path) -> None:
    proc, web_port, health_port = _start_run(letta_home, tmp_path, 5, top='log_format = "json"\n')
    try:
        health = _wait_health(proc, health_port)
        assert health["status"] == "ok" and health["adapters"] == ["web"]
        [server] = health["servers"]
        assert server["alive"] and server["pid"] in _children(proc.pid)
        ready = _wait_health(proc, health_port, "/readyz")
        assert ready["checks"]["store"] == "ok" and ready["checks"]["adapter:web"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics",
                                    timeout=5) as response:
            assert "lettabot_app_server_up" in response.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        output = proc.stdout.read() if proc.stdout else ""
        not_json = [line for line in output.splitlines() if not line.startswith("{")]
        assert not not_json, output
        records = [json.loads(line) for line in output.splitlines()]
        [summary] = [r["message"] for r in records if " running (pid " in r["message"]]
        assert f"adapter web: http://127.0.0.1:{web_port}/" in summary
        assert f"health: http://127.0.0.1:{health_port}/healthz" in summary
        assert "store: sqlite+aiosqlite:///" in summary and "agent default:" in summary
        token = (tmp_path / "data" / "web-token").read_text().strip()
        assert f"open: http://127.0.0.1:{web_port}/?token={token}" in summary  # the URL
        # one line per step while it starts, in order; alembic's INFO lines only with -v
        steps = [r["message"].split(":")[0] for r in records if r["logger"] == "lettabot.start"]
        assert steps == ["config", "ports", "store", "sandbox", "App Server and agent",
                         "adapters"], steps
        assert not [r for r in records if r["logger"].startswith("alembic")], output
        with pytest.raises(ProcessLookupError):  # the App Server was stopped and reaped
            for _ in range(50):
                os.kill(server["pid"], 0)
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_ctrl_c_lets_the_turn_in_flight_finish(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group. The App Server must
    not die with it: lettabot drains (the reply still arrives), then stops the server."""
    from websockets.sync.client import connect

    scripted_model.on("slow goodbye", Reply.say("finished after ctrl-c", delay=4), times=1)
    # its own process group, as a shell gives a job
    proc, web_port, health_port = _start_run(letta_home, tmp_path, 20, start_new_session=True)
    base = f"http://127.0.0.1:{web_port}"
    try:
        _wait_health(proc, health_port)
        token = (tmp_path / "data" / "web-token").read_text().strip()  # generated at start
        auth = {"Authorization": f"Bearer {token}"}
        texts: list[str] = []
        with connect(f"ws://127.0.0.1:{web_port}/api/live?tab=tab-ctrl-c", origin=base,
                     open_timeout=30, additional_headers=auth) as ws:  # type: ignore[arg-type]
            request = urllib.request.Request(
                f"{base}/api/send", method="POST",
                data=json.dumps({"tab": "tab-ctrl-c", "text": "slow goodbye",
                                 "id": "m-ctrl-c"}).encode(),
                headers={"Content-Type": "application/json", "Origin": base, **auth})
            with urllib.request.urlopen(request, timeout=30):
                pass
            deadline = time.monotonic() + 60
            while not any("slow goodbye" in r.user_text for r in scripted_model.requests):
                assert time.monotonic() < deadline, "the model was never asked"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)  # the model is still "thinking" for 4 s
            with contextlib.suppress(Exception):  # the stream closes when lettabot stops
                while not any("finished after ctrl-c" in t for t in texts):
                    event = json.loads(ws.recv(timeout=30))
                    items = event.get("items") or [event.get("item") or {}]
                    texts += [str(item.get("text") or "") for item in items]
        assert proc.wait(30) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert any("finished after ctrl-c" in t for t in texts), (texts, output[-3000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_health(proc: subprocess.Popen[str], port: int,
                 path: str = "/healthz") -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                        timeout=5) as response:
                return dict(json.load(response))
        except OSError:
            time.sleep(0.3)
    raise AssertionError(proc.stdout.read() if proc.stdout else "lettabot did not start")


def test_check_config_leads_with_the_verdict_and_what_runs_then_the_rest_on_verbose(
    tmp_path: Path, letta_home: LettaHome,
) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[access]\n'
                      'approvers = ["web:boss"]\nallowed_users = ["web:ann"]\n'
                      f'[letta]\nmodel = "{letta_home.model}"\n[web]\nenabled = true\n')
    env = {**os.environ, **letta_home.env}
    done = _run("check-config", "--config", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# config OK: lettabot run would start web"), lines[:3]
    text = done.stdout
    for needle in ("# adapter web:", f"# model: {letta_home.model}", "# store: sqlite",
                   "# who may talk: web:ann (and the approvers)", "# approvers: web:boss",
                   "# tool sandbox:", "# agent:"):
        assert needle in text, (needle, text)
    assert "[letta]" not in text and '"None"' not in text and len(lines) < 25, text
    verbose = _run("check-config", "--verbose", "--config", str(config), cwd=tmp_path, env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout.startswith(lines[0]) and "[letta]" in verbose.stdout
    assert "[access]" in verbose.stdout and '"None"' not in verbose.stdout


def test_check_config_leads_with_the_verdict_when_run_would_refuse(tmp_path: Path) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n' + SLACK)
    done = _run("check-config", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith(
        "# lettabot run would NOT start: 1 problem"), done.stdout
    assert "access.allowed_users" in done.stderr


@pytest.mark.parametrize("which", ["web", "health"])
def test_run_checks_its_ports_before_any_slow_work(tmp_path: Path, which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        web_port = port if which == "web" else _free_port()
        config = tmp_path / "lettabot.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n[web]\nport = {web_port}\n')
        done = _run("run", "--config", str(config), "--health-port", str(port), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{which}.port: port {port} on 127.0.0.1 is in use (by pid {os.getpid()}" in (
        done.stderr), done.stderr
    fix = "LETTABOT_WEB__PORT" if which == "web" else "--health-port"
    assert fix in done.stderr and "or stop it" in done.stderr
    assert "invalid lettabot config" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "lettabot.db").exists()  # before the store was opened
