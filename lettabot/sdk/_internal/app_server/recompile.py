"""Bringing a conversation's system prompt up to date with its agent's memory.

A conversation's system prompt is compiled when it is created. An agent's memory files
committed since (by another conversation) reach it only when it is recompiled: measured
with CLI 0.34.12, an agent's default conversation reopened by ``resume_session(agent_id)``
answered from the stale prompt. The App Server's ``conversation_recompile`` does it; the
stream-json CLI has no such request, so the subprocess transport asks an App Server too.
"""

from __future__ import annotations

import anyio

from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import acquire
from lettabot.sdk.errors import ProcessError
from lettabot.sdk.options import SessionOptions

__all__ = ["recompile_on", "recompile_via_server"]


async def recompile_on(conn: Connection, agent_id: str | None, conversation_id: str,
                       timeout: float) -> None:  # noqa: ASYNC109
    frame = frames.conversation_recompile(conn.new_id("recompile"), agent_id, conversation_id)
    answer = await conn.request(frame, "conversation_recompile_response", timeout)
    if not answer.get("success"):
        raise ProcessError(f"could not recompile conversation {conversation_id!r}: "
                           f"{answer.get('error') or 'no reason given'}")


async def recompile_via_server(options: SessionOptions, agent_id: str | None,
                               conversation_id: str) -> None:
    """Recompile through the App Server for ``options`` (started for this if need be)."""
    lease = acquire(options)
    try:
        conn = await lease.connection(options.request_timeout)
        await recompile_on(conn, agent_id, conversation_id, options.request_timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await lease.release()
