"""Messages whose agent's App Server host is unreachable wait until it is back.

An agent placed on a host (``[[agents]] host``) lives on that host's local backend, so no
other server can answer for it. When its conversation cannot be opened because the host
does not answer (:class:`~lettabot.sdk.AppServerUnreachableError`), the turn ends at once
with a note in the thread, and the message waits:

- alone (no ``[cluster]``): in the store (``held_messages``), so it survives a restart.
  Later messages of that scope wait behind it (order kept per scope). :meth:`HostWait.run`
  tries each host with waiting messages every ``retry_seconds`` and, once it answers,
  queues its scopes' messages again, oldest first; each is forgotten once answered.
- in a cluster: the inbox's job is retried later (:class:`WaitForHost`), not finished;
  PostgreSQL keeps the scope's later jobs behind it. The store's row only marks that the
  thread was told, and that a retry is not a takeover.

Nothing is answered by another agent or host: the message keeps its scope's route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from lettabot import sdk
from lettabot.runtime.adapter import InboundMessage, Scope
from lettabot.runtime.jobs import Job
from lettabot.runtime.router import Router
from lettabot.runtime.store import Store

__all__ = ["RETRY_SECONDS", "HostWait", "WaitForHost", "host_down_note"]

log = logging.getLogger("lettabot.runtime.hosts")

RETRY_SECONDS = 5.0
"""How often a host with waiting messages is tried again."""

Notifier = Callable[[Scope, str], Awaitable[None]]


class WaitForHost(Exception):
    """A cluster job whose agent's host is unreachable: the inbox retries it later."""


def host_down_note(host: str) -> str:
    return (f"⚠️ The agent's host {host} is unreachable; your message will be answered "
            "when it is back.")


