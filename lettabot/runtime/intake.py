"""Intake: where messages enter the pipeline.

``handle(message)``, for each scope in arrival order:

1. **access** — the scope's agent profile and whether the sender may talk here (a
   message in a thread the bot is not in needs a mention);
2. **room** — the scope's queue has room and lettabot is not draining;
3. **dedupe** — the platform's redelivery of a message is claimed once;
4. **context** — a thread's first message to the bot carries what the thread said
   before it, each earlier message marked trusted or not;
5. **submit** — queued here (:meth:`Scheduler.enqueue`) or in the cluster's durable
   inbox; the adapter may acknowledge it (a 👀 reaction).

Scheduled runs enter here too (:meth:`Intake.scheduled`), as their creator's message.
Commands (``reset``, ``status``…) are not messages: adapters send them to
:class:`~lettabot.runtime.commands.Commands` through the bot.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import anyio
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import (
    Adapter,
    ContextMessage,
    InboundMessage,
    Scope,
    SupportsAcknowledge,
    SupportsThreadContext,
)
from lettabot.runtime.jobs import SCHEDULED, Job
from lettabot.runtime.metrics import Metrics
from lettabot.runtime.router import Router
from lettabot.runtime.scheduler import Scheduler
from lettabot.runtime.store import Schedule, Store
from lettabot.runtime.tracing import attributes, carrier, tracing

__all__ = ["DEPLOYMENT_SETTING", "ENGAGED", "Intake", "acknowledge", "client_message_id"]

log = logging.getLogger("lettabot.runtime")

ENGAGED = "lettabot:thread"
"""Claims (in the dedupe table) of the scopes a cluster has accepted a message in, so a
follow-up without a mention counts before the first answer made a route."""
ENGAGED_FOR = timedelta(days=30)

DEPLOYMENT_SETTING = "deployment_id"
"""The store setting naming this deployment: made once by the first replica that needs it,
shared by every replica on the store, kept across restarts."""


def client_message_id(deployment: str, agent: str, scope: Scope, message_id: str) -> str:
    """A turn's ``client_message_id``: ``<adapter>:`` and 40 hex chars of sha256 over the
    deployment, the agent (its name in the config), the scope and the platform's message
    (event) id. Unique across deployments on one Letta backend, agents, scopes and
    messages; the same for the same message delivered again (a platform retry, a restart, a
    cluster takeover), so the backend takes a retried input as the one it already has.
    At most 61 characters of ``[A-Za-z0-9:_-]``."""
    parts = (deployment, agent, scope.key, message_id)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:40]
    adapter = "".join(c if c.isalnum() or c in "_-" else "-" for c in scope.adapter)[:20]
    return f"{adapter}:{digest}"


Notify = Callable[..., Awaitable[None]]
"""``notify(scope, text, user_id=None)``: a short note in the chat."""
Submit = Callable[[InboundMessage, str], Awaitable[None]]
"""Queue an accepted message under its ``client_message_id``."""
Spawn = Callable[..., object]
"""Run a coroutine function in the background (a task group's ``start_soon``)."""


async def acknowledge(adapter: SupportsAcknowledge, message: InboundMessage) -> None:
    """Tell the platform the message was taken (best effort, at most 10 s)."""
    with anyio.move_on_after(10):
        try:
            await adapter.acknowledge(message)
        except Exception:
            log.debug("could not acknowledge %s", message.message_id, exc_info=True)


class Intake:
    """Judges, dedupes and queues messages (see the module doc)."""

    def __init__(
        self,
        *,
        store: Store,
        router: Router,
        scheduler: Scheduler,
        access: AccessPolicy,
        metrics: Metrics,
        adapters: Mapping[str, Adapter],
        notify: Notify,
        thread_context: int,
        clustered: bool = False,
    ) -> None:
        self.store = store
        self.router = router
        self.scheduler = scheduler
        self.access = access
        self.metrics = metrics
        self.adapters = adapters
        self._notify = notify
        self.thread_context = thread_context
        self.clustered = clustered
        """In a cluster the replica that runs the turn acknowledges (and later clears) it."""
        self._submit: Submit = self._enqueue
        self._spawn: Spawn | None = None
        self._locks: dict[str, anyio.Lock] = {}
        self._deployment: str | None = None

    def start(self, spawn: Spawn, submit: Submit | None = None) -> None:
        """Acknowledge in the background with ``spawn``; queue through ``submit`` (the
        cluster's inbox) instead of this process's scheduler."""
        self._spawn = spawn
        if submit is not None:
            self._submit = submit

    async def _enqueue(self, message: InboundMessage, client_message_id: str) -> None:
        self.scheduler.enqueue(Job(message, client_message_id=client_message_id,
                                   trace=carrier()))

    async def client_message_id(self, scope: Scope, message_id: str,
                                agent: str) -> str:
        """The ``client_message_id`` of the turn for ``message_id`` in ``scope`` by
        ``agent`` (see :func:`client_message_id`)."""
        if self._deployment is None:
            self._deployment = await self.store.setting_if_absent(DEPLOYMENT_SETTING,
                                                                  uuid.uuid4().hex)
        return client_message_id(self._deployment, agent, scope, message_id)

    # -- messages ----------------------------------------------------------------------

    async def handle(self, message: InboundMessage) -> None:
        """Judge, dedupe and queue a message; the turn runs in the background."""
        scope = message.scope
        lock = self._locks.setdefault(scope.key, anyio.Lock())
        traced = tracing()
        try:
            with traced.tracer.start_as_current_span(
                    "lettabot.message", kind=SpanKind.CONSUMER, attributes=attributes(
                        adapter=scope.adapter, scope=scope.key, message_id=message.message_id,
                        user=traced.user(scope.adapter, message.user_id))):
                async with lock:  # keeps one scope's messages in arrival order
                    await self._accept(message)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(scope.key, None)

    async def _accept(self, message: InboundMessage) -> None:
        scope = message.scope
        # 1. access
        profile, route = await self.router.profile_for(scope)
        known = self.scheduler.knows(scope) or route is not None
        if not known and self.clustered:  # accepted on a replica, not answered yet
            known = await self.store.event_claimed(ENGAGED, scope.key)
        access = profile.access if profile is not None else self.access
        verdict = access.check(message, has_conversation=known)
        if verdict.action == "ignore":
            self._count(scope, "ignored")
            log.debug("ignored a message in %s: %s", scope.key, verdict.reason)
            if verdict.reply:
                await self._notify(scope, verdict.reply, user_id=message.user_id)
            return
        # 2. room
        if not self.scheduler.can_accept(scope):
            text = ("lettabot is restarting; please send that again in a minute."
                    if self.scheduler.draining else
                    "Too many messages are waiting here; please wait for the answers and send "
                    "that again.")
            self._count(scope, "refused_busy")
            await self._notify(scope, text, user_id=message.user_id)
            return
        # 3. dedupe
        if not await self.access.claim(self.store, message):
            self._count(scope, "duplicate")
            log.info("duplicate delivery of %s in %s ignored", message.dedupe_id, scope.key)
            return
        # 4. context
        if not known and scope.thread:
            message = await self._with_context(message, access)
        # 5. submit
        try:
            if self.clustered and not known:  # every replica now knows the thread
                await self.store.claim_event(ENGAGED, scope.key, ENGAGED_FOR)
            agent = profile.name if profile is not None else route.agent_id if route else ""
            await self._submit(message, await self.client_message_id(scope, message.dedupe_id,
                                                                     agent))
        except Exception:
            # not queued: its redelivery (the platform retries an unanswered event) must
            # not be taken for a duplicate
            await self.store.release_event(scope.adapter, message.dedupe_id)
            raise
        self._count(scope, "accepted")
        adapter = self.adapters.get(scope.adapter)
        if isinstance(adapter, SupportsAcknowledge) and self._spawn is not None \
                and not self.clustered:
            self._spawn(acknowledge, adapter, message)

    async def _with_context(self, message: InboundMessage,
                            access: AccessPolicy) -> InboundMessage:
        """A thread's first message to the bot carries what the thread said before it,
        each message marked trusted only if its author may talk here (``access``)."""
        adapter = self.adapters.get(message.scope.adapter)
        limit = self.thread_context
        if not limit or not isinstance(adapter, SupportsThreadContext):
            return message
        earlier: list[ContextMessage] = []
        with anyio.move_on_after(5):  # context is nice to have; the answer must not wait
            try:
                earlier = await adapter.thread_context(message, limit)
            except Exception:
                log.warning("could not read the earlier messages of %s", message.scope.key,
                            exc_info=True)
        adapter_name = message.scope.adapter
        marked = tuple(
            c.model_copy(update={"trusted": c.from_bot or access.may_talk(adapter_name,
                                                                          c.user_id)})
            for c in earlier[-limit:])
        return message.model_copy(update={"context": marked})

    def _count(self, scope: Scope, outcome: str) -> None:
        self.metrics.messages.labels(scope.adapter, outcome).inc()
        trace.get_current_span().set_attribute("lettabot.outcome", outcome)

    # -- scheduled runs ----------------------------------------------------------------

    def can_run_scheduled(self, schedule: Schedule) -> bool:
        """Whether ``schedule``'s scope can take a run now (its adapter runs, it has room)."""
        try:
            scope = Scope.from_key(schedule.scope)
        except ValueError:
            return False
        return (scope.adapter in self.adapters and not self.scheduler.draining
                and self.scheduler.can_accept(scope))

    async def scheduled(self, schedule: Schedule, due: datetime) -> None:
        """A claimed run: a turn in its scope, as its creator's message."""
        scope = Scope.from_key(schedule.scope)
        adapter, _, user = schedule.created_by.partition(":")
        if schedule.created_by and not self.access.may_talk(adapter, user):
            log.warning("schedule %s not run: %s may no longer talk to the bot", schedule.id,
                        schedule.created_by)
            await self._notify(scope, f"🗓️ Schedule `{schedule.id}` was not run: the person "
                                      "who created it may no longer talk to the bot.")
            return
        text = schedule.prompt  # the sender note says it is scheduled, and by whom
        message_id = f"{SCHEDULED}{schedule.id}:{due.isoformat()}"
        message = InboundMessage(scope=scope, user_id=user, user_name="", text=text,
                                 message_id=message_id, mentioned=True)
        log.info("schedule %s runs in %s", schedule.id, scope.key)
        traced = tracing()
        with traced.tracer.start_as_current_span(
                "lettabot.message", kind=SpanKind.PRODUCER, attributes=attributes(
                    adapter=scope.adapter, scope=scope.key, message_id=message_id,
                    schedule=schedule.id, user=traced.user(adapter, user))):
            self._count(scope, "scheduled")
            profile, route = await self.router.profile_for(scope)
            agent = profile.name if profile is not None else route.agent_id if route else ""
            await self._submit(message, await self.client_message_id(scope, message_id,
                                                                     agent))
