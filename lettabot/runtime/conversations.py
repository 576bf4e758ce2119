"""The session pool: each scope's open conversation on the SDK's App Servers.

- :meth:`Conversations.open` gives a scope's :class:`Conversation`: the one already open,
  its routed conversation resumed, or a new one (bound to the scope's route).
- A resumed conversation the backend no longer has starts a new one, with a note in the
  chat; one whose route names an agent the config dropped raises
  :class:`~lettabot.runtime.jobs.AgentNotConfigured`.
- One conversation on the default agent is kept open (prewarmed), so a new scope's
  first turn costs about a warm turn. With scope folders (``letta.cwd``) a conversation's
  folder is fixed when it opens, so the prewarmed one only keeps the server and agent warm.
- Each session's ``can_use_tool`` goes to the approval broker through its
  :class:`Binding`, for the turn :meth:`Conversation.serving` names.
- The App Servers: a conversation is reopened on ``client.server_for(conversation_id)``
  (a stable hash); a new one is created on the next server in turn. A scope holds at most
  one session, so one conversation never runs on two servers at once.
- Closing a session releases all of the conversation's runtime on the App Server (it
  evicts an idle ConversationRuntime after every quiescent turn itself); a local server
  whose last session closed is stopped by the SDK and restarted on demand.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from lettabot import sdk
from lettabot.runtime.adapter import Scope
from lettabot.runtime.agents import AgentProfile
from lettabot.runtime.approvals import ApprovalBroker, CanUseToolRequest
from lettabot.runtime.jobs import AgentNotConfigured, Job, TurnOwner
from lettabot.runtime.router import Router
from lettabot.runtime.workspaces import neutralize_permissions, prepare_scope_dir

__all__ = ["Binding", "Conversation", "Conversations", "ToolsFor", "available_transport"]

log = logging.getLogger("lettabot.runtime.conversations")

Notifier = Callable[[Scope, str], Awaitable[None]]
McpFor = Callable[[AgentProfile, Path | None], list[sdk.McpServer]]
"""The MCP servers of a new session of ``profile``'s agent working in a scope folder
(None: no scope yet)."""
ToolsFor = Callable[[Callable[[], TurnOwner | None], AgentProfile], list[sdk.Tool]]
"""The chat tools for a new session of ``profile``'s agent, acting for the turn the first
argument names when they are called."""


def available_transport() -> str | None:
    """``subprocess`` if the App Server transport is not installed, else None (the SDK's
    default, ``app_server``)."""
    return None if "app_server" in sdk.available_transports() else "subprocess"


class Binding:
    """Connects a session's ``can_use_tool`` to the broker, for the turn that runs now."""

    def __init__(self, broker: ApprovalBroker, profile: AgentProfile) -> None:
        self.broker = broker
        self.profile = profile
        self.owner: TurnOwner | None = None
        self.tools: list[sdk.Tool] = []
        """lettabot's chat tools given to this session: they check their own input."""
        self.own_tools: frozenset[str] = frozenset()

    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], request: CanUseToolRequest
    ) -> sdk.PermissionResult:
        if self.owner is None:
            return sdk.PermissionDeny(message=f"{tool_name}: no chat turn is running; not run.")
        if tool_name in self.own_tools and not self.owner.untrusted:  # tainted: the broker
            return sdk.PermissionAllow()
        return await self.broker.can_use_tool(self.owner, request, policy=self.profile.policy,
                                              access=self.profile.access)


@dataclass(eq=False)
class Conversation:
    """An open session and what serves its tool requests."""

    session: sdk.Session
    binding: Binding
    server: int
    last_used: float = 0.0

    @contextmanager
    def serving(self, job: Job) -> Iterator[sdk.Session]:
        """While the block runs, tool requests of this session belong to ``job``'s turn."""
        assert self.session.conversation_id is not None
        self.binding.owner = TurnOwner.of(job, self.session.conversation_id,
                                          self.session.agent_id)
        try:
            yield self.session
        finally:
            self.binding.owner = None
            self.last_used = anyio.current_time()