class HostWait:
    """Holds messages for unreachable hosts and sends them on when the host is back."""

    def __init__(self, *, store: Store, router: Router, client: sdk.LettaClient,
                 scheduler: Any, notify: Notifier, adapters: Mapping[str, object],
                 clustered: bool = False, retry_seconds: float = RETRY_SECONDS) -> None:
        self.store = store
        self.router = router
        self.client = client
        self.scheduler = scheduler
        self._notify = notify
        self.adapters = adapters
        self.clustered = clustered
        self.retry_seconds = retry_seconds
        self.waiting: dict[str, str] = {}
        """Scopes with held messages (alone), scope key → host."""
        self._again: set[str] = set()
        """Held messages that were sent on and failed again (their row stays)."""
        self._retry: set[str] = set()
        """Cluster jobs to retry later (the inbox asks :meth:`retry_later`)."""
        self._lock = anyio.Lock()
        self._tg: TaskGroup | None = None

    async def start(self, tg: TaskGroup) -> None:
        """Learn what waits from the store; alone, start trying the hosts."""
        self._tg = tg
        if self.clustered:
            return
        for row in await self.store.held_messages():
            self.waiting.setdefault(row.scope, row.host)
        if self.waiting:
            log.info("%d threads wait for their agent's host", len(self.waiting))
        tg.start_soon(self.run, name="host wait")

    # -- holding ---------------------------------------------------------------------

    async def hold(self, job: Job, error: Exception) -> bool:
        """``job``'s conversation could not be opened for ``error``: hold it if its agent
        lives on a host that is unreachable (True), else leave it to the turn (False)."""
        if not isinstance(error, sdk.AppServerUnreachableError):
            return False
        profile, _ = await self.router.profile_for(job.scope)
        if profile is None or profile.host is None:
            return False
        host = profile.host
        log.warning("the host %s of agent %s is unreachable (%s); %s waits",
                    host, profile.name, error, job.scope.key)
        if self.clustered:
            self._retry.add(job.client_message_id)
            if await self.store.hold_message(job.client_message_id, job.scope.key, host,
                                             job.message.model_dump_json()):
                await self._notify(job.scope, host_down_note(host))
            return True
        async with self._lock:
            jobs = [job, *self._queued_behind(job.scope)]
            for held in jobs:
                new = await self.store.hold_message(held.client_message_id, held.scope.key,
                                                    host, held.message.model_dump_json())
                if not new:
                    self._again.add(held.client_message_id)
                if held is not job:
                    held.finished.set()
                if new or held is job:
                    await self._notify(held.scope, host_down_note(host))
            self.waiting[job.scope.key] = host
        return True

    def _queued_behind(self, scope: Scope) -> list[Job]:
        """The scope's jobs queued behind the failed one: they wait too (in order)."""
        lane = self.scheduler.lanes.get(scope.key)
        if lane is None:
            return []
        queued = list(lane.queue)
        lane.queue.clear()
        return queued

    async def submit(self, message: InboundMessage, client_message_id: str) -> None:
        """Intake's last step, alone: a scope whose earlier messages wait holds this one
        behind them; any other is queued as usual."""
        scope = message.scope
        async with self._lock:
            host = self.waiting.get(scope.key)
            if host is not None:
                await self.store.hold_message(client_message_id, scope.key, host,
                                              message.model_dump_json())
        if host is not None:
            await self._notify(scope, host_down_note(host))
            return
        self.scheduler.enqueue(Job(message, client_message_id=client_message_id))

    async def drop(self, scope: Scope) -> int:
        """``reset``: forget the scope's waiting messages (alone; a cluster's inbox jobs
        run in the new conversation). Returns how many."""
        if self.clustered:
            return 0
        async with self._lock:
            self.waiting.pop(scope.key, None)
            rows = [r for r in await self.store.held_messages() if r.scope == scope.key]
            for row in rows:
                await self.store.release_held(row.client_message_id)
        return len(rows)

    # -- the cluster's side ----------------------------------------------------------

    def retry_later(self, client_message_id: str) -> bool:
        """Whether the job just run was held (the inbox retries it; once per hold)."""
        if client_message_id in self._retry:
            self._retry.discard(client_message_id)
            return True
        return False

    async def was_held(self, client_message_id: str) -> bool:
        """Whether this job waited for its host before (a retry, not a takeover)."""
        return any(row.client_message_id == client_message_id
                   for row in await self.store.held_messages())

    async def answered(self, client_message_id: str) -> None:
        """The job ran (answered or failed otherwise): it waits no more."""
        await self.store.release_held(client_message_id)

    # -- sending on --------------------------------------------------------------------

    async def run(self) -> None:
        """Alone: every ``retry_seconds``, try each host with waiting messages; send its
        messages on once it answers."""
        while True:
            await anyio.sleep(self.retry_seconds)
            for host in sorted(set(self.waiting.values())):
                try:
                    await self.client.check_server(self.client.host_server(host))
                except sdk.AppServerUnreachableError:
                    continue
                except Exception:
                    log.warning("could not try host %s", host, exc_info=True)
                    continue
                try:
                    await self.send_on(host)
                except Exception:
                    log.warning("could not send on the messages waiting for %s", host,
                                exc_info=True)

    async def send_on(self, host: str) -> int:
        """Queue the messages waiting for ``host`` again, oldest first per scope (scopes
        whose adapter is not running yet keep waiting). Returns how many."""
        assert self._tg is not None
        sent = 0
        async with self._lock:
            rows = [r for r in await self.store.held_messages() if r.host == host]
            ready = {r.scope for r in rows if Scope.from_key(r.scope).adapter in self.adapters}
            for row in rows:
                if row.scope not in ready:
                    continue
                self.waiting.pop(row.scope, None)
                job = Job(InboundMessage.model_validate_json(row.message),
                          client_message_id=row.client_message_id)
                self.scheduler.enqueue(job)
                self._tg.start_soon(self._forget_when_answered, job)
                sent += 1
        if sent:
            log.info("host %s is back: %d waiting messages sent on", host, sent)
        return sent

    async def _forget_when_answered(self, job: Job) -> None:
        await job.finished.wait()
        if job.client_message_id in self._again:  # held again: keeps its place
            self._again.discard(job.client_message_id)
            return
        with anyio.CancelScope(shield=True):
            await self.store.release_held(job.client_message_id)
