"""How sessions are made: transports, new agents, memory settings. The private side of
:mod:`lettabot.sdk.client` (its :class:`~lettabot.sdk.LettaClient` and module-level
functions are the public entry points)."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lettabot.sdk._internal.cli import cli_env, is_agent_id, is_conversation_id
from lettabot.sdk._internal.memfs import apply_agent_memory
from lettabot.sdk._internal.transport import Target, Transport
from lettabot.sdk.options import SessionOptions, TransportName
from lettabot.sdk.session import Session
from lettabot.sdk.types import InitMessage, ModelInfo

if TYPE_CHECKING:
    from lettabot.sdk._internal.app_server.pool import Lease

__all__ = [
    "AgentMemorySession",
    "Factory",
    "NewAgentSession",
    "available_transports",
    "create_agent",
    "create_session",
    "get_default_transport",
    "list_models",
    "make_session",
    "resume_session",
    "set_default_transport",
    "transport_for",
    "transport_name",
]

log = logging.getLogger("lettabot.sdk")

_default_transport: TransportName | None = None


def set_default_transport(name: TransportName | None) -> None:
    """Choose the transport for sessions that do not pass ``transport=`` (None: back to
    ``$LETTABOT_SDK_TRANSPORT``, else ``app_server``)."""
    global _default_transport
    if name is not None:
        SessionOptions(transport=name)  # validates the name
    _default_transport = name


def available_transports() -> tuple[TransportName, ...]:
    """The transports this install has: ``subprocess`` always, ``app_server`` unless its
    module was left out of the build."""
    spec = importlib.util.find_spec("lettabot.sdk._internal.transport.app_server")
    return ("app_server", "subprocess") if spec is not None else ("subprocess",)


def get_default_transport() -> TransportName:
    """``set_default_transport``'s choice, else ``$LETTABOT_SDK_TRANSPORT``, else ``app_server``."""
    if _default_transport is not None:
        return _default_transport
    env = os.environ.get("LETTABOT_SDK_TRANSPORT")
    if env:
        return SessionOptions(transport=env).transport or "app_server"
    return "app_server"


def transport_name(
    options: SessionOptions, target: Target, *, warn: bool = False
) -> TransportName:
    """The transport a session runs on: the chosen one, unless the App Server cannot honour
    one of its options (then ``subprocess``, with a warning)."""
    name = options.transport or get_default_transport()
    if name == "app_server":
        from lettabot.sdk._internal.transport.app_server import unsupported_options

        unsupported = unsupported_options(options, target)
        if unsupported:
            if warn:
                log.warning(
                    "running this session on the subprocess transport: the App Server cannot "
                    "honour %s",
                    "; ".join(unsupported),
                )
            return "subprocess"
    return name


def transport_for(options: SessionOptions, target: Target, session: Session,
                   lease: Callable[[], Lease] | None = None) -> Transport:
    name = transport_name(options, target, warn=True)
    if name == "app_server":
        from lettabot.sdk._internal.transport.app_server import AppServerTransport

        return AppServerTransport(options, target, session, lease)
    from lettabot.sdk._internal.transport.subprocess_cli import SubprocessTransport

    return SubprocessTransport(options, target, session)


Factory = Callable[[SessionOptions, Target, Session], Transport]


def make_session(target: Target, options: dict[str, Any],
                 factory: Factory = transport_for) -> Session:
    opts = SessionOptions.model_validate(options)
    if has_memory_settings(opts):
        if target.agent_id and target.conversation_id is None:
            return AgentMemorySession(opts, target, factory)
        raise ValueError(
            "memory, persona, human and project reach an agent's NEW conversations: pass them "
            "to create_agent() or create_session(agent_id, ...), not to resume_session()"
        )
    return Session(opts, target, factory)


def has_memory_settings(opts: SessionOptions) -> bool:
    return any(v is not None for v in (opts.memory, opts.persona, opts.human, opts.project))


