"""A ``letta server`` started by a test itself: an external App Server behind a token."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lettabot.sdk.cli import cli_env, find_cli

__all__ = ["ExternalAppServer", "LettabotHost", "external_app_server"]

_LISTENING = re.compile(r"Listening on (ws://\S+)")


@dataclass(frozen=True)
class ExternalAppServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    """Its output (for a test to show when something went wrong)."""

    def kill(self) -> None:
        """SIGKILL it, as a crash or an OOM kill would."""
        self.process.kill()
        self.process.wait()


@contextmanager
def external_app_server(
    token: str, cwd: Path, *, timeout: float = 60
) -> Iterator[ExternalAppServer]:
    """Run ``letta server --listen`` with ``--ws-auth capability-token``; yield it.

    Its output goes to a file (a pipe nobody reads would fill and stall the server).
    """
    with tempfile.TemporaryDirectory(prefix="letta-server-") as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(token + "\n")
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [find_cli(), "server", "--listen", "ws://127.0.0.1:0",
                 "--ws-auth", "capability-token", "--ws-token-file", str(token_file)],
                env=cli_env(), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while not (found := _LISTENING.search(log_path.read_text(errors="replace"))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"letta server did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
            yield ExternalAppServer(found.group(1), proc, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class LettabotHost:
    """``lettabot host`` run by a test on a fixed port and its own Letta home: an App
    Server host that can be killed (as a crash would) and started again on the same URL."""

    def __init__(self, home: Path, token: str, workdir: Path,
                 workspaces: Path | None = None) -> None:
        self.home = home
        self.workspaces = workspaces
        """The replicas' ``letta.cwd`` (the tools' sandbox mounts it); None: the default."""
        self.token_file = workdir / "token"
        self.token_file.write_text(token + "\n")
        self.log = workdir / "host.log"
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        import shutil
        import sys

        lettabot = shutil.which("lettabot", path=str(Path(sys.executable).parent)) or "lettabot"
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [lettabot, "host", "--listen", self.url, "--home", str(self.home),
                 "--token-file", str(self.token_file),
                 *(["--workspaces", str(self.workspaces)] if self.workspaces else [])],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "Listening on" not in self.log.read_text(errors="replace")[mark:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lettabot host did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the host and its server (the whole process group), as a crash would."""
        import os
        import signal

        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
