"""The transport seam: how a :class:`~lettabot.sdk.Session` reaches the CLI.

Two transports implement :class:`Transport`:

- ``subprocess``: one ``letta`` process per session, stream-json on stdin/stdout.
- ``app_server``: one shared ``letta server --listen`` process, a WebSocket per server.

A transport turns the wire protocol into typed :mod:`lettabot.sdk.types` messages and
answers the CLI's control requests (``can_use_tool``, external tool calls) through the
:class:`ControlHandler` the session gives it. Every turn it streams ends with exactly one
:class:`~lettabot.sdk.types.ResultMessage`, also when the process dies (then an error
result), so a caller never hangs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lettabot.sdk.permissions import CanUseToolRequest
from lettabot.sdk.tools import ToolResult
from lettabot.sdk.types import InitMessage, Message, PermissionResult

if TYPE_CHECKING:
    from lettabot.sdk._internal.app_server.connection import Connection

__all__ = ["CanUseToolRequest", "ControlHandler", "Target", "Transport"]

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Which agent and conversation a session opens.

    - ``agent_id=None, new_agent=False``: the LRU agent of ``cwd`` (CLI default), new conversation
    - ``agent_id=X, conversation_id=None``: agent X, a NEW conversation
    - ``agent_id=X, conversation_id="default"``: agent X's default conversation
    - ``conversation_id=C``: that conversation (its agent is derived)
    - ``new_agent=True``: a new agent (defined by the session's agent options)
    """

    agent_id: str | None = None
    conversation_id: str | None = None
    new_agent: bool = False


class ControlHandler(Protocol):
    """What a session answers on the CLI's behalf."""

    async def can_use_tool(self, request: CanUseToolRequest) -> PermissionResult: ...

    async def execute_tool(
        self, tool_name: str, tool_call_id: str, tool_input: dict[str, Any]
    ) -> ToolResult: ...


class Transport(Protocol):
    """One open conversation on the CLI."""

    async def connect(self) -> InitMessage:
        """Open the conversation; returns the init message (agent, conversation, model, tools)."""
        ...

    async def send(
        self, content: str | list[dict[str, Any]], *, client_message_id: str | None = None
    ) -> str:
        """Queue a user message; returns its client message id (``client_message_id`` or
        a new one)."""
        ...

    def receive(self) -> AsyncGenerator[Message, None]:
        """Messages as they come; each turn ends with a ResultMessage. Ends when closed."""
        ...

    async def interrupt(self) -> None:
        """Interrupt the running turn (its result arrives with subtype ``interrupted``)."""
        ...

    async def control(self, subtype: str, **fields: Any) -> dict[str, Any]:
        """Send a control request (``list_messages``, ``bootstrap_session_state``, ...)."""
        ...

    async def recompile(self) -> None:
        """Recompile the conversation's system prompt from the agent's current memory."""
        ...

    async def set_model(self, handle: str) -> None:
        """Switch the conversation's model (the agent's other conversations keep theirs)."""
        ...

    async def manage(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        """Run a management request (fork, archive, ...) on an App Server connection: the
        session's own, or (subprocess) one for the session's options."""
        ...

    async def remove_queued(self, client_message_id: str) -> bool:
        """Take a message that waits behind the running turn out of the queue; False if it
        is not queued (it runs, ran, or is unknown)."""
        ...

    async def close(self) -> None:
        """Release the conversation (and any process it owns). Idempotent."""
        ...
