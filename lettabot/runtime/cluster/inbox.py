"""The durable inbox: accepted messages as procrastinate jobs in PostgreSQL.

- :meth:`Inbox.defer` writes the job before the platform is told the message was seen;
  the job's procrastinate ``lock`` is its scope, so jobs of one scope run one at a time,
  in the order they were deferred, on whichever replica's worker is free.
- :meth:`Inbox.run` is this replica's worker (``concurrency`` turns at once) plus the
  takeover loop: a job still ``doing`` on a worker whose heartbeat is older than
  ``takeover_seconds`` (its replica died) is put back, and the next worker runs it with
  ``attempts > 0``, so the runtime can tell the thread.

Completed jobs are deleted; the store keeps what matters (routes, approvals).

Faults (a replica frozen for a while, the database or a connection gone):

- A job is finished (or retried) only by the worker that holds it: the finish is a no-op
  once the job was taken over (it is not ``doing`` for this worker any more).
- Each running job has a :class:`Lease`: heartbeats this worker got through keep it
  fresh; a turn whose lease went stale (the process was frozen, or cut off from the
  database, for about ``takeover_seconds``) asks the database whether the job is still
  this worker's before it posts, and posts nothing if it was taken over.
- A failed heartbeat, job fetch or LISTEN connection never stops the worker: it tries
  again. A worker whose row was removed (taken over while frozen) stops and a new one
  registers; so does a worker that stopped for any other reason.
- The takeover loop takes nothing over until this replica reached the database without
  a failure for ``takeover_seconds``: after an outage every heartbeat is stale, and live
  replicas need a moment to send theirs again.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import procrastinate
import psycopg
from procrastinate import jobs as pjobs
from procrastinate import manager as pmanager
from procrastinate import worker as pworker

from lettabot.runtime.adapter import InboundMessage
from lettabot.runtime.hosts import RETRY_SECONDS as HOST_RETRY_SECONDS
from lettabot.runtime.hosts import WaitForHost

__all__ = ["Inbox", "Lease", "RunJob", "libpq_url"]

log = logging.getLogger("lettabot.runtime.cluster.inbox")

QUEUE = "lettabot_turns"
TASK = "lettabot.turn"
_SCHEMA_LOCK = zlib.crc32(b"lettabot procrastinate schema")

RunJob = Callable[[InboundMessage, str, int, "Lease"], Awaitable[None]]
"""Run one message's turn here (``message``, ``client_message_id``, earlier attempts, and
this replica's :class:`Lease` on the job)."""

NEVER = 10 * 365 * 86400.0
"""procrastinate's worker prunes "stalled" workers when it starts; ours must not (after an
outage every worker looks stalled): the takeover loop prunes, by its own rules."""
MARGIN = 0.5
"""Seconds a lease ends before another replica could take its job over."""
CONFIRM_WITHIN = 60.0
"""How long a stale lease waits for the database to say whose the job is."""

_HEARTBEAT = """UPDATE procrastinate_workers SET last_heartbeat = now()
    WHERE id = %(worker_id)s RETURNING id"""
_OWNER = "SELECT status, worker_id, attempts FROM procrastinate_jobs WHERE id = %(job_id)s"
_FINISH_MINE = """WITH mine AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'doing'
       AND attempts = %(attempts)s
       FOR UPDATE)
SELECT procrastinate_finish_job_v1(id, %(status)s::procrastinate_job_status,
                                   %(delete_job)s) IS NULL AS done FROM mine"""
_RETRY_MINE = """WITH mine AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'doing'
       AND attempts = %(attempts)s
       FOR UPDATE)
SELECT procrastinate_retry_job_v2(id, %(retry_at)s, %(priority)s::integer,
                                  %(queue)s::varchar, %(lock)s::varchar) IS NULL AS done
  FROM mine"""
_TAKE_OVER = """WITH stalled AS (
    SELECT j.id FROM procrastinate_jobs j
     WHERE j.id = %(job_id)s AND j.status = 'doing'
       AND (j.worker_id IS NULL OR EXISTS (
            SELECT 1 FROM procrastinate_workers w
             WHERE w.id = j.worker_id
               AND w.last_heartbeat < now() - make_interval(secs => %(seconds)s)))
       FOR UPDATE)
SELECT procrastinate_retry_job_v2(id, now(), NULL::integer, NULL::varchar,
                                  NULL::varchar) IS NULL AS done FROM stalled"""


def _clock() -> float:
    """Seconds on a clock that runs on while the process is stopped or the host sleeps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (not that it refused)."""
    cause = exc.__cause__ or exc
    return isinstance(cause, (psycopg.OperationalError, OSError))


