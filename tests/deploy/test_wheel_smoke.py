"""What the image does, outside a container: build the wheels, install them into a fresh
venv (deploy/docker/build-wheels and install-wheels, as the Dockerfile runs them), then, in an
EMPTY ``HOME`` (a fresh volume: the Letta CLI never ran there), ``lettabot check-config`` on
the deploy config and the image's command ``lettabot run``: probe /healthz and /readyz, one
message in the web chat answered by the model provider, SIGTERM, exit 0. The provider comes
from the environment, as in a container."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lettabot.testing.scripted_model import ScriptedModelServer
from tests.runtime.test_fresh_home import ask_web_chat

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KEY = "sk-container-key-77"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheels, built and installed into a new venv; returns its ``bin``."""
    work = tmp_path_factory.mktemp("image")
    for script, args in (("build-wheels", [work / "dist"]),
                         ("install-wheels", [work / "dist", work / "venv"])):
        done = subprocess.run([str(DEPLOY / "docker" / script), *map(str, args)],
                              capture_output=True, text=True, timeout=600, cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
    return work / "venv" / "bin"


@pytest.fixture
def keyed_model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(api_key=KEY) as server:
        yield server


def _container_env(home: Path, data: Path, model: ScriptedModelServer,
                   **extra: str) -> dict[str, str]:
    """What compose or the Secret puts in the container's environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LETTABOT_", "LETTA_", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    env.update({
        "LETTABOT_DATA_DIR": str(data),
        "LETTABOT_LETTA__CWD": str(data / "workspace"),
        "LETTABOT_LETTA__MODEL": "openai-compatible/scripted",
        "LETTABOT_LETTA__PROVIDERS": json.dumps([{
            "type": "openai-compatible", "base_url": model.base_url,
            "api_key_env": "SCRIPTED_KEY"}]),
        "SCRIPTED_KEY": KEY,
        "LETTABOT_WEB__TOKEN": "web-token-for-the-smoke-test",
        **extra,
    })
    return env


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_the_installed_wheels_run_the_image_command_from_an_empty_home_and_stop_on_sigterm(
    installed: Path, keyed_model: ScriptedModelServer, tmp_path: Path,
) -> None:
    home = tmp_path / "home"  # a fresh container's volume: nothing in it
    home.mkdir()
    config = DEPLOY / "lettabot.toml"
    env = _container_env(home, tmp_path / "data", keyed_model)
    check = subprocess.run([str(installed / "lettabot"), "check-config", "--config",
                            str(config)], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "# config OK" in check.stdout and KEY not in check.stdout + check.stderr

    health, web = _free_port(), _free_port()
    env = _container_env(home, tmp_path / "data", keyed_model,
                         LETTABOT_HEALTH__PORT=str(health), LETTABOT_HEALTH__HOST="127.0.0.1",
                         LETTABOT_WEB__PORT=str(web), LETTABOT_WEB__HOST="127.0.0.1")
    proc = subprocess.Popen([str(installed / "lettabot"), "run", "--config", str(config)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, ready = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"http://127.0.0.1:{health}/readyz")
            except OSError:
                time.sleep(0.3)
                continue
            if status == 200:
                ready = body
                break
            time.sleep(0.3)
        assert ready is not None, proc.stdout.read() if proc.stdout else "no output"
        assert ready["checks"]["adapter:web"] == "ok" and ready["checks"]["store"] == "ok"
        status, alive = _get(f"http://127.0.0.1:{health}/healthz")
        assert status == 200 and alive["status"] == "ok"
        ask_web_chat(web, "web-token-for-the-smoke-test", "hello container",
                     "You said: hello container", 120)
        assert keyed_model.requests  # answered by the provider, through lettabot's key proxy
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert KEY not in output and "web-token-for-the-smoke-test" not in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