def uses_memfs(opts: SessionOptions) -> bool:
    """Whether a new agent's memory blocks are written as memory files (not sent in its body).

    Always on the subprocess transport (the CLI has no flag for them). On the App Server too,
    unless the agent is made from a raw body (a custom system prompt or block references):
    that keeps the CLI's own base prompt and toolset, identical on both transports.
    """
    preset = opts.preset
    if not (has_memory_settings(opts) or (preset is not None and preset.append is not None)):
        return False
    if transport_name(opts, Target(new_agent=True)) == "subprocess":
        return True
    return opts.custom_system is None and not opts.agent_options().block_refs()


async def create_agent(options: dict[str, Any], factory: Factory) -> str:
    opts = SessionOptions.model_validate(options)
    session = Session(opts, Target(new_agent=True), factory)
    async with session:
        agent_id = session.agent_id
    assert agent_id is not None
    if uses_memfs(opts):
        await apply_agent_memory(agent_id, opts.agent_options(), cli_env(opts.env))
    return agent_id


def create_session(agent_id: str | None, options: dict[str, Any], factory: Factory) -> Session:
    if agent_id is not None:
        if not is_agent_id(agent_id):
            raise ValueError(
                f"not an agent id: {agent_id!r} (expected agent-... or agent-local-...)"
            )
        return make_session(Target(agent_id=agent_id), options, factory)
    opts = SessionOptions.model_validate(options)
    if has_memory_settings(opts):
        return NewAgentSession(opts, factory)
    return Session(opts, Target(), factory)


def resume_session(id: str, options: dict[str, Any], factory: Factory) -> Session:
    if is_agent_id(id):
        return make_session(Target(agent_id=id, conversation_id="default"), options, factory)
    if is_conversation_id(id):
        return make_session(Target(conversation_id=id), options, factory)
    raise ValueError(
        f"not an agent or conversation id: {id!r} (expected agent-..., agent-local-..., "
        "conv-... or local-conv-...)"
    )


async def list_models(opts: SessionOptions, lease: Lease | None) -> list[ModelInfo]:
    from lettabot.sdk._internal.app_server.models import list_models_on, on_server

    return await on_server(opts, lambda conn: list_models_on(conn, opts.request_timeout), lease)


class NewAgentSession(Session):
    """A session on a brand-new agent defined by the session's agent settings.

    Memory files are only projected into conversations created after they are committed,
    so on the subprocess transport the agent is created first and the session then opens
    a new conversation on it.
    """

    def __init__(self, options: SessionOptions, factory: Factory) -> None:
        super().__init__(options, Target(new_agent=True), factory)
        self._agent_factory = factory

    async def connect(self) -> InitMessage:
        if self.init is None and uses_memfs(self.options) and self.target.new_agent:
            agent_id = await create_agent(agent_fields(self.options), self._agent_factory)
            self.target = Target(agent_id=agent_id)
        return await super().connect()


class AgentMemorySession(Session):
    """A new conversation on an existing agent whose memory blocks are set first.

    Memory blocks belong to the agent (every conversation shares them), so they are written
    into its memory files and committed before this conversation starts, the way the agent
    itself edits its memory. New conversations see them; older ones keep their prompt.
    """

    def __init__(self, options: SessionOptions, target: Target, factory: Factory) -> None:
        self._memory = options.agent_options()
        stripped = options.model_copy(
            update={"memory": None, "persona": None, "human": None, "project": None}
        )
        super().__init__(stripped, target, factory)

    async def connect(self) -> InitMessage:
        if self.init is None and self.target.agent_id is not None:
            await apply_agent_memory(self.target.agent_id, self._memory, cli_env(self.options.env))
        return await super().connect()


def agent_fields(opts: SessionOptions) -> dict[str, Any]:
    # the agent is made by a session of its own: it needs no MCP servers
    return {name: getattr(opts, name) for name in opts.model_fields_set - {"mcp_servers"}}
