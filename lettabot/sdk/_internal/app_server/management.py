"""A session's requests outside its turns: history, approvals to recover, its queue, and
the state it was opened with."""

from __future__ import annotations

from typing import Any

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk.errors import ProcessError
from lettabot.sdk.types import InitMessage

__all__ = ["bootstrap_state", "list_messages_on", "recover_approvals_on", "remove_queued_on"]


async def list_messages_on(conn: Connection, runtime: dict[str, Any], fields: dict[str, Any],
                           timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """One page of the conversation's messages (oldest first unless ``order`` says)."""
    query = {k: v for k, v in fields.items() if v is not None}
    query.setdefault("order", "asc")
    frame = {"type": "conversation_messages_list", "request_id": conn.new_id("messages"),
             "conversation_id": runtime["conversation_id"], "query": query}
    if runtime["conversation_id"] == "default":
        frame["agent_id"] = runtime["agent_id"]
    answer = await conn.request(frame, "conversation_messages_list_response", timeout)
    if not answer.get("success", True):
        raise ProcessError(f"list_messages failed: {answer.get('error')}")
    return {"messages": answer.get("messages") or [], "has_more": answer.get("has_more")}


async def recover_approvals_on(conn: Connection, runtime: dict[str, Any],
                               timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """Ask the server to send the approvals the conversation waits for again."""
    frame = {"type": "sync", "request_id": conn.new_id("sync"), "runtime": runtime,
             "recover_approvals": True}
    return await conn.request(frame, "sync_response", timeout)


def bootstrap_state(init: InitMessage, permission_mode: str) -> dict[str, Any]:
    """What the session was opened with (the CLI's ``bootstrap_session_state``)."""
    return {"agent_id": init.agent_id, "conversation_id": init.conversation_id,
            "model": init.model, "cwd": init.cwd, "permission_mode": permission_mode}


async def remove_queued_on(conn: Connection, runtime: dict[str, Any], client_message_id: str,
                           timeout: float) -> bool:  # noqa: ASYNC109
    """Take a message waiting behind the running turn out of the server's queue."""
    key = (runtime.get("agent_id"), str(runtime.get("conversation_id")))
    item = conn.queues.get(key, {}).get(client_message_id)
    if item is None:
        return False
    frame = {"type": "remove_queue_item", "request_id": conn.new_id("unqueue"),
             "runtime": dict(runtime), "item_id": item}
    answer = await conn.request(frame, "remove_queue_item_response", timeout)
    return bool(answer.get("success"))
