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
import json
import logging
from datetime import datetime
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


def _git_head(repo: Path) -> str | None:
    """The commit ``repo``'s HEAD names (None if it cannot tell)."""
    git = repo / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:].strip()
        if (git / ref).is_file():
            return (git / ref).read_text().strip() or None
        for line in (git / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return sha
    except OSError:
        return None
    return None


def prompt_is_current(env: dict[str, str], agent_id: str | None,
                      conversation_id: str) -> bool:
    """Whether the local backend shows the conversation's stored system prompt compiled from
    the agent's current memory: its ``memfsRevision`` is the memory repository's HEAD, its
    ``content`` holds its ``coreMemory`` (after a commit in a turn the CLI updates only the
    latter), and the agent's record was not changed after its ``compiledAt`` (False whenever
    it cannot tell).
    The prompt file's own mtime says nothing: the CLI rewrites it, unchanged, after turns."""
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
    if not prompt.exists():
        return True  # none stored: the CLI compiles it from the memory it finds
    try:
        stored = json.loads(prompt.read_text())
        compiled_at = datetime.fromisoformat(str(stored["compiledAt"]).replace("Z", "+00:00"))
        revision = str(stored["memfsRevision"])
        memory, content = str(stored["coreMemory"]), str(stored["content"])
        changed = record.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if memory not in content:  # the CLI notes memory it committed, but keeps the prompt
        return False
    head = _git_head(backend / "memfs" / agent_id / "memory")
    return head is not None and head == revision and changed <= compiled_at.timestamp()


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
