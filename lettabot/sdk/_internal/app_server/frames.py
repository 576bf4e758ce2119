"""App Server frames: builders for the commands we send, checked before sending.

The App Server silently drops a command that fails its validation (no answer at all),
so every command is built here and checked against the shape the server accepts
(CLI 0.34.12, ``dist/types/types/*.d.ts``) before it reaches the socket.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MODES",
    "FrameError",
    "abort_message",
    "approval_response",
    "create_message",
    "execution_settings",
    "external_tool_response",
    "runtime_of",
    "runtime_start",
    "validate",
]

MODES = ("standard", "acceptEdits", "unrestricted", "strict")


class FrameError(ValueError):
    """A command we were about to send would fail the server's validation."""


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_runtime(runtime: Any) -> None:
    if not isinstance(runtime, dict) or not isinstance(runtime.get("conversation_id"), str):
        raise FrameError(f"runtime must name a conversation_id, got {runtime!r}")
    agent = runtime.get("agent_id")
    if agent is not None and not isinstance(agent, str):
        raise FrameError(f"runtime.agent_id must be a string or null, got {agent!r}")


def _check_settings(settings: Any) -> None:
    # Mirrors isRuntimeExecutionSettings: both tool lists and disable_memory_guard are required.
    if not isinstance(settings, dict):
        raise FrameError("execution_settings must be an object")
    if not (_strings(settings.get("allowed_tools")) and _strings(settings.get("disallowed_tools"))):
        raise FrameError("execution_settings needs allowed_tools and disallowed_tools lists")
    if not isinstance(settings.get("disable_memory_guard"), bool):
        raise FrameError("execution_settings needs a boolean disable_memory_guard")
    turns = settings.get("max_turns")
    if turns is not None and (not isinstance(turns, int) or isinstance(turns, bool) or turns < 1):
        raise FrameError("execution_settings.max_turns must be a positive integer")


def _check_tools(groups: Any) -> None:
    if not isinstance(groups, list):
        raise FrameError("external_tools must be a list of {tools: [...]} groups")
    for group in groups:
        tools = group.get("tools") if isinstance(group, dict) else None
        if not isinstance(tools, list):
            raise FrameError("each external_tools group needs a tools list")
        for tool in tools:
            if not (
                isinstance(tool, dict)
                and isinstance(tool.get("name"), str)
                and isinstance(tool.get("description"), str)
                and isinstance(tool.get("parameters"), dict)
            ):
                raise FrameError(f"bad external tool definition: {tool!r}")


def _check_runtime_start(frame: dict[str, Any]) -> None:
    if "agent_id" in frame and "create_agent" in frame:
        raise FrameError("runtime_start takes agent_id OR create_agent, not both")
    if "conversation_id" in frame and "create_conversation" in frame:
        raise FrameError("runtime_start takes conversation_id OR create_conversation, not both")
    if "conversation_id" not in frame and "create_conversation" not in frame:
        raise FrameError("runtime_start needs conversation_id or create_conversation")
    if "create_agent" in frame:
        spec = frame["create_agent"]
        body = spec.get("body") if isinstance(spec, dict) else None
        if not isinstance(body, dict):
            raise FrameError("create_agent needs a body object")
    if frame.get("mode") is not None and frame["mode"] not in MODES:
        raise FrameError(f"mode must be one of {MODES}, got {frame['mode']!r}")
    if "execution_settings" in frame:
        _check_settings(frame["execution_settings"])
    if "external_tools" in frame:
        _check_tools(frame["external_tools"])
    if "recover_approvals" in frame and not isinstance(frame["recover_approvals"], bool):
        raise FrameError("recover_approvals must be a boolean")


