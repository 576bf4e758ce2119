"""Bringing a conversation's system prompt up to date with its agent's memory.

A conversation's system prompt is compiled when it is created. An agent's memory files
committed since (by another conversation) reach it only when it is recompiled: measured
with CLI 0.34.12, an agent's default conversation reopened by ``resume_session(agent_id)``
answered from the stale prompt. The App Server's ``conversation_recompile`` does it; the
stream-json CLI has no such request, so the subprocess transport asks an App Server too --
unless the local backend shows the stored prompt is already current (compiled after the
agent's record and every memory file last changed, or not stored at all: then the CLI compiles
it itself), which spares that server's start (about a CLI start) on most resumes.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import anyio

from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import _remote, acquire
from lettabot.sdk._internal.cli import cli_env
from lettabot.sdk.errors import ProcessError
from lettabot.sdk.options import SessionOptions

__all__ = ["prompt_is_current", "recompile_on", "recompile_via_server"]

log = logging.getLogger("lettabot.sdk")


def _segment(value: str) -> str:
    """The local backend's file name for a key (base64url, unpadded)."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _newest(root: Path) -> int | None:
    """The newest mtime (ns) of the files under ``root``, git's own files aside."""
    newest = 0
    if not root.is_dir():
        return None
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
            except OSError:
                return None
    return newest


def prompt_is_current(env: dict[str, str], agent_id: str | None,
                      conversation_id: str) -> bool:
    """Whether the local backend shows the conversation's stored system prompt compiled
    after the agent's record and memory last changed (False whenever it cannot tell)."""
    if not agent_id or not agent_id.startswith("agent-local-"):
        return False
    home = Path(env.get("HOME") or Path.home())
    backend = Path(env.get("LETTA_LOCAL_BACKEND_DIR") or home / ".letta" / "lc-local-backend")
    key = (f"default:{agent_id}" if conversation_id == "default"
           else f"conversation:{conversation_id}")
    conversation = backend / "conversations" / _segment(key)
    record = backend / "agents" / f"{_segment(agent_id)}.json"
    if not conversation.is_dir() or not record.is_file():
        return False
    prompt = conversation / "system-prompt.json"
    try:
        if not prompt.exists():
            return True  # none stored: the CLI compiles it from the memory it finds
        compiled = prompt.stat().st_mtime_ns
        changed = record.stat().st_mtime_ns
    except OSError:
        return False
    memory = _newest(backend / "memfs" / agent_id / "memory")
    if memory is None:
        return False
    return compiled > max(changed, memory)


async def recompile_on(conn: Connection, agent_id: str | None, conversation_id: str,
                       timeout: float) -> None:  # noqa: ASYNC109
    frame = frames.conversation_recompile(conn.new_id("recompile"), agent_id, conversation_id)
    answer = await conn.request(frame, "conversation_recompile_response", timeout)
    if not answer.get("success"):
        raise ProcessError(f"could not recompile conversation {conversation_id!r}: "
                           f"{answer.get('error') or 'no reason given'}")


async def recompile_via_server(options: SessionOptions, agent_id: str | None,
                               conversation_id: str) -> None:
    """Recompile through the App Server for ``options`` (started for this if need be),
    unless the stored prompt is provably current already."""
    if _remote(options)[0] is None and await anyio.to_thread.run_sync(
            prompt_is_current, cli_env(options.env), agent_id, conversation_id):
        log.debug("the prompt of %s/%s is current; no recompile", agent_id, conversation_id)
        return
    lease = acquire(options)
    try:
        conn = await lease.connection(options.request_timeout)
        await recompile_on(conn, agent_id, conversation_id, options.request_timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await lease.release()