def libpq_url(url: str) -> str:
    """``postgresql+asyncpg://…`` (SQLAlchemy) → ``postgresql://…`` (libpq, asyncpg)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgresql") else url


class Lease:
    """This replica's hold on one running job: fresh while the worker's heartbeats get
    through (no replica takes over a job whose worker's heartbeat is younger than
    ``takeover_seconds``); :meth:`confirm` before posting what the job produced."""

    def __init__(self, inbox: Inbox, job_id: int, worker_id: int, attempts: int,
                 until: float) -> None:
        self.inbox = inbox
        self.job_id = job_id
        self.worker_id = worker_id
        self.attempts = attempts
        self.until = until
        self.lost = False
        """The job is not this replica's any more (taken over)."""
        self.on_lost: Callable[[], None] | None = None
        """Called once when the job is found taken over (to stop its turn here)."""

    def lose(self) -> None:
        """The job was taken over: nothing of it is posted here any more."""
        if not self.lost:
            self.lost = True
            if self.on_lost is not None:
                self.on_lost()

    def fresh(self) -> bool:
        """Whether the job is surely still this replica's (no database round trip)."""
        return not self.lost and _clock() < self.until

    async def confirm(self) -> bool:
        """Whether the job is still this replica's: at once while the lease is fresh,
        else as the database says (waiting up to :data:`CONFIRM_WITHIN` s while it cannot
        be reached; then True: an answer posted twice beats one never posted)."""
        if self.fresh():
            return True
        if self.lost:
            return False
        delay = 0.25
        with anyio.move_on_after(CONFIRM_WITHIN):
            while True:
                asked = _clock()
                try:
                    mine = await self.inbox.holds(self.job_id, self.worker_id, self.attempts)
                except Exception as exc:
                    log.info("cluster: cannot ask whose job %s is (%s); asking again",
                             self.job_id, exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not mine:
                    self.lost = True  # its turn is ending: nothing to stop
                    log.warning("cluster: job %s was taken over by another replica while "
                                "this one was stopped or cut off; what it did here is not "
                                "posted", self.job_id)
                    return False
                self.until = max(self.until, min(
                    asked + self.inbox.takeover_seconds - MARGIN,
                    self.inbox.held_until(self.worker_id)))
                return True
        log.warning("cluster: could not ask whose job %s is for %g s; posting its answer",
                    self.job_id, CONFIRM_WITHIN)
        return True


class _Manager(pmanager.JobManager):
    """procrastinate's job manager, for faults: heartbeats and fetches that fail are
    retried (not raised into the worker, which would stop); the LISTEN connection is
    opened again; a job is finished or retried only by the worker that holds it."""

    def __init__(self, connector: Any, inbox: Inbox) -> None:
        super().__init__(connector)
        self.inbox = inbox

    async def register_worker(self) -> int:
        sent = _clock()
        worker_id = await super().register_worker()
        self.inbox._heartbeat_ok(worker_id, sent)
        return worker_id

    async def update_heartbeat(self, worker_id: int) -> None:
        sent = _clock()
        try:
            rows = await self.connector.execute_query_all_async(_HEARTBEAT,
                                                                worker_id=worker_id)
        except Exception as exc:
            self.inbox._db_failed("a heartbeat", exc)
            return
        if rows:
            self.inbox._heartbeat_ok(worker_id, sent)
        else:
            self.inbox._worker_gone(worker_id)

    async def fetch_job(self, queues: Iterable[str] | None,
                        worker_id: int) -> pjobs.Job | None:
        if self.inbox._is_gone(worker_id):
            return None
        try:
            return await super().fetch_job(queues, worker_id)
        except Exception as exc:
            if isinstance(exc.__cause__, psycopg.errors.ForeignKeyViolation):
                self.inbox._worker_gone(worker_id)
            else:
                self.inbox._db_failed("fetching a job", exc)
            return None

    async def finish_job(self, job: pjobs.Job, status: pjobs.Status,
                         delete_job: bool) -> None:
        await self._settle(job, "finish", _FINISH_MINE, status=status.value,
                           delete_job=delete_job)

    async def retry_job(self, job: pjobs.Job, retry_at: Any = None, priority: int | None = None,
                        queue: str | None = None, lock: str | None = None) -> None:
        from procrastinate import utils

        await self._settle(job, "retry", _RETRY_MINE, retry_at=retry_at or utils.utcnow(),
                           priority=priority, queue=queue, lock=lock)

    async def _settle(self, job: pjobs.Job, what: str, query: Any, **args: Any) -> None:
        """Finish or retry ``job`` if it is still this worker's (else nothing: another
        took it over); while the database cannot be reached, try again."""
        assert job.id is not None
        delay, tries = 0.5, 0
        while True:
            tries += 1
            try:
                rows = await self.connector.execute_query_all_async(
                    query, job_id=job.id, worker_id=job.worker_id, attempts=job.attempts,
                    **args)
            except Exception as exc:
                if not _unreachable(exc) or (self.inbox.closing and tries >= 3):
                    raise
                self.inbox._db_failed(f"recording the end of job {job.id}", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not rows:
                log.warning("cluster: job %s is not this replica's any more (taken over); "
                            "its %s here is dropped", job.id, what)
            return

    async def listen_for_jobs(self, *, on_notification: pmanager.NotificationCallback,
                              queues: Iterable[str] | None = None) -> None:
        delay = 1.0
        while True:
            started = _clock()
            try:
                await super().listen_for_jobs(on_notification=on_notification, queues=queues)
            except Exception as exc:
                self.inbox._db_failed("listening for new jobs", exc)
            if _clock() - started > 60:
                delay = 1.0
            await anyio.sleep(delay)
            delay = min(delay * 2, 10.0)
            # notifications were missed meanwhile: look for jobs
            await on_notification(channel="", notification={"type": "job_inserted",
                                                             "job_id": 0})

    async def holds(self, job_id: int, worker_id: int, attempts: int) -> bool:
        rows = await self.connector.execute_query_all_async(_OWNER, job_id=job_id)
        return bool(rows) and (rows[0]["status"], rows[0]["worker_id"],
                               rows[0]["attempts"]) == ("doing", worker_id, attempts)

    async def take_over(self, job: pjobs.Job, seconds: float) -> bool:
        rows = await self.connector.execute_query_all_async(_TAKE_OVER, job_id=job.id,
                                                            seconds=seconds)
        return bool(rows)


class Inbox:
    def __init__(self, url: str, replica: str, run_job: RunJob, *, concurrency: int,
                 heartbeat_seconds: float, takeover_seconds: float) -> None:
        self.dsn = libpq_url(url)
        self.replica = replica
        self._run_job = run_job
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.takeover_seconds = takeover_seconds
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=self.dsn, min_size=1, max_size=max(4, concurrency + 2),
            timeout=10.0))
        self.manager = _Manager(self.app.connector, self)
        self.app.job_manager = self.manager
        # a job whose agent's host is unreachable is tried again later (never given up)
        retry = procrastinate.RetryStrategy(wait=int(HOST_RETRY_SECONDS),
                                            retry_exceptions={WaitForHost})
        self.app.task(name=TASK, queue=QUEUE, pass_context=True, retry=retry)(self._turn)
        self.taken_over = 0
        self.closing = False
        self.worker: pworker.Worker | None = None
        self.registrations = 0
        """Workers this replica registered (more than one: it registered again)."""
        self._leases: dict[int, Lease] = {}
        self._held: dict[int, float] = {}  # worker id -> until when its heartbeat holds
        self._gone: set[int] = set()
        self._healthy_since: float | None = _clock()
        self._last_ok = _clock()
        self._failing = False

    async def open(self) -> None:
        """Connect, and create procrastinate's tables once (under a lock: replicas that
        start together create them once)."""
        await self.app.open_async()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _SCHEMA_LOCK)
            try:
                exists = await conn.fetchval("SELECT to_regclass('procrastinate_jobs')")
                if exists is None:
                    log.info("cluster: creating the inbox tables (procrastinate)")
                    await self.app.schema_manager.apply_schema_async()
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SCHEMA_LOCK)
        finally:
            await conn.close()

    async def close(self) -> None:
        self.closing = True
        with anyio.CancelScope(shield=True):
            await self.app.close_async()

    async def defer(self, message: InboundMessage, client_message_id: str) -> int:
        """Store the message's job; returns its id. Raises if PostgreSQL did not take it."""
        task = self.app.tasks[TASK]
        return await task.configure(lock=message.scope.key).defer_async(
            message=message.model_dump_json(), client_message_id=client_message_id)

    async def _turn(self, context: Any, message: str, client_message_id: str) -> None:
        job = context.job
        attempts = int(getattr(job, "attempts", 0) or 0)
        lease = Lease(self, job.id, job.worker_id, attempts, self.held_until(job.worker_id))
        if job.worker_id in self._gone:
            lease.lost = True  # nothing runs yet: nothing to stop
        self._leases[job.id] = lease
        try:
            await self._run_job(InboundMessage.model_validate_json(message),
                                client_message_id, attempts, lease)
        finally:
            if self._leases.get(job.id) is lease:
                del self._leases[job.id]

    # -- the worker ----------------------------------------------------------------------

    async def run(self) -> None:
        """This replica's worker and the takeover loop, until cancelled. A worker that
        stops (its row was removed, or anything else) is replaced by a new one."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._take_over)
            delay = 1.0
            while True:
                worker = pworker.Worker(
                    self.app, queues=[QUEUE], name=self.replica, concurrency=self.concurrency,
                    install_signal_handlers=False, listen_notify=True,
                    fetch_job_polling_interval=2.0, delete_jobs="successful",
                    update_heartbeat_interval=self.heartbeat_seconds,
                    stalled_worker_timeout=NEVER, shutdown_graceful_timeout=5.0)
                self.worker = worker
                started = _clock()
                try:
                    await worker.run()
                    log.warning("cluster: the inbox's worker stopped; starting a new one")
                except Exception as exc:
                    self._db_failed("running the inbox's worker", exc)
                    log.warning("cluster: the inbox's worker stopped (%s: %s); starting a new "
                                "one", type(exc).__name__, exc)
                finally:
                    self.worker = None
                if _clock() - started > 60:
                    delay = 1.0
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def held_until(self, worker_id: int | None) -> float:
        """Until when no other replica may take over ``worker_id``'s jobs (its heartbeats)."""
        return self._held.get(worker_id, 0.0) if worker_id is not None else 0.0

    async def holds(self, job_id: int, worker_id: int, attempts: int) -> bool:
        """Whether ``job_id`` runs on ``worker_id`` as fetched (``attempts``: not taken
        over and fetched by the same worker again); asks the database."""
        return await self.manager.holds(job_id, worker_id, attempts)

    def _heartbeat_ok(self, worker_id: int, sent: float) -> None:
        now = _clock()
        if worker_id not in self._held:
            self.registrations += 1
            log.info("cluster: worker %s of replica %s registered", worker_id, self.replica)
        until = sent + self.takeover_seconds - MARGIN
        before = self._held.get(worker_id, 0.0)
        self._held[worker_id] = until
        for lease in self._leases.values():  # held without a gap: still held
            if lease.worker_id == worker_id and lease.until >= sent and before >= sent:
                lease.until = max(lease.until, until)
        if self._failing or now - self._last_ok > 2 * self.heartbeat_seconds + 1:
            self._healthy_since = now  # back after a failure, or after a freeze
        if self._failing:
            log.warning("cluster: the database answers again")
        self._failing = False
        self._last_ok = now

    def _db_failed(self, what: str, exc: BaseException) -> None:
        if not self._failing:
            log.warning("cluster: the database failed (%s: %s: %s); trying again", what,
                        type(exc).__name__, (str(exc).strip().splitlines() or [""])[0])
        self._failing = True
        self._healthy_since = None

    def _is_gone(self, worker_id: int) -> bool:
        return worker_id in self._gone

    def _worker_gone(self, worker_id: int) -> None:
        """``worker_id``'s row was removed: another replica took its jobs over (this one
        was frozen or cut off for ``takeover_seconds``). Its turns here post nothing;
        a new worker registers."""
        if worker_id in self._gone:
            return
        self._gone.add(worker_id)
        self._held.pop(worker_id, None)
        for lease in list(self._leases.values()):
            if lease.worker_id == worker_id:
                lease.lose()
        log.warning("cluster: worker %s of replica %s was removed from the database (no "
                    "heartbeat for %g s); its jobs were taken over; registering a new worker",
                    worker_id, self.replica, self.takeover_seconds)
        worker = self.worker
        if worker is not None and worker.worker_id == worker_id:
            worker.stop()

    def _may_take_over(self) -> bool:
        """Whether other workers' stale heartbeats mean anything: this replica reached the
        database without a failure for ``takeover_seconds`` (others had the time to send
        theirs), and was not just frozen itself."""
        now = _clock()
        return (self._healthy_since is not None
                and now - self._healthy_since >= self.takeover_seconds
                and now - self._last_ok <= 2 * self.heartbeat_seconds + 1)

    async def _take_over(self) -> None:
        manager = self.manager
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            if not self._may_take_over():
                continue
            own = self.worker.worker_id if self.worker is not None else None
            try:
                stalled = await manager.get_stalled_jobs(
                    queue=QUEUE, seconds_since_heartbeat=self.takeover_seconds)
                for job in stalled:
                    if job.worker_id is not None and job.worker_id == own:
                        continue
                    if not await manager.take_over(job, self.takeover_seconds):
                        continue  # another replica took it first, or its worker woke
                    self.taken_over += 1
                    log.warning("cluster: job %s (%s) of a stopped replica is run again",
                                job.id, job.lock)
                await manager.prune_stalled_workers(self.takeover_seconds)
            except Exception as exc:
                self._db_failed("looking for stalled jobs", exc)

    async def pending(self) -> int:
        """Jobs waiting or running (all replicas)."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE queue_name = %(q)s "
            "AND status IN ('todo', 'doing')", q=QUEUE)
        return int(rows[0]["n"]) if rows else 0
