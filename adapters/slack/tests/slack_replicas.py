"""``lettabot run`` replicas for the cluster test and bench: one process each, Slack in
HTTP mode, its config written as TOML, ready once its ``/readyz`` says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
from slack_harness import SIGNING_SECRET

__all__ = ["TOKEN", "Replica", "replica_settings", "toml"]

TOKEN = "cluster-capability-token"
"""The shared App Server's capability token."""
LETTABOT = [str(Path(sys.executable).with_name("lettabot"))]


@dataclass
class Replica:
    name: str
    config: Path
    http_port: int
    health_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/slack/events"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
        out = self.log.open("ab")
        self.process = subprocess.Popen([*LETTABOT, "run", "--config", str(self.config)],
                                        env=env, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=self.config.parent)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def ready(self, within: float = 90) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, \
                    self.log.read_text()[-3000:]
                try:
                    async with http.get(f"http://127.0.0.1:{self.health_port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await anyio.sleep(0.3)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")


def replica_settings(replica: Replica, folder: Path, *, model: str, store_url: str,
                     server_url: str, slack_api: str) -> dict[str, object]:
    """A cluster replica's config: the shared App Server, the store, Slack in HTTP mode."""
    return {
        "data_dir": str(folder / "data"), "log_level": "INFO",
        "letta": {"model": model},
        "access": {"allowed_users": ["slack:U_ADA"], "approvers": ["slack:U_ADA"]},
        "store": {"url": store_url},
        "servers": {"count": 0, "max_concurrent_turns": 16,
                    "urls": [{"url": server_url, "token": TOKEN}]},
        "cluster": {"enabled": True, "replica": replica.name, "heartbeat_seconds": 2,
                    "takeover_seconds": 10},
        "health": {"port": replica.health_port},
        "turns": {"stop_button_after": 0},
        "slack": {"enabled": True, "mode": "http", "bot_token": "xoxb-e2e",
                  "signing_secret": SIGNING_SECRET, "http_host": "127.0.0.1",
                  "http_port": replica.http_port, "api_url": slack_api},
    }


def toml(settings: dict[str, object]) -> str:
    lines: list[str] = []
    for key, value in settings.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in settings.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for k, v in value.items():
                if isinstance(v, list) and v and isinstance(v[0], dict):
                    inline = ", ".join("{ " + ", ".join(f"{a} = {json.dumps(b)}"
                                                        for a, b in d.items()) + " }" for d in v)
                    lines.append(f"{k} = [{inline}]")
                else:
                    lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"
