"""The App Server's conversation management: fork, archive (update) and list."""

from __future__ import annotations

from typing import Any

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk.errors import ProcessError
from lettabot.sdk.types import ConversationInfo

__all__ = ["fork_on", "list_on", "messages_on", "update_on"]


def _checked(answer: dict[str, Any], what: str) -> dict[str, Any]:
    if not answer.get("success"):
        raise ProcessError(f"could not {what}: {answer.get('error') or 'no reason given'}")
    return answer


async def fork_on(conn: Connection, conversation_id: str, *, agent_id: str | None,
                  hidden: bool, timeout: float) -> str:  # noqa: ASYNC109
    """A copy of the conversation (its messages so far); returns the new id."""
    body: dict[str, Any] = {"hidden": hidden}
    if agent_id:
        body["agent_id"] = agent_id
    frame = {"type": "conversation_fork", "request_id": conn.new_id("fork"),
             "conversation_id": conversation_id, "body": body}
    answer = _checked(await conn.request(frame, "conversation_fork_response", timeout),
                      f"fork conversation {conversation_id!r}")
    conversation = answer.get("conversation") or {}
    if not isinstance(conversation, dict) or not conversation.get("id"):
        raise ProcessError(f"forking {conversation_id!r} returned no conversation id")
    return str(conversation["id"])


async def update_on(conn: Connection, conversation_id: str, body: dict[str, Any],
                    timeout: float) -> ConversationInfo:  # noqa: ASYNC109
    frame = {"type": "conversation_update", "request_id": conn.new_id("conv-update"),
             "conversation_id": conversation_id, "body": body}
    answer = _checked(await conn.request(frame, "conversation_update_response", timeout),
                      f"update conversation {conversation_id!r}")
    return ConversationInfo.from_wire(answer.get("conversation") or {"id": conversation_id})


async def list_on(conn: Connection, agent_id: str, *, limit: int, include_archived: bool,
                  timeout: float) -> list[ConversationInfo]:  # noqa: ASYNC109
    frame = {"type": "conversation_list", "request_id": conn.new_id("conv-list"),
             "query": {"agent_id": agent_id, "limit": limit}}
    answer = _checked(await conn.request(frame, "conversation_list_response", timeout),
                      f"list the conversations of {agent_id!r}")
    out = [ConversationInfo.from_wire(c) for c in answer.get("conversations") or []
           if isinstance(c, dict) and c.get("id")]
    return [c for c in out if include_archived or not c.archived]


async def messages_on(conn: Connection, conversation_id: str, query: dict[str, Any],
                      timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """One page of a conversation's stored messages (no session needed)."""
    frame = {"type": "conversation_messages_list", "request_id": conn.new_id("conv-msgs"),
             "conversation_id": conversation_id, "query": query}
    answer = _checked(await conn.request(frame, "conversation_messages_list_response",
                                         timeout), f"list the messages of {conversation_id!r}")
    return [m for m in answer.get("messages") or [] if isinstance(m, dict)]
