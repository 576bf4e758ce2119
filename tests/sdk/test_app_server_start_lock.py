"""An App Server start takes the Letta home's CLI start lock, like a subprocess start:
``letta server --listen`` reads and rewrites ``settings.json`` as it starts (measured with
CLI 0.34.12: the settings are read before it listens and written, truncate-then-write,
right after), so a start beside another CLI start on the same home could read half a file
and write its defaults back."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest

from lettabot.sdk import find_cli
from lettabot.sdk._internal.app_server.process import LocalServer
from lettabot.sdk._internal.start_lock import LOCK_NAME
from lettabot.testing.letta_home import LettaHome

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# Holds the lock file's flock until its stdin closes.
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


async def test_an_app_server_start_waits_for_the_home_start_lock(letta_home: LettaHome) -> None:
    settings = letta_home.path / ".letta" / "settings.json"
    before = settings.read_bytes()
    server = LocalServer(find_cli(), dict(os.environ), letta_home.workdir)
    async with await anyio.open_process(
        [sys.executable, "-c", _HOLDER, str(letta_home.path / ".letta" / LOCK_NAME)]
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert (await holder.stdout.receive()).startswith(b"held")
        url: list[str] = []
        async with anyio.create_task_group() as tg:

            async def start() -> None:
                url.append(await server.start(60))

            tg.start_soon(start)
            # Long enough for an unlocked server to boot, listen and write its settings.
            await anyio.sleep(6)
            assert not url, "the server started while another CLI start held the lock"
            assert settings.read_bytes() == before
            await holder.stdin.aclose()
        await holder.wait()
    try:
        assert url and url[0].startswith("ws://127.0.0.1:")
        assert json.loads(settings.read_text())  # intact after the server's own write
    finally:
        await server.stop()
