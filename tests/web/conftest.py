"""Fixtures for the web chat's browser tests: the real ``lettabot run --demo`` in a
subprocess (real CLI, App Server and scripted model) and headless Debian Chromium.

Both are expensive, so each is started once per test session and shared; every test opens
its own pages, so every test talks in its own conversations (one per browser tab).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_URL = re.compile(r"lettabot web chat.*?: (http://[^\s?]+/)(?:\?token=([A-Za-z0-9_-]+))?")


def free_port() -> int:
    """A port free now. Racy (another process may take it before it is bound): prefer
    ``LETTABOT_WEB__PORT=0`` and :attr:`RunningBot.port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningBot:
    """A ``lettabot run`` process and what it printed."""

    proc: subprocess.Popen[str]
    data_dir: Path
    url: str = ""
    """The page's address, without the token."""
    token: str | None = None
    """The token printed with the address (a generated one)."""
    lines: list[str] = field(default_factory=list)

    @property
    def page_url(self) -> str:
        """What a person opens: the printed address, token included."""
        return self.url + (f"?token={self.token}" if self.token else "")

    @property
    def auth(self) -> dict[str, str]:
        """Headers a script sends to be let in."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def workspace(self) -> Path:
        """Where the demo agent's tools run."""
        return self.data_dir / "demo" / "workspace"

    @property
    def port(self) -> int:
        """The port the server bound (printed with the address)."""
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def lettabot_command() -> list[str]:
    exe = Path(sys.executable).with_name("lettabot")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lettabot"]


def start_lettabot(
    workdir: Path, *args: str, env: dict[str, str] | None = None, wait: float = 120.0
) -> RunningBot:
    """Start ``lettabot run <args>`` in ``workdir`` and wait for the web chat's address."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    full_env.update(
        {
            "HOME": str(workdir),
            "LETTABOT_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    proc = subprocess.Popen(
        [*lettabot_command(), "run", *args],
        cwd=workdir,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    bot = RunningBot(proc, data_dir)
    found = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            bot.lines.append(line.rstrip("\n"))
            if not found.is_set() and (m := _URL.search(line)):
                bot.url, bot.token = m.group(1), m.group(2)
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + wait
    try:
        while not found.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"lettabot did not start the web chat:\n{bot.output}")
    except BaseException:  # also a pytest timeout: never leave the process behind
        bot.stop()
        raise
    return bot


@pytest.fixture(scope="session")
def demo_bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBot]:
    """``lettabot run --demo`` (the README's command) on a free loopback port: port 0, so
    the server binds whatever port is free and prints it with the address (no port picked
    here and bound later, which another process may take meanwhile); its token is generated
    and printed with the address."""
    workdir = tmp_path_factory.mktemp("demo-bot")
    cache = tmp_path_factory.mktemp("node-cache")
    bot = start_lettabot(
        workdir,
        "--demo",
        env={"LETTABOT_WEB__PORT": "0", "NODE_COMPILE_CACHE": str(cache)},
    )
    yield bot
    code = bot.stop()
    assert code == 0, f"lettabot exited with {code} on SIGTERM:\n{bot.output[-3000:]}"
    assert "Traceback" not in bot.output, bot.output[-5000:]  # nothing went wrong on the way


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event
    loop running in this thread while it is open, which the async tests after it can't share."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: object) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save screenshots (``LETTABOT_TEST_SCREENSHOTS`` to keep them)."""
    keep = os.environ.get("LETTABOT_TEST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("screenshots")


__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "RunningBot", "free_port", "start_lettabot"]
