"""Scheduling: lanes and a fair global limit on turns.

- One *lane* per scope holds its queue. A lane runs one turn at a time, in arrival order.
- Queued messages (arriving while a turn runs) are HELD by the lane and sent as the next
  turns, one turn per message: each gets its own reply, its own approver (the person who
  sent it) and its own dedupe id. Nothing is dropped; at most :data:`QUEUE_LIMIT` wait
  per scope (the App Server's own soft cap), more are refused with a note, unclaimed.
- ``max_concurrent_turns`` is enforced by a :class:`FairGate`: a lane takes a slot for
  ONE turn and joins the back of the line for its next one, so a busy scope cannot starve
  the others (round-robin across scopes).
- A turn gets its scope's open conversation from
  :class:`~lettabot.runtime.conversations.Conversations` (opened before the slot is
  taken: slots are for turns) and runs through :class:`RunsTurns`.
- Idle release: a lane idle for ``idle_seconds`` closes its conversation's session.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from lettabot import sdk
from lettabot.runtime.adapter import Scope
from lettabot.runtime.approvals import ApprovalBroker
from lettabot.runtime.jobs import ConversationStuck, Job, SessionBroken
from lettabot.runtime.router import Router

__all__ = [
    "QUEUE_LIMIT", "ConversationPool", "FairGate", "Lane", "OpenConversation", "RunsTurns",
    "Scheduler", "SchedulerState",
]

log = logging.getLogger("lettabot.runtime.scheduler")

QUEUE_LIMIT = 100

Notifier = Callable[[Scope, str], Awaitable[None]]


class OpenConversation(Protocol):
    """A scope's open conversation (:class:`~lettabot.runtime.conversations.Conversation`)."""

    @property
    def session(self) -> sdk.Session: ...

    def serving(self, job: Job) -> AbstractContextManager[sdk.Session]:
        """While the block runs, the session's tool requests belong to ``job``'s turn."""
        ...


class ConversationPool(Protocol):
    """The conversations stage, as the scheduler uses it
    (:class:`~lettabot.runtime.conversations.Conversations`)."""

    async def open(self, scope: Scope) -> OpenConversation: ...
    def get(self, scope: Scope) -> OpenConversation | None: ...
    async def close_scope(self, key: str) -> None: ...
    def turn_ended(self) -> None: ...
    def count(self) -> int: ...
    async def close(self) -> None: ...


class RunsTurns(Protocol):
    """The turn stage, as the scheduler calls it (:class:`~lettabot.runtime.turns.TurnRunner`)."""

    async def run(self, job: Job, session: sdk.Session) -> None:
        """Run ``job``'s turn on the open ``session``; raise :class:`SessionBroken` when
        the session is no longer usable."""

    async def could_not_start(self, job: Job, error: Exception) -> None:
        """Tell the chat that ``job``'s conversation could not be opened."""


class SchedulerState(BaseModel):
    """A snapshot for health, metrics and ``status``."""

    queued: int
    turns_running: int
    turns_waiting_for_slot: int
    slots: int
    open_conversations: int
    draining: bool


@dataclass(eq=False)
class Lane:
    """A scope's queue and the turn running there."""

    scope: Scope
    queue: deque[Job] = field(default_factory=deque)
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