class Conversations:
    """Open, resume, prewarm and close the scopes' conversations."""

    def __init__(
        self,
        *,
        client: sdk.LettaClient,
        router: Router,
        broker: ApprovalBroker,
        notify: Notifier,
        session_options: dict[str, Any],
        prewarm: bool = True,
        tools_for: ToolsFor | None = None,
        workspaces: Path | None = None,
        letta_home: Path | None = None,
        mcp_for: McpFor | None = None,
    ) -> None:
        self.client = client
        self.router = router
        self.broker = broker
        self._notify = notify
        self._options = dict(session_options)
        self._tools_for = tools_for
        self._mcp_for = mcp_for
        self.workspaces = workspaces
        """The root of the scope folders: each conversation works in its scope's own."""
        self.letta_home = letta_home
        self.prewarm_enabled = prewarm
        self.transport = available_transport()
        if self.transport == "subprocess":
            log.warning("the App Server transport is not available; using one CLI per session")
        self.servers = len(client.servers())
        self.open_now: dict[str, Conversation] = {}
        self._creating = anyio.Lock()
        self._host_locks: dict[str, anyio.Lock] = {}
        """The same per host: each host has a backend of its own (and one down must not
        hold up the others' agents)."""
        """One new conversation at a time (see _open_new)."""
        self._warm: Conversation | None = None
        self._refilling = False
        self._next_server = 0
        self._closed = False
        self._tg: TaskGroup | None = None
        self.on_open: Callable[[str], None] | None = None
        """Called with ``resumed`` or ``new`` when a scope's session opens."""

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        """Open the prewarmed conversation (raises if the default agent cannot be opened)."""
        self._tg = tg
        if self.prewarm_enabled:
            await self._refill_warm()

    async def close(self) -> None:
        """Close every session (the prewarmed one too); nothing is prewarmed after this."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for key in list(self.open_now):
                await self.close_scope(key)
            warm, self._warm = self._warm, None
            if warm is not None:
                await warm.session.close()

    # -- the pool --------------------------------------------------------------------

    def get(self, scope: Scope) -> Conversation | None:
        """The scope's open conversation, if it has one."""
        return self.open_now.get(scope.key)

    async def open(self, scope: Scope) -> Conversation:
        """The scope's conversation: open, resumed from its route, or a new one.

        Raises :class:`AgentNotConfigured` or :class:`sdk.LettaSDKError` (nothing stays
        open then)."""
        held = self.open_now.get(scope.key)
        if held is not None:
            return held
        conversation = await self._resume(scope)
        how = "resumed"
        if conversation is None:
            how = "new"
            profile = self.router.agents.for_scope(scope)
            conversation = await self._new(profile, scope)
            session = conversation.session
            assert session.agent_id and session.conversation_id
            await self.router.bind(scope, session.agent_id, session.conversation_id)
        if self.on_open is not None:
            self.on_open(how)
        conversation.last_used = anyio.current_time()
        self.open_now[scope.key] = conversation
        return conversation

    async def close_scope(self, key: str) -> None:
        """Close the session of the scope ``key`` (if open)."""
        conversation = self.open_now.pop(key, None)
        if conversation is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await conversation.session.close()
            except Exception:
                log.warning("closing the session of %s failed", key, exc_info=True)

    def turn_ended(self) -> None:
        """A turn ended: the prewarmed conversation is refilled now if it was taken (not
        during the turn: the server is shared)."""
        if self._warm is None and self.prewarm_enabled and self._tg is not None \
                and not self._closed:
            self._tg.start_soon(self._refill_quietly)

    async def fork(self, conversation_id: str) -> str:
        """A copy of ``conversation_id`` (same history), for a scope to continue in."""
        return await self.client.fork_conversation(conversation_id)

    # -- opening ---------------------------------------------------------------------

    async def _resume(self, scope: Scope) -> Conversation | None:
        """The scope's routed conversation, resumed (None: it has none, or it is gone)."""
        profile, route = await self.router.profile_for(scope)
        if route is None:
            return None
        if profile is None:
            raise AgentNotConfigured(
                f"This thread's conversation is with agent {route.agent_id}, which the "
                "config no longer names, so I will not run it with another agent's "
                "permissions. Say `reset` to start a new conversation here with "
                f"{self.router.agents.for_scope(scope).name}.")
        binding = self._binding(profile)
        server = (self.client.host_server(profile.host) if profile.host
                  else self.client.server_for(route.conversation_id))
        session = self.client.resume_session(route.conversation_id, server=server,
                                             **self._session_options(binding, scope))
        try:
            # several local App Servers share one backend's files: open one at a time
            async with self._opening(profile):
                await session.connect()
        except sdk.ConversationNotFoundError as exc:
            with anyio.CancelScope(shield=True):
                await session.close()
            log.warning("conversation %s of %s is gone (%s); starting a new one",
                        route.conversation_id, scope.key, exc)
            await self.router.reset(scope)
            await self._notify(scope, "⚠️ This thread's previous conversation could not be "
                                      "found; starting a new one.")
            return None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.close()
            raise
        return Conversation(session, binding, server)

    async def _new(self, profile: AgentProfile, scope: Scope) -> Conversation:
        if self.workspaces is None and self._warm is not None \
                and self._warm.binding.profile is profile:
            warm, self._warm = self._warm, None
            return warm  # refilled after this turn (turn_ended)
        return await self._open_new(profile, scope)

    async def _open_new(self, profile: AgentProfile, scope: Scope | None = None
                        ) -> Conversation:
        """A new conversation on ``profile``'s agent, on the next App Server in turn;
        closed if it fails."""
        agent = await self.router.agent_id(profile)
        if profile.host:  # its agent lives on that host's backend only
            server = self.client.host_server(profile.host)
        else:
            server = self._next_server % self.client.pool_size
            self._next_server += 1
        binding = self._binding(profile)
        session = self.client.create_session(agent, server=server,
                                             **self._session_options(binding, scope))
        try:
            # Local App Servers number new conversations from their own memory and the
            # folders on disk: two creating at once on one backend can pick the same id.
            async with self._creating_on(profile):
                await session.connect()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.close()
            raise
        return Conversation(session, binding, server)

    @asynccontextmanager
    async def _opening(self, profile: AgentProfile) -> AsyncIterator[None]:
        """Serialise opening conversations when several App Servers share this process's
        local backend (a conversation reopened on one while another opens is not safe)."""
        if profile.host is not None:
            async with self._creating_on(profile):
                yield
        elif self.servers > 1:
            async with self._creating:
                yield
        else:
            yield

    def _creating_on(self, profile: AgentProfile) -> anyio.Lock:
        """The lock for opening conversations on ``profile``'s backend."""
        if profile.host is None:
            return self._creating
        return self._host_locks.setdefault(profile.host, anyio.Lock())

    def _binding(self, profile: AgentProfile) -> Binding:
        """A binding whose session gets lettabot's chat tools (acting for its turn)."""
        binding = Binding(self.broker, profile)
        if self._tools_for is not None:
            binding.tools = self._tools_for(lambda: binding.owner, profile)
            binding.own_tools = frozenset(t.name for t in binding.tools)
        return binding

    def _session_options(self, binding: Binding, scope: Scope | None) -> dict[str, Any]:
        options = dict(self._options)
        folder: Path | None = None
        if scope is not None and self.workspaces is not None:
            options["cwd"] = folder = prepare_scope_dir(self.workspaces, scope.key)
            neutralize_permissions(folder, self.letta_home)
        if self._mcp_for is not None and (servers := self._mcp_for(binding.profile, folder)):
            options["mcp_servers"] = servers
        options["can_use_tool"] = binding.can_use_tool
        if binding.tools:
            options["tools"] = [*options.get("tools", []), *binding.tools]
        if self.transport is not None:
            options["transport"] = self.transport
        return options

    # -- prewarming ------------------------------------------------------------------

    async def _refill_warm(self) -> None:
        """Open the prewarmed conversation (one at a time; nothing is locked meanwhile)."""
        if self._warm is not None or self._refilling or self._closed:
            return
        self._refilling = True
        try:
            profile = self.router.agents.default
            try:
                agent = await self.router.agent_id(profile)
                try:
                    warm = await self._open_new(profile)
                except sdk.AppServerUnreachableError:
                    raise
                except sdk.LettaSDKError as exc:
                    raise self.router.agents.missing(profile, agent,
                                                     str(exc).splitlines()[0]) from exc
            except sdk.AppServerUnreachableError:
                if profile.host is None:
                    raise
                log.warning("the default agent's host %s is unreachable: nothing prewarmed",
                            profile.host)
                return
            if self._closed:
                with anyio.CancelScope(shield=True):
                    await warm.session.close()
                return
            self._warm = warm
        finally:
            self._refilling = False

    async def _refill_quietly(self) -> None:
        try:
            await self._refill_warm()
        except Exception:
            log.warning("could not prewarm a conversation", exc_info=True)

    # -- state -----------------------------------------------------------------------

    def count(self) -> int:
        """Open sessions, the prewarmed one included."""
        return len(self.open_now) + (1 if self._warm is not None else 0)

    def server_states(self) -> list[dict[str, Any]]:
        """Each App Server: sessions on it, url, and for local servers pid and liveness."""
        transport = self.transport or sdk.get_default_transport()
        return [{**info.model_dump(), "transport": transport}
                for info in self.client.servers()]
