"""One replica of a cluster: the durable inbox's worker and the bus's handlers.

- :meth:`Replica.submit` puts an accepted message (or a scheduled run) in the inbox
  (intake's last step), in the queue of the replica that ran the scope's last job while
  that one lives (scope affinity), else in the shared queue;
  the inbox runs it (:meth:`Replica._run_job`), which claims the scope and queues the
  job on its scheduler. The scope's session stays open after the turn (the idle timer
  closes it); before a job runs, a session kept open here is closed if the scope ran
  elsewhere meanwhile (its epoch changed) or its route moved (a reset, a fork), so a
  conversation never goes on from stale state. A job taken over from a dead replica
  continues in a fork of its conversation.
- A job starts its turn once the store answers (a turn begun while the database is away
  would fail its lookups; waiting for the store is its retry), and posts only while this
  replica still holds the job (:class:`~lettabot.runtime.cluster.inbox.Lease`).
- An approval click or a Stop that reached this replica for a turn running on another
  goes over the bus (:meth:`decide_elsewhere`, :meth:`stop_elsewhere`); the store's
  pending → decided transition stays the authority.
- A replica without the ``worker`` role (ingress only) runs no turn and opens no
  conversation: it does not run the inbox's worker and prewarms nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import (
    Adapter,
    ApprovalDecision,
    CommandResult,
    DecisionOutcome,
    InboundMessage,
    Scope,
    SupportsAcknowledge,
)
from lettabot.runtime.approvals import ApprovalBroker
from lettabot.runtime.cluster.bus import Bus
from lettabot.runtime.cluster.inbox import Inbox, Lease, libpq_url
from lettabot.runtime.config import Config
from lettabot.runtime.conversations import Conversations
from lettabot.runtime.hosts import HostWait, WaitForHost
from lettabot.runtime.intake import acknowledge
from lettabot.runtime.jobs import Job
from lettabot.runtime.metrics import Metrics
from lettabot.runtime.router import Router
from lettabot.runtime.scheduler import Scheduler
from lettabot.runtime.store import Route, Store

__all__ = ["Replica"]

log = logging.getLogger("lettabot.runtime")

STORE_WAIT = 120.0
"""Seconds a job waits for the store to answer before its turn runs anyway (and says
what failed)."""

RunCommand = Callable[[Scope, str, str], Awaitable[CommandResult]]
"""``run(scope, user_id, command)``: a command run on this replica."""


class Replica:
    """This process's part of the cluster (``[cluster]``)."""

    def __init__(
        self,
        config: Config,
        name: str,
        *,
        store: Store,
        router: Router,
        scheduler: Scheduler,
        conversations: Conversations,
        broker: ApprovalBroker,
        access: AccessPolicy,
        metrics: Metrics,
        adapters: Mapping[str, Adapter],
        notify: Callable[[Scope, str], Awaitable[None]],
    ) -> None:
        cluster = config.cluster
        self.name = name
        self.roles = cluster.roles
        if "worker" not in self.roles:
            # ingress only: its messages and scheduled runs go to the inbox, whose worker
            # does not run here; nothing may open a conversation (not even a prewarmed one)
            conversations.prewarm_enabled = False
        self.store = store
        self.router = router
        self.scheduler = scheduler
        self.conversations = conversations
        self.broker = broker
        self.access = access
        self.metrics = metrics
        self.adapters = adapters
        self._notify = notify
        self._run_command: RunCommand | None = None
        self.host_wait: HostWait | None = None
        """Set with ``[[hosts]]``: a job whose agent's host is unreachable is retried."""
        self._tg: TaskGroup | None = None
        self._epochs: dict[str, int | None] = {}
        """Scope key → the scope's epoch when this replica last ran it (its session)."""
        self.inbox = Inbox(config.store_url, name, self._run_job,
                           concurrency=config.servers.max_concurrent_turns,
                           heartbeat_seconds=cluster.heartbeat_seconds,
                           takeover_seconds=cluster.takeover_seconds)
        self.bus = Bus(libpq_url(config.store_url), name)
        self.bus.on("holds", self._holds_here)
        self.bus.on("decided", self._decided_here)
        self.bus.on("stop", self._stop_here)

    async def open(self, tg: TaskGroup, run_command: RunCommand) -> None:
        """Join the cluster: the inbox, the bus, and (role ``worker``) the inbox's worker."""
        self._run_command = run_command
        self._tg = tg
        await self.inbox.open()
        tg.start_soon(self.bus.run, name="cluster bus")
        if "worker" in self.roles:
            tg.start_soon(self.inbox.run, name="cluster worker")
        log.info("cluster replica %s (%s)", self.name, ", ".join(self.roles))

    async def close(self) -> None:
        await self.bus.close()
        await self.inbox.close()

    async def submit(self, message: InboundMessage, client_message_id: str) -> None:
        """Queue an accepted message in the durable inbox."""
        await self.inbox.defer(message, client_message_id)

    # -- the inbox's jobs ----------------------------------------------------------------

    async def _run_job(self, message: InboundMessage, client_message_id: str,
                       attempts: int, lease: Lease, *, trace: Mapping[str, str],
                       accepted_ns: int | None) -> None:
        """A job of the inbox, on this replica: the scope is claimed, a stale session
        closed, then its turn (the session stays open for the scope's next job)."""
        scope = message.scope
        answered, route = await self._store_answers(scope, lease)
        if not answered:
            return  # taken over meanwhile: the other replica answers
        try:
            epoch = await self.inbox.claim(scope.key, lease)
            if epoch is None:
                return  # taken over meanwhile: the other replica answers
        except Exception as exc:  # unknown: whatever session is open here is not trusted
            log.warning("could not claim %s (%s: %s); its session is reopened", scope.key,
                        type(exc).__name__, exc)
            epoch = None
        if attempts and not (self.host_wait is not None
                             and await self.host_wait.was_held(client_message_id)):
            self.metrics.messages.labels(scope.adapter, "taken_over").inc()
            await self._notify(scope, "⚠️ The lettabot replica that was answering this "
                                      "stopped; another one is answering it now.")
            try:
                await self._fork_after_takeover(scope)
            except Exception:  # the turn goes on in the conversation (it waits for it)
                log.warning("could not move %s to a fork after a takeover", scope.key,
                            exc_info=True)
        await self._drop_stale_session(scope, epoch, route)
        adapter = self.adapters.get(scope.adapter)
        if isinstance(adapter, SupportsAcknowledge):  # this replica's adapter learns of it
            await acknowledge(adapter, message)
        job = Job(message, client_message_id=client_message_id, lease=lease, trace=trace,
                  accepted_ns=accepted_ns or time.time_ns())
        if self._tg is not None:
            tg = self._tg

            def stop_here() -> None:
                tg.start_soon(self._stop_taken_over, job)

            lease.on_lost = stop_here
        self.scheduler.enqueue(job)
        await job.finished.wait()
        if self.host_wait is not None:
            if self.host_wait.retry_later(client_message_id):
                raise WaitForHost(scope.key)  # the inbox retries it; later ones wait
            await self.host_wait.answered(client_message_id)

    async def _drop_stale_session(self, scope: Scope, epoch: int | None,
                                  route: Route | None) -> None:
        """Close the scope's session kept open here if the scope ran on another replica
        since (``epoch`` is not the one it was opened at; None: unknown) or its route no
        longer names the session's conversation (a reset, a fork)."""
        held = self.conversations.get(scope)
        if held is not None:
            stale = epoch is None or self._epochs.get(scope.key) != epoch
            if not stale:
                stale = route is None or route.conversation_id != held.session.conversation_id
            if stale:
                log.info("%s ran elsewhere or moved since its session opened here; "
                         "reopening it", scope.key)
                await self.scheduler.release(scope)
        if len(self._epochs) > 2 * len(self.conversations.open_now) + 100:
            self._epochs = {k: e for k, e in self._epochs.items()
                            if k in self.conversations.open_now}
        self._epochs[scope.key] = epoch

    async def _store_answers(self, scope: Scope, lease: Lease) -> tuple[bool, Route | None]:
        """Wait until the store answers (at most :data:`STORE_WAIT` s): a turn begun while
        the database is away fails its first lookups. False: the job is not this
        replica's any more; else True and the scope's route."""
        delay = 0.5
        with anyio.move_on_after(STORE_WAIT):
            while not lease.lost:
                try:
                    return True, await self.store.get_route(scope.key)
                except Exception as exc:
                    log.warning("the store did not answer for %s (%s: %s); waiting for it",
                                scope.key, type(exc).__name__, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return not lease.lost, None

    async def _stop_taken_over(self, job: Job) -> None:
        """``job`` was taken over by another replica (this one was frozen or cut off): stop
        its turn here if it runs (what it says is not posted anyway)."""
        lane = self.scheduler.lanes.get(job.scope.key)
        if lane is not None and lane.running is job:
            log.info("stopping the turn in %s: another replica took its message over",
                     job.scope.key)
            await self.scheduler.stop(job.scope,
                                      reason="another lettabot replica took this message over")

    async def _fork_after_takeover(self, scope: Scope) -> None:
        """The dead replica's run may go on in its App Server (or hang there), keeping the
        conversation busy: the scope continues in a fork of it (same history), or, if it
        cannot be forked, in a new conversation (the agent's memory is kept)."""
        await self.scheduler.release(scope)
        route = await self.store.get_route(scope.key)
        if route is None:
            return
        try:
            fork = await self.conversations.fork(route.conversation_id)
        except sdk.LettaSDKError as exc:
            log.warning("could not fork %s after a takeover (%s); starting a new conversation",
                        route.conversation_id, exc)
            await self.router.reset(scope)
            return
        await self.router.bind(scope, route.agent_id, fork)
        log.info("%s continues in %s, a fork of %s (taken over)", scope.key, fork,
                 route.conversation_id)

    # -- clicks and stops for turns on other replicas ----------------------------------

    async def decide_elsewhere(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str
    ) -> DecisionOutcome | None:
        """Decide a prompt whose turn waits on another replica (None: none does)."""
        held = await self.bus.request("holds", {"request_id": request_id})
        if held is None:
            return None
        approval = await self.store.get_approval(request_id)
        profile = None
        if approval is not None:
            profile, _ = await self.router.profile_for(Scope.from_key(approval.scope))
        recorded = await self.broker.record(
            request_id, decision, user_id,
            profile.access if profile is not None else self.access,
            held.get("always_covers"))
        if recorded.status != "decided":
            return recorded
        reply = await self.bus.request("decided", {"request_id": request_id,
                                                   "user_name": user_name})
        return DecisionOutcome.model_validate(reply) if reply is not None else recorded

    async def stop_elsewhere(self, scope: Scope, user_id: str) -> CommandResult | None:
        """A Stop for a turn running on another replica (None: none runs)."""
        reply = await self.bus.request("stop", {"scope": scope.key, "user_id": user_id})
        return CommandResult.model_validate(reply) if reply is not None else None

    async def _holds_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Another replica got a click: is its prompt waiting here?"""
        return self.broker.holds(str(data.get("request_id") or ""))

    async def _decided_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Another replica decided a prompt waiting here: go look in the store (the
        message is only a hint; the store's pending → decided transition is the authority)."""
        outcome = await self.broker.apply_decided(str(data.get("request_id") or ""),
                                                  str(data.get("user_name") or ""))
        return outcome.model_dump() if outcome is not None else None

    async def _stop_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """A Stop another replica received, for a turn running here."""
        scope = Scope.from_key(str(data.get("scope") or ""))
        if self.scheduler.running_user(scope) is None or self._run_command is None:
            return None
        result = await self._run_command(scope, str(data["user_id"]), "stop")
        return result.model_dump()