class Scheduler:
    """Lanes and the fair gate; conversations come from a :class:`ConversationPool`."""

    def __init__(
        self,
        *,
        conversations: ConversationPool,
        turns: RunsTurns,
        router: Router,
        broker: ApprovalBroker,
        notify: Notifier,
        max_concurrent_turns: int,
        idle_seconds: float = 900.0,
    ) -> None:
        self.conversations = conversations
        self.turns = turns
        self.router = router
        self.broker = broker
        self._notify = notify
        self.gate = FairGate(max_concurrent_turns)
        self.idle_seconds = idle_seconds
        self.lanes: dict[str, Lane] = {}
        self._tg: TaskGroup | None = None
        self.draining = False
        self.turns_run = 0
        self._turn_ended = anyio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        """Start the idle reaper; lanes start their workers in ``tg``."""
        self._tg = tg
        tg.start_soon(self._reaper)

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
        await self.conversations.close()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._turn_ended.wait()

    # -- accepting -------------------------------------------------------------------

    def lane(self, scope: Scope) -> Lane:
        lane = self.lanes.get(scope.key)
        if lane is None:
            lane = self.lanes[scope.key] = Lane(scope, last_used=anyio.current_time())
        return lane

    def knows(self, scope: Scope) -> bool:
        """Whether ``scope`` has a lane here (a message of it was accepted lately)."""
        return scope.key in self.lanes

    def can_accept(self, scope: Scope) -> bool:
        lane = self.lanes.get(scope.key)
        return not self.draining and (lane is None or len(lane.queue) < QUEUE_LIMIT)

    def enqueue(self, job: Job) -> int:
        """Queue a message (never blocks, never fails once ``can_accept``); returns its
        position among the scope's waiting messages (0: next)."""
        lane = self.lane(job.scope)
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
                # Open (or resume) the conversation before taking a turn slot: slots are
                # for turns. A failure here is reported by the turn, which tries again.
                with contextlib.suppress(Exception):
                    await self.conversations.open(lane.scope)
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
                            await self.conversations.close_scope(lane.scope.key)
                    finally:
                        job.finished.set()
                        lane.running = None
                        lane.cancel = None
                        lane.last_used = anyio.current_time()
                        self.turns_run += 1
                        self.conversations.turn_ended()
                        self._turn_ended.set()
                        self._turn_ended = anyio.Event()
        finally:
            lane.worker = False
            if lane.queue and self.draining:
                await self._tell_dropped(lane)

    async def _turn(self, lane: Lane, job: Job) -> None:
        """One job: its conversation, then its turn; a broken session is closed."""
        try:
            conversation = await self.conversations.open(lane.scope)
        except Exception as exc:
            await self.turns.could_not_start(job, exc)
            return
        try:
            with conversation.serving(job) as session:
                await self.turns.run(job, session)
        except ConversationStuck:
            log.warning("the conversation of %s is stuck; the next message starts a new one",
                        lane.scope.key)
            await self.conversations.close_scope(lane.scope.key)
            with anyio.CancelScope(shield=True):
                await self.router.reset(lane.scope)
        except SessionBroken:
            log.info("closing the broken session of %s", lane.scope.key)
            await self.conversations.close_scope(lane.scope.key)

    async def _tell_dropped(self, lane: Lane) -> None:
        """At shutdown: say which queued messages were not answered (they were accepted)."""
        dropped, lane.queue = list(lane.queue), deque()
        for job in dropped:
            job.finished.set()
            preview = " ".join(job.message.text.split())[:60]
            with anyio.CancelScope(shield=True):
                await self._notify(lane.scope, "⚠️ lettabot is shutting down; this message was "
                                               f"not answered, please send it again: “{preview}”")

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
        conversation = self.conversations.get(scope)
        if conversation is not None:
            try:
                await conversation.session.abort()
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
            await self.conversations.close_scope(scope.key)
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
        when the scope ran on another replica since its session opened here)."""
        lane = self.lanes.get(scope.key)
        if lane is not None and lane.busy:
            return False
        await self.conversations.close_scope(scope.key)
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
            if self.conversations.get(lane.scope) is not None:
                await self.conversations.close_scope(key)
                released += 1
            if not lane.busy:
                self.lanes.pop(key, None)
        return released

    # -- state ---------------------------------------------------------------------------

    def queued(self, scope: Scope) -> int:
        lane = self.lanes.get(scope.key)
        return len(lane.queue) if lane else 0

    def running(self) -> int:
        return sum(1 for lane in self.lanes.values() if lane.running is not None)

    def state(self) -> SchedulerState:
        return SchedulerState(
            queued=sum(len(lane.queue) for lane in self.lanes.values()),
            turns_running=self.running(), turns_waiting_for_slot=self.gate.waiting,
            slots=self.gate.size, open_conversations=self.conversations.count(),
            draining=self.draining)
