"""Scheduling: conversations on the SDK's App Servers, turns under a fair global limit.

- One *lane* per scope holds its queue and its open :class:`~lettabot.sdk.Session`. A
  lane runs one turn at a time, in arrival order.
- Queued messages (arriving while a turn runs) are HELD by the lane and sent as the next
  turns, one turn per message: each gets its own reply, its own approver (the person who
  sent it) and its own dedupe id. Nothing is dropped; at most :data:`QUEUE_LIMIT` wait
  per scope (the App Server's own soft cap), more are refused with a note, unclaimed.
- ``max_concurrent_turns`` is enforced by a :class:`FairGate`: a lane takes a slot for
  ONE turn and joins the back of the line for its next one, so a busy scope cannot starve
  the others (round-robin across scopes).
- Sessions run on the SDK's default transport (the App Server); ``subprocess`` only if
  the App Server transport is not installed. The bot's ``sdk.LettaClient`` owns the App
  Servers (``servers.urls`` and ``servers.count`` local ones): a conversation is reopened
  on ``client.server_for(conversation_id)`` (a stable hash); a brand-new conversation is
  created on the server of the prewarmed conversation it takes (rotating). A lane holds at most one
  session, so one conversation never runs on two servers at once.
- One conversation on the default agent is kept open (prewarmed), so a new scope's first
  turn costs about a warm turn.
- Idle release: a lane idle for ``idle_seconds`` closes its session (its App Server
  subscription and lease). The App Server has no command to stop one conversation's
  runtime; it evicts a ConversationRuntime itself after every quiescent turn
  (``evictConversationRuntimeIfIdle`` in the CLI), so closing our side releases all of it.
  A local server whose last session closed is stopped by the SDK and restarted on demand.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from lettabot import sdk
from lettabot.runtime.adapter import InboundMessage, Scope
from lettabot.runtime.agents import AgentProfile
from lettabot.runtime.approvals import ApprovalBroker, CanUseToolRequest, TurnOwner
from lettabot.runtime.router import Router
from lettabot.runtime.workspaces import neutralize_permissions, prepare_scope_dir

__all__ = [
    "QUEUE_LIMIT", "ConversationStuck", "FairGate", "Job", "Lane", "Scheduler", "SessionBroken",
]

log = logging.getLogger("lettabot.runtime.scheduler")

QUEUE_LIMIT = 100


class SessionBroken(Exception):
    """A turn failed in a way that makes its session unusable (it is closed and reopened)."""


class AgentNotConfigured(Exception):
    """A scope's route names an agent the config no longer has; its message is answered
    with how to move on, not run with another agent's permissions."""


class ConversationStuck(SessionBroken):
    """The server did not finish a turn (a hung model): the conversation stays busy there,
    so the scope moves to a new conversation (its session is closed, its route dropped)."""


@dataclass(frozen=True)
class Job:
    """One accepted message waiting for (or having) its turn."""

    message: InboundMessage
    client_message_id: str
    finished: anyio.Event = field(default_factory=anyio.Event, compare=False, repr=False)
    """Set once the job is done with: answered, failed, or dropped (a reset, a shutdown)."""


class _Binding:
    """Connects a session's ``can_use_tool`` to the broker for the turn that runs now."""

    def __init__(self, broker: ApprovalBroker, profile: AgentProfile,
                 own_tools: frozenset[str] = frozenset()) -> None:
        self.broker = broker
        self.profile = profile
        self.owner: TurnOwner | None = None
        self.own_tools = own_tools
        """lettabot's chat tools given to this session: they check their own input."""
        self.tools: list[sdk.Tool] = []

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
class Lane:
    """A scope's queue and session."""

    scope: Scope
    queue: deque[Job] = field(default_factory=deque)
    session: sdk.Session | None = None
    binding: _Binding | None = None
    server: int = 0
    running: Job | None = None
    worker: bool = False
    cancel: anyio.CancelScope | None = None
    last_used: float = 0.0
    resetting: bool = False
    """A reset is under way: messages wait for the new conversation."""

    @property
    def busy(self) -> bool:
        return self.worker or self.running is not None or bool(self.queue)


