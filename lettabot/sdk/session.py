"""A :class:`Session`: one conversation with a Letta agent."""

from __future__ import annotations

import contextlib
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio

from lettabot.sdk._internal.transport import CanUseToolRequest, Target, Transport
from lettabot.sdk.errors import SessionClosedError
from lettabot.sdk.mcp import McpServerState, McpToolInfo
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.tools import ToolResult
from lettabot.sdk.types import (
    CONVERSATION_BUSY,
    AssistantMessage,
    ConversationInfo,
    ImagePart,
    InitMessage,
    Message,
    PermissionAllow,
    PermissionDeny,
    PermissionResult,
    ReasoningMessage,
    ResultMessage,
    StreamEventMessage,
    TextPart,
    ToolCallMessage,
    UserContent,
)

if TYPE_CHECKING:
    from lettabot.sdk._internal.mcp_bridge import McpHub

__all__ = ["Session"]

log = logging.getLogger("lettabot.sdk")

TransportFactory = Callable[[SessionOptions, Target, "Session"], Transport]


class Session:
    """A conversation: ``send()`` a message, then iterate ``stream()`` until its result.

    Opens lazily on first use (or ``async with``). Not safe for two concurrent turns:
    the CLI queues messages sent during a turn and merges them into the next one.
    """

    def __init__(
        self, options: SessionOptions, target: Target, transport_factory: TransportFactory
    ) -> None:
        self.options = options
        self.target = target
        self._factory = transport_factory
        self._transport: Transport | None = None
        self._init: InitMessage | None = None
        self._connect_lock = anyio.Lock(fast_acquire=True)
        self._closed = False
        self._tool_calls = 0
        self._limit_hit = False
        self._tools = {t.name: t for t in options.tools}
        self._last_sent: tuple[str | list[dict[str, Any]], str | None] | None = None
        self._asking: dict[int, CanUseToolRequest] = {}
        self._mcp: McpHub | None = None

    # -- identity ---------------------------------------------------------------

    @property
    def init(self) -> InitMessage | None:
        return self._init

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def agent_id(self) -> str | None:
        return self._init.agent_id if self._init else self.target.agent_id

    @property
    def session_id(self) -> str | None:
        return self._init.session_id if self._init else None

    @property
    def conversation_id(self) -> str | None:
        """The conversation's id, for :func:`resume_session` later. An agent's default
        conversation (the CLI calls it ``"default"``) is named by its agent's id, the id
        ``resume_session`` takes for it."""
        cid = self._init.conversation_id if self._init else self.target.conversation_id
        if cid == "default":
            return self.agent_id
        return cid

    @property
    def is_default_conversation(self) -> bool:
        """Whether this is the agent's default conversation."""
        cid = self._init.conversation_id if self._init else self.target.conversation_id
        return cid == "default"

    # -- lifecycle ----------------------------------------------------------------

    async def connect(self) -> InitMessage:
        """Open the conversation (idempotent); returns its init message."""
        async with self._connect_lock:
            if self._closed:
                raise SessionClosedError("the session is closed")
            if self._init is None:
                options = await self._start_mcp()
                try:
                    transport = self._factory(options, self.target, self)
                    self._init = await transport.connect()
                except BaseException:
                    await self._close_mcp()
                    raise
                self._transport = transport
            return self._init

    async def _start_mcp(self) -> SessionOptions:
        """The options with the MCP servers' tools added (their servers connected)."""
        if not self.options.mcp_servers:
            return self.options
        from lettabot.sdk._internal.mcp_bridge import McpHub

        await self._close_mcp()  # a connect that failed before may have left one
        self._mcp = hub = McpHub(list(self.options.mcp_servers))
        try:
            tools = await hub.start({t.name for t in self.options.tools})
        except BaseException:
            await self._close_mcp()
            raise
        self._tools.update({t.name: t for t in tools})
        return self.options.model_copy(update={"tools": [*self.options.tools, *tools]})

    async def _close_mcp(self) -> None:
        hub, self._mcp = self._mcp, None
        if hub is not None:
            for name in hub.tools:
                self._tools.pop(name, None)
            await hub.close()

    async def close(self) -> None:
        """Close the conversation and release its process or server slot (and stop the
        MCP servers it started)."""
        self._closed = True
        transport, self._transport = self._transport, None
        try:
            if transport is not None:
                await transport.close()
        finally:
            await self._close_mcp()

    async def __aenter__(self) -> Session:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _transport_or_raise(self) -> Transport:
        if self._transport is None:
            raise SessionClosedError("the session is closed")
        return self._transport

    async def _ready(self) -> Transport:
        await self.connect()
        if self._transport is None:
            raise SessionClosedError("the session is closed")
        return self._transport

    # -- turns ----------------------------------------------------------------------

    async def send(self, message: UserContent, *, client_message_id: str | None = None) -> str:
        """Send a user message: text, or content parts (text and base64 images).

        Returns its client message id (``client_message_id``, or a new one): pass it to
        :meth:`remove_queued` to take back a message still waiting behind a running turn."""
        transport = await self._ready()
        self._tool_calls = 0
        self._limit_hit = False
        content = _wire_content(message)
        self._last_sent = (content, client_message_id)
        return await transport.send(content, client_message_id=client_message_id)

    async def remove_queued(self, client_message_id: str) -> bool:
        """Take a message that waits behind the running turn out of the queue (its turn
        then ends at once with ``stop_reason`` ``cancelled``). False if it is not waiting:
        it runs or ran already. The subprocess transport cannot (NotImplementedError)."""
        transport = await self._ready()
        return await transport.remove_queued(client_message_id)

    async def fork(self, *, hidden: bool = False) -> str:
        """A new conversation on the same agent holding a copy of this one's messages so far;
        returns its id (for :func:`resume_session`). This conversation goes on unchanged."""
        from lettabot.sdk._internal.app_server.conversations import fork_on

        transport = await self._ready()
        wire, agent = self._wire_ids()
        return await transport.manage(lambda conn: fork_on(
            conn, wire, agent_id=agent, hidden=hidden, timeout=self.options.request_timeout))

    async def archive(self, archived: bool = True) -> ConversationInfo:
        """Archive this conversation (``archived=False``: unarchive). It stays resumable;
        ``list_conversations`` leaves it out unless asked."""
        from lettabot.sdk._internal.app_server.conversations import update_on

        transport = await self._ready()
        wire, _ = self._wire_ids()
        return await transport.manage(lambda conn: update_on(
            conn, wire, {"archived": archived}, self.options.request_timeout))

    def _wire_ids(self) -> tuple[str, str | None]:
        """The CLI's conversation id (``default`` for the agent's own) and the agent id."""
        assert self._init is not None
        return self._init.conversation_id or "default", self._init.agent_id

    def mcp_status(self) -> list[McpServerState]:
        """Each MCP server of this session: connected or not, its tools, the last error
        (empty before the session opens)."""
        return self._mcp.states() if self._mcp is not None else []

    def mcp_tool(self, tool_name: str) -> McpToolInfo | None:
        """The MCP tool the agent calls ``tool_name`` (``mcp__<server>__<tool>``), or None:
        which server, and whether it says it is read-only."""
        return self._mcp.tools.get(tool_name) if self._mcp is not None else None

    def pending_approvals(self) -> list[CanUseToolRequest]:
        """The ``can_use_tool`` requests of this session waiting for an answer now."""
        return list(self._asking.values())

    async def stream(self) -> AsyncIterator[Message]:
        """Yield the turn's messages; ends after its :class:`ResultMessage`."""
        await self._ready()
        transport = self._transport_or_raise()
        # The CLI streams a long assistant (or reasoning) message as several messages with
        # one id; they are joined here, so each yielded message is whole. Partial text is
        # what `include_partial_messages=True` (stream_event) is for.
        pending: AssistantMessage | ReasoningMessage | None = None
        retry_delay = _BUSY_RETRY_FIRST
        # A fresh iterator per call: a stream() cancelled mid-turn (a timeout, a task group)
        # leaves the transport's queue intact for the next call.
        async with contextlib.aclosing(transport.receive()) as messages:
            async for msg in messages:
                if isinstance(msg, InitMessage):
                    continue  # connect() returned it (a restarted CLI says it again)
                if (
                    isinstance(msg, ResultMessage)
                    and _busy(msg)
                    and self._last_sent is not None
                    and retry_delay <= _BUSY_RETRY_LAST
                ):
                    # The CLI refused the message because the previous (interrupted) run has
                    # not wound down yet; nothing was processed, so sending it again is safe.
                    await anyio.sleep(retry_delay)
                    retry_delay *= 2
                    content, client_message_id = self._last_sent
                    await self._transport_or_raise().send(
                        content, client_message_id=client_message_id
                    )
                    continue
                if isinstance(msg, AssistantMessage | ReasoningMessage):
                    if (
                        pending is not None
                        and type(msg) is type(pending)
                        and msg.uuid == pending.uuid
                    ):
                        pending = pending.model_copy(
                            update={"content": pending.content + msg.content}
                        )
                        continue
                    if pending is not None:
                        yield pending
                    pending = msg
                    continue
                if pending is not None and not (
                    isinstance(msg, StreamEventMessage) and msg.event.get("id") == pending.uuid
                ):
                    yield pending
                    pending = None
                if isinstance(msg, ToolCallMessage):
                    await self._count_step()
                if isinstance(msg, ResultMessage):
                    if pending is not None:
                        yield pending
                    yield self._finish(msg)
                    return
                yield msg

    async def run_turn(self, message: UserContent, **kwargs: Any) -> ResultMessage:
        """Send a message and consume the turn; returns its result."""
        await self.send(message, **kwargs)
        result: ResultMessage | None = None
        async for msg in self.stream():
            if isinstance(msg, ResultMessage):
                result = msg
        assert result is not None  # transports always end a turn with a result
        return result

    async def abort(self) -> None:
        """Interrupt the running turn; its stream ends with an ``interrupted`` result."""
        transport = await self._ready()
        await transport.interrupt()

    async def recompile(self) -> None:
        """Rebuild the conversation's system prompt from the agent's current memory.

        Memory another conversation committed reaches this one on its next recompile (the
        prompt is compiled when a conversation is created). Opening an existing
        conversation does this already; call it on a long-lived session."""
        transport = await self._ready()
        await transport.recompile()

    async def set_model(self, model: str) -> None:
        """Switch this conversation to ``model`` (a handle from ``list_models``) from its
        next turn; the agent's other conversations keep theirs."""
        transport = await self._ready()
        await transport.set_model(model)

    async def list_messages(
        self,
        *,
        limit: int = 50,
        order: Literal["asc", "desc"] = "desc",
        before: str | None = None,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """The conversation's stored messages as raw Letta message dicts (newest first by default).

        Page back with ``before=<id of the oldest message you have>``.
        """
        transport = await self._ready()
        params: dict[str, Any] = {"limit": limit, "order": order}
        if before:
            params["before"] = before
        if after:
            params["after"] = after
        response = await transport.control("list_messages", **params)
        messages = response.get("messages", response.get("items", []))
        return list(messages) if isinstance(messages, list) else []

    async def bootstrap_state(self, **params: Any) -> dict[str, Any]:
        """The session's state as the CLI reports it (agent, conversation, pending approvals...)."""
        transport = await self._ready()
        return await transport.control("bootstrap_session_state", **params)

    async def recover_pending_approvals(self) -> dict[str, Any]:
        """Resolve approvals left pending by a dead process (the CLI denies them as stale)."""
        transport = await self._ready()
        return await transport.control("recover_pending_approvals")

    # -- limits -------------------------------------------------------------------

    async def _count_step(self) -> None:
        self._tool_calls += 1
        limit = self.options.max_turns
        if limit is not None and self._tool_calls >= limit and not self._limit_hit:
            # The tool's result would need another model step beyond the limit.
            self._limit_hit = True
            if self._transport is not None:
                await self._transport.interrupt()

    def _finish(self, result: ResultMessage) -> ResultMessage:
        # The CLI names an agent's default conversation "default"; the result names it as
        # the session does (by the agent id), so it can be passed to resume_session().
        update: dict[str, Any] = {"agent_id": self.agent_id or result.agent_id,
                                  "conversation_id": self.conversation_id
                                  or result.conversation_id}
        if self._limit_hit:
            update.update(
                success=False,
                subtype="error",
                error=f"Reached max_turns ({self.options.max_turns}).",
                error_code="max_turns",
            )
        return result.model_copy(update=update)

    # -- ControlHandler ---------------------------------------------------------------

    async def can_use_tool(self, request: CanUseToolRequest) -> PermissionResult:
        """Decide a tool permission request from the CLI."""
        limit = self.options.max_turns
        if self._limit_hit or (limit is not None and self._tool_calls >= limit):
            self._limit_hit = True
            return PermissionDeny(message=f"Stopped: reached max_turns ({limit}).", interrupt=True)
        callback = self.options.can_use_tool
        if callback is None:
            return PermissionDeny(
                message=(
                    f"{request.tool_name} needs approval and this session has no can_use_tool "
                    "handler; it was not run."
                )
            )
        self._asking[id(request)] = request
        try:
            args: tuple[Any, ...] = (request.tool_name, request.tool_input)
            if _accepts_context(callback):
                args = (*args, request)
            value = callback(*args)
            if inspect.isawaitable(value):
                value = await value
            return _permission(value)
        except Exception as exc:
            log.exception("can_use_tool callback failed for %s", request.tool_name)
            return PermissionDeny(message=f"Permission check failed: {type(exc).__name__}: {exc}")
        finally:
            self._asking.pop(id(request), None)

    async def execute_tool(
        self, tool_name: str, tool_call_id: str, tool_input: dict[str, Any]
    ) -> ToolResult:
        tool = self._tools.get(tool_name)
        if tool is None:
            return ToolResult.error(f"unknown tool {tool_name!r}")
        return await tool.run(tool_input)


_BUSY_RETRY_FIRST = 0.25
_BUSY_RETRY_LAST = 2.0  # 0.25 + 0.5 + 1 + 2: about 4 s in all


def _busy(result: ResultMessage) -> bool:
    return not result.success and result.num_turns == 0 and result.error_code == CONVERSATION_BUSY


def _accepts_context(callback: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return any(p.kind == p.VAR_POSITIONAL for p in positional) or len(positional) >= 3


def _permission(value: Any) -> PermissionResult:
    """Accept PermissionAllow/Deny, a dict with ``behavior``, or a bool."""
    if isinstance(value, PermissionAllow | PermissionDeny):
        return value
    if value is True:
        return PermissionAllow()
    if value is False or value is None:
        return PermissionDeny()
    if isinstance(value, dict):
        behavior = value.get("behavior")
        if behavior == "allow":
            updated = value.get("updated_input", value.get("updatedInput"))
            rules = value.get("updated_permissions", value.get("updatedPermissions"))
            return PermissionAllow(updated_input=updated, updated_permissions=rules)
        if behavior == "deny":
            return PermissionDeny(
                message=str(value.get("message") or "Denied by the user."),
                interrupt=bool(value.get("interrupt", False)),
            )
    raise TypeError(f"can_use_tool returned {value!r}; return PermissionAllow or PermissionDeny")


def _wire_content(message: UserContent) -> str | list[dict[str, Any]]:
    if isinstance(message, str):
        return message
    parts: list[dict[str, Any]] = []
    for part in message:
        if isinstance(part, TextPart | ImagePart):
            parts.append(part.model_dump())
        elif isinstance(part, dict) and part.get("type") in ("text", "image"):
            parts.append(part)
        else:
            raise TypeError(f"unsupported content part: {part!r}")
    return parts


def new_client_message_id() -> str:
    return f"cm-{uuid.uuid4().hex}"
