"""One turn's ``stream_delta`` frames → typed messages, and its ``turn_finished`` → a result.

The App Server streams an assistant message as several deltas with one ``id``; they
are joined here into one :class:`AssistantMessage` (each chunk is also a
:class:`StreamEventMessage` when partial messages were asked for).
"""

from __future__ import annotations

import json
import time
from typing import Any

from lettabot.sdk._internal.cli_words import failure_code
from lettabot.sdk._internal.parser import parse_letta_message, text_of
from lettabot.sdk.types import (
    AssistantMessage,
    ErrorMessage,
    Message,
    ResultMessage,
    RetryMessage,
    StreamEventMessage,
    Usage,
)

__all__ = ["TurnState"]

_CHUNKED = frozenset({"assistant_message", "reasoning_message", "tool_call_message",
                      "approval_request_message"})


def _merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = into.get("message_type")
    if kind == "assistant_message":
        into["content"] = text_of(into.get("content")) + text_of(delta.get("content"))
    elif kind == "reasoning_message":
        into["reasoning"] = str(into.get("reasoning") or "") + str(delta.get("reasoning") or "")
    else:
        call, more = into.get("tool_call") or {}, delta.get("tool_call") or {}
        if isinstance(call, dict) and isinstance(more, dict):
            merged = dict(call)
            for k, v in more.items():
                if k == "arguments" and isinstance(v, str) and isinstance(call.get(k), str):
                    merged[k] = call[k] + v
                elif v:
                    merged[k] = v
            into["tool_call"] = merged


class TurnState:
    """Collects one turn; ``feed`` deltas, then ``finish`` with the turn_finished frame."""

    def __init__(self, *, partial: bool) -> None:
        self.partial = partial
        self.started = time.monotonic()
        self._open: dict[str, Any] | None = None
        self.last_text: str | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.steps = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.run_ids: list[str] = []

    def feed(self, delta: dict[str, Any]) -> list[Message]:
        kind = delta.get("message_type")
        run_id = delta.get("run_id")
        if isinstance(run_id, str) and run_id not in self.run_ids:
            self.run_ids.append(run_id)
        out: list[Message] = []
        if kind in _CHUNKED:
            if self.partial and kind in ("assistant_message", "reasoning_message"):
                chunk = text_of(delta.get("content")) or str(delta.get("reasoning") or "")
                event = {**delta, "delta": {"type": "text_delta", "text": chunk}}
                out.append(StreamEventMessage(event=event, uuid=str(delta.get("id") or "")))
            current = self._open
            if current is not None and (current.get("id"), current.get("message_type")) == (
                delta.get("id"), kind
            ):
                _merge(current, delta)
                return out
            out = self._flush() + out
            self._open = dict(delta)
            return out
        out = self._flush()
        if kind == "error_message":
            message = str(delta.get("message") or "error")
            self.error = message
            out.append(ErrorMessage(message=message, run_id=run_id, api_error=delta))
        elif kind == "loop_error":
            self.error = self.error or str(delta.get("message") or "error")
        elif kind == "retry":
            out.append(RetryMessage(
                reason=str(delta.get("reason") or ""),
                attempt=int(delta.get("attempt") or 0),
                max_attempts=int(delta.get("max_attempts") or 0),
                delay_ms=int(delta.get("delay_ms") or 0),
            ))
        elif kind == "stop_reason":
            self.stop_reason = delta.get("stop_reason")
        elif kind == "usage_statistics":  # one per model call; turn_finished carries none
            self.steps += 1
            self.prompt_tokens += int(delta.get("prompt_tokens") or 0)
            self.completion_tokens += int(delta.get("completion_tokens") or 0)
        elif kind == "tool_return_message":
            out.extend(parse_letta_message(delta))
        return out

    def _flush(self) -> list[Message]:
        current, self._open = self._open, None
        if current is None:
            return []
        messages = parse_letta_message(current)
        for msg in messages:
            if isinstance(msg, AssistantMessage):
                self.last_text = msg.content
        return messages

    def _usage(self) -> Usage | None:
        """The turn's tokens, summed over its ``usage_statistics`` (None if none came)."""
        if not self.steps:
            return None
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     total_tokens=self.prompt_tokens + self.completion_tokens)

    def finish(
        self, frame: dict[str, Any], agent_id: str | None, conversation_id: str | None
    ) -> list[Message]:
        out = self._flush()
        stop = frame.get("stop_reason") or self.stop_reason
        error = frame.get("error")
        if isinstance(error, str) and error.strip().startswith("{"):
            error = self.error or _error_text(error)
        error = error or self.error
        usage = frame.get("usage")
        run_id = frame.get("run_id")
        if isinstance(run_id, str) and run_id not in self.run_ids:
            self.run_ids.append(run_id)
        common: dict[str, Any] = {
            "stop_reason": stop,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "num_turns": max(self.steps, 1),
            "agent_id": agent_id,
            "conversation_id": conversation_id,
            "run_ids": self.run_ids,
            "usage": Usage.model_validate(usage) if isinstance(usage, dict) else self._usage(),
            "result": self.last_text,
        }
        if stop == "cancelled":
            out.append(ResultMessage(success=False, subtype="interrupted",
                                     error="The turn was interrupted.", error_code="interrupted",
                                     **common))
        elif error or stop not in (None, "end_turn"):
            text = str(error or f"the turn stopped: {stop}")
            out.append(ResultMessage(success=False, subtype="error", error=text,
                                     error_code=failure_code(text, str(stop or "error")),
                                     **common))
        else:
            out.append(ResultMessage(success=True, **common))
        return out


def _error_text(raw: str) -> str:
    """The innermost ``message`` of the JSON error blob turn_finished carries."""
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return raw
    while isinstance(value, dict):
        if isinstance(value.get("error"), dict):
            value = value["error"]
        elif isinstance(value.get("message"), str):
            return str(value["message"])
        else:
            break
    return raw