class FairGate:
    """A semaphore whose waiters are served strictly first come, first served."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiters: deque[anyio.Event] = deque()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        granted = anyio.Event()
        self._waiters.append(granted)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                self._waiters.remove(granted)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot passes straight to the next waiter
        else:
            self._free += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class TurnOwnerSetter:
    """Lets the turn runner name the turn's owner once the conversation id is known."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    def __call__(self, owner: TurnOwner) -> None:
        if self._lane.binding is not None:
            self._lane.binding.owner = owner


TurnRunner = Callable[
    [Scope, Job, Callable[[], Awaitable[sdk.Session]], TurnOwnerSetter], Awaitable[None]
]
Notifier = Callable[[Scope, str], Awaitable[None]]
ToolsFor = Callable[[Callable[[], TurnOwner | None], AgentProfile], list[sdk.Tool]]
"""The chat tools for a new session of ``profile``'s agent, acting for the turn the first
argument names when they are called."""


class Scheduler:
    """Lanes, the fair gate, sessions, the prewarmed conversation and idle release."""

    def __init__(
        self,
        *,
        router: Router,
        broker: ApprovalBroker,
        run_turn: TurnRunner,
        notify: Notifier,
        client: sdk.LettaClient,
        session_options: dict[str, Any],
        max_concurrent_turns: int,
        idle_seconds: float = 900.0,
        prewarm: bool = True,
        tools_for: ToolsFor | None = None,
        workspaces: Path | None = None,
        letta_home: Path | None = None,
    ) -> None:
        self.router = router
        self._tools_for = tools_for
        self.broker = broker
        self._run_turn = run_turn
        self._notify = notify
        self.client = client
        self._options = dict(session_options)
        self._creating = anyio.Lock()
        """One new conversation at a time (see _open_conversation)."""
        self.workspaces = workspaces
        self.letta_home = letta_home
        """The root of the scope folders: each conversation works in its scope's own."""
        self.gate = FairGate(max_concurrent_turns)
        self.servers = len(client.servers())
        self.idle_seconds = idle_seconds
        self.prewarm_enabled = prewarm
        self.lanes: dict[str, Lane] = {}
        self.transport = self._transport()
        self._tg: TaskGroup | None = None
        self._warm: tuple[sdk.Session, _Binding, int] | None = None
        self._refilling = False
        self._next_server = 0
        self.draining = False
        self.turns_run = 0
        self._turn_ended = anyio.Event()

    # -- lifecycle -------------------------------------------------------------------

    @staticmethod
    def available_transport() -> str | None:
        """``subprocess`` if the App Server transport is not installed, else None (the
        SDK's default, ``app_server``)."""
        if importlib.util.find_spec("lettabot.sdk._internal.transport.app_server") is None:
            return "subprocess"
        return None

    @classmethod
    def _transport(cls) -> str | None:
        name = cls.available_transport()
        if name == "subprocess":
            log.warning("the App Server transport is not available; using one CLI per session")
        return name

    async def start(self, tg: TaskGroup) -> None:
        """Open the prewarmed conversation (raises if the agent cannot be opened)."""
        self._tg = tg
        if self.prewarm_enabled:
            await self._refill_warm()
        tg.start_soon(self._reaper)

    def _binding(self, profile: AgentProfile) -> _Binding:
        """A binding whose session gets lettabot's chat tools (acting for its turn)."""
        binding = _Binding(self.broker, profile)
        if self._tools_for is not None:
            binding.tools = self._tools_for(lambda: binding.owner, profile)
            binding.own_tools = frozenset(t.name for t in binding.tools)
        return binding

    def _session_options(self, binding: _Binding, server: int,
                         scope: Scope | None = None) -> dict[str, Any]:
        options = dict(self._options)
        if scope is not None and self.workspaces is not None:
            options["cwd"] = folder = prepare_scope_dir(self.workspaces, scope.key)
            neutralize_permissions(folder, self.letta_home)
        options["can_use_tool"] = binding.can_use_tool
        if binding.tools:
            options["tools"] = [*options.get("tools", []), *binding.tools]
        if self.transport is not None:
            options["transport"] = self.transport
        return options

    def server_for(self, conversation_id: str) -> int:
        return self.client.server_for(conversation_id)

    async def _refill_warm(self) -> None:
        """Open the prewarmed conversation (one at a time; nothing is locked meanwhile)."""
        if self._warm is not None or self._refilling or self.draining:
            return
        self._refilling = True
        try:
            profile = self.router.agents.default
            agent = await self.router.agent_id(profile)
            try:
                session, binding, server = await self._open_conversation(profile)
            except sdk.LettaSDKError as exc:
                raise self.router.agents.missing(profile, agent,
                                                 str(exc).splitlines()[0]) from exc
            if self.draining:
                with anyio.CancelScope(shield=True):
                    await session.close()
                return
            self._warm = (session, binding, server)
        finally:
            self._refilling = False

    def _refill_soon(self) -> None:
        if self.prewarm_enabled and self._tg is not None and not self.draining:
            self._tg.start_soon(self._refill_quietly)

    async def _refill_quietly(self) -> None:
        try:
            await self._refill_warm()
        except Exception:
            log.warning("could not prewarm a conversation", exc_info=True)

    async def drain(self, grace: float) -> None:
        """Stop accepting; let running turns finish for ``grace`` s, then interrupt them;
        tell scopes whose queued messages will not be answered; close every session."""
        self.draining = True
        # A turn waiting only for a click would hold the whole grace period (and Docker's
        # 10 s stop would SIGKILL us): end those prompts now, saying why.
        for lane in list(self.lanes.values()):
            if self.broker.pending_in(lane.scope):
                with anyio.move_on_after(5):
                    await self.broker.cancel_scope(lane.scope, "lettabot is restarting")
        with anyio.move_on_after(grace):
            await self._until(lambda: self.running() == 0)
        with anyio.move_on_after(5):
            for lane in list(self.lanes.values()):
                if lane.running is not None:
                    await self.stop(lane.scope, reason="lettabot is shutting down")
        with anyio.move_on_after(5):
            await self._until(lambda: self.running() == 0)
        for lane in list(self.lanes.values()):
            if lane.cancel is not None:
                lane.cancel.cancel()
        await self.close()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._turn_ended.wait()

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for lane in list(self.lanes.values()):
                await self._close_session(lane)
            if self._warm is not None:
                session, _, _ = self._warm
                self._warm = None
                await session.close()

    # -- accepting -------------------------------------------------------------------

    def lane(self, scope: Scope) -> Lane:
        lane = self.lanes.get(scope.key)
        if lane is None:
            lane = self.lanes[scope.key] = Lane(scope, last_used=anyio.current_time())
        return lane

    def can_accept(self, scope: Scope) -> bool:
        lane = self.lanes.get(scope.key)
        return not self.draining and (lane is None or len(lane.queue) < QUEUE_LIMIT)

    def enqueue(self, job: Job) -> int:
        """Queue a message (never blocks, never fails once ``can_accept``); returns its
        position among the scope's waiting messages (0: next)."""
        lane = self.lane(job.message.scope)
        lane.queue.append(job)
        self._wake(lane)
        return len(lane.queue) - 1

    def _wake(self, lane: Lane) -> None:
        """Start the lane's worker if it has work and none runs (nor a reset)."""
        if lane.queue and not lane.worker and not lane.resetting:
            assert self._tg is not None, "the scheduler is not started"
            lane.worker = True
            self._tg.start_soon(self._work, lane)

    # -- running ---------------------------------------------------------------------

    async def _work(self, lane: Lane) -> None:
        try:
            while lane.queue and not self.draining and not lane.resetting:
                if lane.session is None:
                    # Open (or resume) the conversation before taking a turn slot: slots
                    # are for turns. A failure here is reported by the turn, which retries.
                    with contextlib.suppress(Exception):
                        await self._session(lane)
                async with self.gate.slot():
                    if not lane.queue or self.draining:
                        break
                    job = lane.queue.popleft()
                    lane.running = job
                    try:
                        with anyio.CancelScope() as cancel:
                            lane.cancel = cancel
                            await self._turn(lane, job)
                        if cancel.cancelled_caught:
                            # Cancelled, not finished: its session still holds that turn,
                            # whose tail would be read as the next message's reply.
                            await self._close_session(lane)
                    finally:
                        job.finished.set()
                        lane.running = None
                        lane.cancel = None
                        lane.last_used = anyio.current_time()
                        self.turns_run += 1
                        if self._warm is None:
                            self._refill_soon()
                        self._turn_ended.set()
                        self._turn_ended = anyio.Event()
        finally:
            lane.worker = False
            if lane.queue and self.draining:
                await self._tell_dropped(lane)

    async def _turn(self, lane: Lane, job: Job) -> None:
        async def session() -> sdk.Session:
            return await self._session(lane)

        try:
            await self._run_turn(lane.scope, job, session,
                                 TurnOwnerSetter(lane))
        except ConversationStuck:
            log.warning("the conversation of %s is stuck; the next message starts a new one",
                        lane.scope.key)
            await self._close_session(lane)
            with anyio.CancelScope(shield=True):
                await self.router.reset(lane.scope)
        except SessionBroken:
            log.info("closing the broken session of %s", lane.scope.key)
            await self._close_session(lane)
        finally:
            if lane.binding is not None:
                lane.binding.owner = None

    async def _session(self, lane: Lane) -> sdk.Session:
        """The lane's session: open, resumed from its route, or a new conversation."""
        if lane.session is not None:
            return lane.session
        profile, route = await self.router.profile_for(lane.scope)
        session: sdk.Session | None = None
        if route is not None:
            if profile is None:
                raise AgentNotConfigured(
                    f"This thread's conversation is with agent {route.agent_id}, which the "
                    "config no longer names, so I will not run it with another agent's "
                    "permissions. Say `reset` to start a new conversation here with "
                    f"{self.router.agents.for_scope(lane.scope).name}.")
            binding = self._binding(profile)
            server = self.server_for(route.conversation_id)
            session = self.client.resume_session(
                route.conversation_id, server=server,
                **self._session_options(binding, server, lane.scope))
            try:
                # several local App Servers share one backend's files: open one at a time
                async with self._opening():
                    await session.connect()
            except sdk.LettaSDKError as exc:
                with anyio.CancelScope(shield=True):
                    await session.close()
                if "not found" not in str(exc).lower():
                    raise
                log.warning("conversation %s of %s is gone (%s); starting a new one",
                            route.conversation_id, lane.scope.key, exc)
                await self.router.reset(lane.scope)
                await self._notify(lane.scope, "⚠️ This thread's previous conversation could "
                                               "not be found; starting a new one.")
                session = None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await session.close()
                raise
        if session is None:
            profile = self.router.agents.for_scope(lane.scope)
            session, binding, server = await self._new_conversation(profile, lane.scope)
            assert session.agent_id and session.conversation_id
            await self.router.bind(lane.scope, session.agent_id, session.conversation_id)
        lane.session, lane.binding, lane.server = session, binding, server
        return session

    async def _new_conversation(self, profile: AgentProfile, scope: Scope
                                ) -> tuple[sdk.Session, _Binding, int]:
        if (self.workspaces is None and self._warm is not None
                and self._warm[1].profile is profile):
            warm, self._warm = self._warm, None
            return warm  # refilled after this turn (not during it: the server is shared)
        # A conversation's folder is fixed when it opens, so with scope folders the
        # prewarmed conversation only keeps the server and the agent warm.
        return await self._open_conversation(profile, scope)

    @asynccontextmanager
    async def _opening(self) -> AsyncIterator[None]:
        """Serialise opening conversations when several App Servers share this process's
        local backend (a conversation reopened on one while another opens is not safe)."""
        if self.servers > 1:
            async with self._creating:
                yield
        else:
            yield

    async def _open_conversation(self, profile: AgentProfile, scope: Scope | None = None
                                 ) -> tuple[sdk.Session, _Binding, int]:
        """A new conversation on ``profile``'s agent, on the next App Server in turn;
        closed if it fails."""
        agent = await self.router.agent_id(profile)
        server = self._next_server % self.servers
        self._next_server += 1
        binding = self._binding(profile)
        session = self.client.create_session(agent, server=server,
                                             **self._session_options(binding, server, scope))
        try:
            # Local App Servers number new conversations from their own memory and the
            # folders on disk: two creating at once on one backend can pick the same id.
            async with self._creating:
                await session.connect()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.close()
            raise
        return session, binding, server

    async def _close_session(self, lane: Lane) -> None:
        session, lane.session, lane.binding = lane.session, None, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await session.close()
                except Exception:
                    log.warning("closing the session of %s failed", lane.scope.key, exc_info=True)

    async def _tell_dropped(self, lane: Lane) -> None:
        """At shutdown: say which queued messages were not answered (they were accepted)."""
        dropped, lane.queue = list(lane.queue), deque()
        for job in dropped:
            job.finished.set()
            preview = " ".join(job.message.text.split())[:60]
            with anyio.CancelScope(shield=True):
                await self._notify(lane.scope, f"⚠️ lettabot is shutting down; this message was not "
                                       f"answered, please send it again: “{preview}”")

    # -- commands --------------------------------------------------------------------

    def running_user(self, scope: Scope) -> str | None:
        """Who asked for the turn running in ``scope`` now (None: nothing runs)."""
        lane = self.lanes.get(scope.key)
        return lane.running.message.user_id if lane and lane.running else None

    async def stop(self, scope: Scope, reason: str = "stopped") -> bool:
        """Interrupt the scope's running turn (pending approvals are cancelled). True if one ran."""
        lane = self.lanes.get(scope.key)
        if lane is None or lane.running is None:
            return False
        await self.broker.cancel_scope(scope, reason)
        if lane.session is not None:
            try:
                await lane.session.abort()
            except Exception:
                log.warning("interrupting %s failed; cancelling the turn", scope.key,
                            exc_info=True)
                if lane.cancel is not None:
                    lane.cancel.cancel()
        return True

    async def reset(self, scope: Scope) -> tuple[bool, int]:
        """Forget the scope's conversation: messages still queued there are dropped (so
        none of them starts in the new conversation), a running turn is interrupted.
        Returns (whether there was a conversation, how many queued messages were dropped)."""
        lane = self.lanes.get(scope.key)
        if lane is None:
            return await self.router.reset(scope), 0
        for job in lane.queue:
            job.finished.set()
        dropped, lane.queue = len(lane.queue), deque()
        lane.resetting = True  # what arrives meanwhile waits for the new conversation
        try:
            await self.stop(scope, reason="the conversation was reset")
            with anyio.move_on_after(10):
                await self._until(lambda: lane.running is None)
            if lane.running is not None and lane.cancel is not None:
                lane.cancel.cancel()  # it ignored the interrupt
                with anyio.move_on_after(5):
                    await self._until(lambda: lane.running is None)
            had = await self.router.reset(scope)
            await self._close_session(lane)
        finally:
            lane.resetting = False
            if not self.draining:
                self._wake(lane)
        return had, dropped

    # -- idle release ------------------------------------------------------------------

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(max(1.0, min(60.0, self.idle_seconds / 4)))
            await self.release_idle()

    async def release(self, scope: Scope) -> bool:
        """Close the scope's session now if nothing waits there (a cluster replica does
        after each job: the scope's next message may run on another replica)."""
        lane = self.lanes.get(scope.key)
        if lane is None or lane.busy:
            return False
        await self._close_session(lane)
        if not lane.busy and lane.session is None:
            self.lanes.pop(scope.key, None)
        return True

    async def release_idle(self, older_than: float | None = None) -> int:
        """Close sessions idle for ``older_than`` s (default ``idle_seconds``); returns how many."""
        limit = self.idle_seconds if older_than is None else older_than
        now = anyio.current_time()
        released = 0
        for key, lane in list(self.lanes.items()):
            if lane.busy or now - lane.last_used < limit:
                continue
            if lane.session is not None:
                await self._close_session(lane)
                released += 1
            if not lane.busy and lane.session is None:
                self.lanes.pop(key, None)
        return released

    # -- state ---------------------------------------------------------------------------

    def queued(self, scope: Scope) -> int:
        lane = self.lanes.get(scope.key)
        return len(lane.queue) if lane else 0

    def running(self) -> int:
        return sum(1 for lane in self.lanes.values() if lane.running is not None)

    def open_sessions(self) -> int:
        return sum(1 for lane in self.lanes.values() if lane.session is not None) + (
            1 if self._warm is not None else 0
        )

    def server_states(self) -> list[dict[str, Any]]:
        """Each App Server: sessions on it, url, and for local servers pid and liveness."""
        transport = self.transport or sdk.get_default_transport()
        return [{**info.model_dump(), "transport": transport}
                for info in self.client.servers()]
