"""The control protocol, written once above the transports.

The CLI asks the SDK two things mid-turn: may this tool run (``can_use_tool``), and run
this custom tool (``execute_external_tool``). Both transports carry the same request body
(stream-json: ``control_request.request``; App Server: ``control_request.request`` and the
fields of ``external_tool_call_request``), parsed here into one model each; the answer is
asked of the session's :class:`~lettabot.sdk._internal.transport.ControlHandler` here, and
a permission decision is encoded here. Transports only frame and write the payloads.

The two wires spell a decision differently (letta 0.34.12, ``dist/types/types``):

- stream-json (``protocol.d.ts`` ``CanUseToolResponse``): ``updatedInput``, and a deny may
  carry ``interrupt: true``;
- App Server (``protocol_v2.d.ts`` ``ApprovalResponseDecision``): ``updated_input`` and
  ``selected_permission_suggestion_ids``; a deny has no ``interrupt`` (the transport aborts
  the turn itself: :attr:`Decision.interrupt_turn`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lettabot.sdk._internal.transport import ControlHandler
from lettabot.sdk._internal.transport.guard import unless_lost
from lettabot.sdk.permissions import CanUseToolRequest
from lettabot.sdk.tools import ToolResult
from lettabot.sdk.types import PermissionAllow, PermissionResult

__all__ = [
    "CanUseTool",
    "Decision",
    "ExecuteExternalTool",
    "Wire",
    "ask_permission",
    "encode_decision",
    "parse_request",
    "run_external_tool",
]

Wire = Literal["stream_json", "app_server"]
"""Which transport's spelling a payload takes."""

Lost = Callable[[], Awaitable[str]]
"""Returns (with a reason) once the answer can no longer be delivered."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    @field_validator("tool_name", "tool_call_id", mode="before", check_fields=False)
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value or "")

    @field_validator("input", mode="before", check_fields=False)
    @classmethod
    def _mapping(cls, value: Any) -> dict[str, Any]:
        return dict(value or {})


class CanUseTool(_Body):
    """A ``can_use_tool`` request body, as it comes off the wire."""

    subtype: Literal["can_use_tool"] = "can_use_tool"
    tool_name: str = ""
    input: dict[str, Any] = Field(default_factory=dict)
    tool_call_id: str = ""
    permission_suggestions: list[Any] = Field(default_factory=list)
    blocked_path: str | None = None
    diffs: list[Any] | None = None

    @field_validator("permission_suggestions", mode="before")
    @classmethod
    def _list(cls, value: Any) -> list[Any]:
        return list(value or [])

    @field_validator("diffs", mode="before")
    @classmethod
    def _diffs(cls, value: Any) -> list[Any] | None:
        return value if isinstance(value, list) else None

    @field_validator("blocked_path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> str | None:
        return None if value is None else str(value)

    def request(self, request_id: str, raw: dict[str, Any]) -> CanUseToolRequest:
        """What the session's ``can_use_tool`` callback receives."""
        return CanUseToolRequest(
            tool_name=self.tool_name,
            tool_input=dict(self.input),
            tool_call_id=self.tool_call_id,
            request_id=request_id,
            diffs=self.diffs,
            permission_suggestions=list(self.permission_suggestions),
            blocked_path=self.blocked_path,
            raw=raw,
        )


class ExecuteExternalTool(_Body):
    """A request to run one of the session's custom tools."""

    subtype: Literal["execute_external_tool"] = "execute_external_tool"
    tool_name: str = ""
    input: dict[str, Any] = Field(default_factory=dict)
    tool_call_id: str = ""


def parse_request(body: object) -> CanUseTool | ExecuteExternalTool | None:
    """A control request body the SDK answers; None for any other subtype."""
    if not isinstance(body, dict):
        return None
    subtype = body.get("subtype")
    if subtype == "can_use_tool":
        return CanUseTool.model_validate(body)
    if subtype == "execute_external_tool":
        return ExecuteExternalTool.model_validate(body)
    return None


@dataclass(frozen=True)
class Decision:
    """A permission decision on one wire."""

    payload: dict[str, Any]
    interrupt_turn: bool = False
    """The wire cannot say "deny and stop": the transport must abort the turn itself."""


def encode_decision(result: PermissionResult, wire: Wire) -> Decision:
    """``result`` as the ``wire``'s decision payload (see the module doc for spellings)."""
    if isinstance(result, PermissionAllow):
        payload: dict[str, Any] = {"behavior": "allow"}
        if result.updated_input is not None:
            key = "updatedInput" if wire == "stream_json" else "updated_input"
            payload[key] = result.updated_input
        if wire == "app_server" and result.updated_permissions:
            payload["selected_permission_suggestion_ids"] = result.suggestion_ids()
        return Decision(payload)
    payload = {"behavior": "deny", "message": result.message}
    if wire == "stream_json":
        if result.interrupt:
            payload["interrupt"] = True
        return Decision(payload)
    return Decision(payload, interrupt_turn=result.interrupt)


async def ask_permission(
    handler: ControlHandler, body: CanUseTool, request_id: str, raw: dict[str, Any], lost: Lost
) -> PermissionResult | None:
    """The handler's answer to ``body``; None if the answer can no longer be delivered
    (the CLI or the connection went away meanwhile: the request's signal was set)."""
    request = body.request(request_id, raw)
    return await unless_lost(lambda: handler.can_use_tool(request), lost, request.signal)


async def run_external_tool(handler: ControlHandler, body: ExecuteExternalTool,
                            lost: Lost) -> ToolResult | None:
    """The handler's result of the custom tool call; None if it can no longer be delivered."""
    return await unless_lost(
        lambda: handler.execute_tool(body.tool_name, body.tool_call_id, dict(body.input)), lost)