def _check_input(frame: dict[str, Any]) -> None:
    _check_runtime(frame.get("runtime"))
    payload = frame.get("payload")
    kind = payload.get("kind") if isinstance(payload, dict) else None
    if kind == "create_message":
        messages = payload.get("messages") if isinstance(payload, dict) else None
        if not isinstance(messages, list) or not messages:
            raise FrameError("create_message needs a non-empty messages list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("user", "system"):
                raise FrameError(f"bad message: {message!r}")
            if not isinstance(message.get("content"), str | list):
                raise FrameError("message content must be a string or a list of parts")
    elif kind == "approval_response":
        assert isinstance(payload, dict)
        decision = payload.get("decision")
        if not isinstance(payload.get("request_id"), str) or not isinstance(decision, dict):
            raise FrameError("approval_response needs request_id and decision")
        if decision.get("behavior") == "deny" and not isinstance(decision.get("message"), str):
            raise FrameError("a deny decision needs a message")
        if decision.get("behavior") not in ("allow", "deny"):
            raise FrameError("decision.behavior must be allow or deny")
    else:
        raise FrameError(f"unsupported input kind {kind!r}")


def validate(frame: dict[str, Any]) -> dict[str, Any]:
    """Raise :class:`FrameError` unless the server would accept ``frame``; return it."""
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise FrameError("a frame needs a type")
    rid = frame.get("request_id")
    if rid is not None and (not isinstance(rid, str) or not rid):
        raise FrameError("request_id must be a non-empty string")
    if kind == "runtime_start":
        _check_runtime_start(frame)
    elif kind == "input":
        _check_input(frame)
    elif kind == "abort_message":
        _check_runtime(frame.get("runtime"))
    elif kind == "external_tool_call_response":
        result = frame.get("result")
        if not isinstance(rid, str) or not (
            isinstance(result, dict) and isinstance(result.get("content"), list)
        ):
            raise FrameError("external_tool_call_response needs request_id and result.content")
    return frame


# -- builders ------------------------------------------------------------------


def runtime_of(agent_id: str | None, conversation_id: str) -> dict[str, Any]:
    return {"agent_id": agent_id, "conversation_id": conversation_id}


def execution_settings(
    allowed: list[str] | None, disallowed: list[str] | None, max_turns: int | None = None
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "allowed_tools": list(allowed or []),
        "disallowed_tools": list(disallowed or []),
        "disable_memory_guard": False,  # required by the server's validation
    }
    if max_turns is not None:
        settings["max_turns"] = max_turns
    return settings


def runtime_start(request_id: str, **fields: Any) -> dict[str, Any]:
    frame = {"type": "runtime_start", "request_id": request_id}
    frame.update({k: v for k, v in fields.items() if v is not None})
    return validate(frame)


def create_message(
    request_id: str,
    runtime: dict[str, Any],
    content: str | list[dict[str, Any]],
    client_message_id: str,
) -> dict[str, Any]:
    message = {"role": "user", "content": content, "client_message_id": client_message_id}
    return validate(
        {
            "type": "input",
            "request_id": request_id,
            "runtime": runtime,
            "payload": {"kind": "create_message", "messages": [message]},
        }
    )


def approval_response(
    runtime: dict[str, Any], request_id: str, decision: dict[str, Any]
) -> dict[str, Any]:
    return validate(
        {
            "type": "input",
            "runtime": runtime,
            "payload": {
                "kind": "approval_response", "request_id": request_id, "decision": decision
            },
        }
    )


def abort_message(request_id: str, runtime: dict[str, Any]) -> dict[str, Any]:
    return validate({"type": "abort_message", "request_id": request_id, "runtime": runtime})


def external_tool_response(
    request_id: str, content: list[dict[str, Any]], is_error: bool
) -> dict[str, Any]:
    return validate(
        {
            "type": "external_tool_call_response",
            "request_id": request_id,
            "result": {"content": content, "is_error": is_error},
        }
    )


def conversation_recompile(request_id: str, agent_id: str | None,
                           conversation_id: str) -> dict[str, Any]:
    """Recompile a conversation's system prompt from its agent's current memory."""
    body = {"agent_id": agent_id} if agent_id else {}
    return {"type": "conversation_recompile", "request_id": request_id,
            "conversation_id": conversation_id, "body": body}
