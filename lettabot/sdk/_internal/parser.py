"""Wire objects from the CLI → typed SDK messages.

The stream-json ``message`` objects and the App Server's ``stream_delta`` payloads share
the Letta message shapes (``message_type`` + fields), so both transports use
:func:`parse_letta_message`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from lettabot.sdk._internal.cli_words import failure_code
from lettabot.sdk.types import (
    AssistantMessage,
    ErrorMessage,
    InitMessage,
    Message,
    ReasoningMessage,
    ResultMessage,
    RetryMessage,
    StreamEventMessage,
    ToolCallMessage,
    ToolResultMessage,
    Usage,
)

__all__ = [
    "TurnTracker",
    "parse_letta_message",
    "parse_result",
    "parse_stream_json",
    "text_of",
]

log = logging.getLogger("lettabot.sdk")


def text_of(content: Any) -> str:
    """Join the text parts of a Letta content value (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return str(content)


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return {"_raw": raw}
        return value if isinstance(value, dict) else {"_value": value}
    return {}


def parse_letta_message(obj: dict[str, Any]) -> list[Message]:
    """One Letta message (``message_type`` ...) → zero or more SDK messages."""
    kind = obj.get("message_type")
    uuid = str(obj.get("uuid") or obj.get("id") or "")
    if kind == "assistant_message":
        return [
            AssistantMessage(
                content=text_of(obj.get("content")), uuid=uuid, run_id=obj.get("run_id")
            )
        ]
    if kind in ("reasoning_message", "hidden_reasoning_message"):
        text = obj.get("reasoning") or obj.get("hidden_reasoning") or text_of(obj.get("content"))
        return [ReasoningMessage(content=str(text or ""), uuid=uuid)]
    if kind in ("tool_call_message", "approval_request_message"):
        calls = obj.get("tool_calls") or ([obj["tool_call"]] if obj.get("tool_call") else [])
        return [
            ToolCallMessage(
                tool_call_id=str(c.get("tool_call_id") or c.get("id") or ""),
                tool_name=str(c.get("name") or ""),
                tool_input=_arguments(c.get("arguments")),
                uuid=uuid,
            )
            for c in calls
            if isinstance(c, dict)
        ]
    if kind == "tool_return_message":
        returns = obj.get("tool_returns") or [obj]
        return [
            ToolResultMessage(
                tool_call_id=str(r.get("tool_call_id") or ""),
                content=text_of(r.get("tool_return") if "tool_return" in r else r.get("content")),
                is_error=r.get("status") == "error",
                uuid=uuid,
            )
            for r in returns
            if isinstance(r, dict)
        ]
    return []


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage.model_validate(raw)


def parse_result(obj: dict[str, Any]) -> ResultMessage:
    subtype = obj.get("subtype") or "success"
    if subtype not in ("success", "interrupted", "error"):
        subtype = "error"
    success = subtype == "success" and not obj.get("is_error")
    error = None
    if not success:
        error = str(obj.get("error") or obj.get("message") or obj.get("result") or subtype)
    return ResultMessage(
        success=success,
        subtype=subtype,
        result=obj.get("result") if isinstance(obj.get("result"), str) else None,
        error=error,
        error_code=obj.get("error_code") or (None if success else subtype),
        stop_reason=obj.get("stop_reason"),
        duration_ms=int(obj.get("duration_ms") or 0),
        num_turns=int(obj.get("num_turns") or 0),
        agent_id=obj.get("agent_id"),
        conversation_id=obj.get("conversation_id"),
        run_ids=list(obj.get("run_ids") or []),
        usage=_usage(obj.get("usage")),
    )


def parse_stream_json(obj: dict[str, Any]) -> list[Message]:
    """One stdout object of ``--output-format stream-json`` → SDK messages (may be none)."""
    kind = obj.get("type")
    if kind == "message":
        return parse_letta_message(obj)
    if kind == "system" and obj.get("subtype") == "init":
        return [
            InitMessage(
                agent_id=obj["agent_id"],
                session_id=str(obj.get("session_id") or obj["agent_id"]),
                conversation_id=str(obj.get("conversation_id") or ""),
                model=obj.get("model"),
                tools=list(obj.get("tools") or []),
                cwd=obj.get("cwd"),
            )
        ]
    if kind == "stream_event":
        # With --include-partial-messages the CLI wraps each Letta message chunk in a
        # stream_event (and sends no plain `message`): yield the chunk, then its typed form.
        raw = obj.get("event")
        event: dict[str, Any] = raw if isinstance(raw, dict) else obj
        out: list[Message] = [StreamEventMessage(event=event, uuid=str(obj.get("uuid") or ""))]
        return out + parse_letta_message(event)
    if kind == "error":
        return [
            ErrorMessage(
                message=str(obj.get("message") or "error"),
                stop_reason=obj.get("stop_reason"),
                run_id=obj.get("run_id"),
                api_error=obj.get("api_error"),
            )
        ]
    if kind == "retry":
        return [
            RetryMessage(
                reason=str(obj.get("reason") or ""),
                attempt=int(obj.get("attempt") or 0),
                max_attempts=int(obj.get("max_attempts") or 0),
                delay_ms=int(obj.get("delay_ms") or 0),
            )
        ]
    if kind == "result":
        return [parse_result(obj)]
    return []


class TurnTracker:
    """Collects what a result message may lack: the stop reason, usage, the answer text."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stop_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.steps = 0
        self.error: str | None = None

    def observe(self, obj: dict[str, Any]) -> None:
        """Feed a Letta message dict (plain, or the event of a stream_event)."""
        kind = obj.get("message_type")
        if kind == "stop_reason":
            self.stop_reason = obj.get("stop_reason")
        elif kind == "usage_statistics":
            self.steps += 1
            self.prompt_tokens += int(obj.get("prompt_tokens") or 0)
            self.completion_tokens += int(obj.get("completion_tokens") or 0)

    def observe_error(self, message: str) -> None:
        self.error = message

    def complete(self, result: ResultMessage) -> ResultMessage:
        update: dict[str, Any] = {}
        if not result.success and self.error and result.error in (None, "error", result.subtype):
            update["error"] = self.error
        if not result.success:
            code = failure_code(update.get("error", result.error), result.error_code)
            if code != result.error_code:
                update["error_code"] = code
        if result.stop_reason is None and self.stop_reason:
            update["stop_reason"] = self.stop_reason
        if result.usage is None and self.steps:
            update["usage"] = Usage(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                total_tokens=self.prompt_tokens + self.completion_tokens,
            )
        self.reset()
        return result.model_copy(update=update) if update else result
