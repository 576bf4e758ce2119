"""From an EMPTY ``HOME`` (a machine where the Letta CLI never ran) to a bot answering
through the chosen provider: ``lettabot init`` (flags, or a terminal's answers) then
``lettabot run`` — and the systemd unit's command — with ``openai-compatible``, ``anthropic``
and ``openai``, each pointed at a local stand-in by its base URL (real CLI, offline).

lettabot puts the Letta home on its configured backend itself (the CLI's default on a fresh
home is the cloud); the anthropic and openai keys stay with lettabot: the CLI gets the key
proxy's address and a stand-in key, the provider gets the real key as it expects it."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values
from websockets.sync.client import connect

from lettabot.runtime.cli import build_parser
from lettabot.runtime.init import run_init
from lettabot.testing.provider_standins import AnthropicStandIn, OpenAIStandIn
from lettabot.testing.scripted_model import ScriptedModelServer
from tests.web.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]
KEY = "sk-real-provider-key-5b1e"

pytestmark = pytest.mark.slow


@pytest.fixture
def empty_home(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME with nothing in it, and an environment that names no Letta home or account."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("LETTABOT_", "LETTA_")) or name in (
                "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    return home


def _init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LETTABOT, "init", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def ask_web_chat(port: int, token: str, text: str, expect: str, timeout: float = 90, *,
                 output: Callable[[], str] = str) -> None:
    """Send ``text`` in a new web chat tab on ``port``; wait for ``expect`` in what the tab
    shows (``output``: the bot's log, for the failure message)."""
    tab = "tab-" + uuid.uuid4().hex[:12]
    auth = {"Authorization": f"Bearer {token}"}
    with connect(f"ws://127.0.0.1:{port}/api/live?tab={tab}",
                 additional_headers=auth) as socket:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/send", method="POST",
            data=json.dumps({"tab": tab, "text": text}).encode(),
            headers={**auth, "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(str(socket.recv(timeout=1)))
            except TimeoutError:
                continue
            if any(expect in frame for frame in seen):
                return
        raise AssertionError(f"no {expect!r} in the web chat: {seen}\n{output()}")


class Running:
    """A ``lettabot run`` process, its output, and its web chat."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        env = {**env, "LETTABOT_WEB__PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"lettabot run exited:\n{self.output}"
            if "running (pid" in self.output:
                return
            time.sleep(0.2)
        raise AssertionError(f"lettabot run did not come up:\n{self.output}")

    def ask(self, token: str, text: str, expect: str, timeout: float = 90) -> None:
        ask_web_chat(self.port, token, text, expect, timeout, output=lambda: self.output)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for proc in started:
        proc.stop()


def _run(started: list[Running], command: list[str], *, cwd: Path,
         env: dict[str, str] | None = None) -> Running:
    proc = Running(command, cwd=cwd, env=env or dict(os.environ))
    started.append(proc)
    proc.wait_ready()
    return proc


def _token(bot: Path) -> str:
    return str(dotenv_values(bot / ".env")["LETTABOT_WEB__TOKEN"])


def _backend(home: Path) -> str | None:
    settings = json.loads((home / ".letta" / "settings.json").read_text())
    return settings.get("preferredBackendMode")


def test_init_with_flags_then_run_answers_from_an_empty_home(
    empty_home: Path, tmp_path: Path, running: list[Running],
) -> None:
    with ScriptedModelServer(api_key=KEY) as model:
        bot = tmp_path / "bot"
        done = _init("--platform", "web", "--provider", "openai-compatible", "--base-url",
                     model.base_url, "--api-key", KEY, "--model", "openai-compatible/scripted",
                     "--dir", str(bot), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "# config OK" in done.stdout and "ready: cd" in done.stdout
        assert _backend(empty_home) == "local"  # lettabot put the fresh home there
        proc = _run(running, [*LETTABOT, "run"], cwd=bot)
        proc.ask(_token(bot), "hello from an empty home", "You said: hello from an empty home")
        assert proc.stop() == 0
        assert KEY not in proc.output
        assert all(r.body.get("model") == "scripted" for r in model.requests)


def test_init_answered_in_a_terminal_reaches_anthropic_with_the_key_kept_by_lettabot(
    empty_home: Path, tmp_path: Path, running: list[Running], monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"Platform": "web", "Model provider": "anthropic",
               "anthropic API key": KEY, "Model handle": ""}

    def ask(question: str, secret: bool) -> str:
        return next(v for k, v in answers.items() if question.startswith(k))

    with AnthropicStandIn(api_key=KEY) as api:
        bot = tmp_path / "bot"
        args = build_parser().parse_args(["init", "--base-url", api.base_url,
                                          "--dir", str(bot)])
        assert isinstance(args, argparse.Namespace)
        monkeypatch.chdir(tmp_path)
        assert run_init(args, ask) == 0
        assert 'model = "anthropic/claude-sonnet-4-5"' in (bot / "lettabot.toml").read_text()
        proc = _run(running, [*LETTABOT, "run"], cwd=bot)
        proc.ask(_token(bot), "hi anthropic", "anthropic says: hi anthropic")
        turns = api.turns()
        assert turns and all(t.path.startswith("/v1/messages") for t in turns)
        assert all(t.headers["x-api-key"] == KEY and t.headers.get("anthropic-version")
                   for t in turns)
        assert all("authorization" not in t.headers for t in turns)
        auth = (empty_home / ".letta" / "lc-local-backend" / "providers" / "auth.json")
        assert KEY not in auth.read_text()  # the CLI holds only a stand-in
        assert proc.stop() == 0
        assert KEY not in proc.output


def _systemd(unit: Path) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart (argv) and Environment= lines."""
    command: list[str] = []
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            command = shlex.split(line.removeprefix("ExecStart="))
        elif line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            env[name] = value
    return command, env


def test_the_systemd_units_command_reaches_openai_from_an_empty_home(
    empty_home: Path, tmp_path: Path, running: list[Running],
) -> None:
    with OpenAIStandIn(api_key=KEY) as api:
        bot = tmp_path / "etc-lettabot"
        done = _init("--platform", "web", "--provider", "openai", "--base-url", api.base_url,
                     "--api-key", KEY, "--dir", str(bot), "--no-check", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        command, unit_env = _systemd(ROOT / "deploy" / "systemd" / "lettabot.service")
        assert command[0] == "/opt/lettabot/bin/lettabot" and command[1] == "run"
        command[0] = str(Path(sys.executable).with_name("lettabot"))
        assert unit_env["HOME"] == "/var/lib/lettabot"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "XDG_CACHE_HOME")}
        env.update(unit_env, HOME=str(empty_home), LETTABOT_CONFIG=str(bot / "lettabot.toml"))
        env.update({k: str(v) for k, v in dotenv_values(bot / ".env").items()})  # EnvironmentFile
        proc = _run(running, command, cwd=empty_home, env=env)
        proc.ask(_token(bot), "hi openai", "openai says: hi openai")
        turns = api.turns()
        assert turns and all(t.path.startswith("/v1/responses") for t in turns)
        assert all(t.headers["authorization"] == f"Bearer {KEY}" for t in turns)
        auth = (empty_home / ".letta" / "lc-local-backend" / "providers" / "auth.json")
        assert KEY not in auth.read_text()  # the CLI holds only a stand-in
        assert _backend(empty_home) == "local"
        assert proc.stop() == 0
