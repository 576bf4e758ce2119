"""A ``letta server`` started by a test itself: an external App Server behind a token."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lettabot.sdk.cli import cli_env, find_cli

__all__ = ["ExternalAppServer", "external_app_server"]

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
