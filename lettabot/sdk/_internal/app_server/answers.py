"""Answering the App Server's requests mid-turn: ``can_use_tool`` and external tool calls.

The request is parsed, asked of the session's handler and its decision encoded by
:mod:`lettabot.sdk._internal.control` (the protocol, written once for both transports);
here it is only framed and sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lettabot.sdk._internal import control
from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.transport import ControlHandler
from lettabot.sdk.errors import CLIConnectionError

__all__ = ["ANSWERED", "Answers"]

ANSWERED = frozenset({"control_request", "external_tool_call_request"})
"""The frame types :meth:`Answers.answer` takes."""


class Answers:
    """Answers one session's requests through its handler."""

    def __init__(self, handler: ControlHandler, lost: Callable[[], Awaitable[str]]) -> None:
        self._handler = handler
        self._lost = lost

    async def answer(self, conn: Connection, runtime: dict[str, Any],
                     frame: dict[str, Any]) -> bool:
        """Answer a frame of :data:`ANSWERED`; True if the turn must now be aborted (a
        denial that interrupts: this wire cannot say so)."""
        if frame.get("type") == "external_tool_call_request":
            await self._run_tool(conn, frame)
            return False
        body = frame.get("request") or {}
        request = control.parse_request(body)
        if not isinstance(request, control.CanUseTool):
            return False
        request_id = str(frame.get("request_id") or "")
        result = await control.ask_permission(self._handler, request, request_id, frame,
                                              self._lost)
        if result is None:
            return False  # the connection died: the LOST frame that follows ends the turn
        decision = control.encode_decision(result, "app_server")
        try:
            await conn.send(frames.approval_response(runtime, request_id, decision.payload))
        except CLIConnectionError:
            return False  # the LOST frame that follows ends the turn
        return decision.interrupt_turn

    async def _run_tool(self, conn: Connection, frame: dict[str, Any]) -> None:
        request = control.ExecuteExternalTool.model_validate(
            {k: frame.get(k) for k in ("tool_name", "tool_call_id", "input")})
        result = await control.run_external_tool(self._handler, request, self._lost)
        if result is None:
            return
        try:
            await conn.send(frames.external_tool_response(
                str(frame.get("request_id")), result.content, result.is_error))
        except CLIConnectionError:
            return
