"""The durable inbox: accepted messages as procrastinate jobs in PostgreSQL.

- :meth:`Inbox.defer` writes the job before the platform is told the message was seen;
  the job's procrastinate ``lock`` is its scope, so jobs of one scope run one at a time,
  in the order they were deferred (the lock holds across queues).
- Scope affinity: the worker that runs a scope's job claims the scope
  (``lettabot_scope_owners``: scope → worker, epoch; :meth:`Inbox.claim`, under the job's
  lock). A scope's next job goes into its owner's own queue (``lettabot_turns@<worker
  id>``) while the owner's heartbeat is fresh (:attr:`Inbox.affine_seconds`), else into the
  shared queue; every worker takes jobs from its own queue and the shared one. The epoch
  changes whenever another worker claims the scope, so a replica can tell that a session it
  kept open is stale (the scope ran elsewhere meanwhile).
- Wake-ups: a finished job wakes the worker of its scope's next job (NOTIFY on that job's
  queue; procrastinate only notifies inserts), and workers poll every
  :data:`POLL_SECONDS` for what a missed notification left.
- :meth:`Inbox.run` is this replica's worker (``concurrency`` turns at once) plus the
  takeover loop: a job still ``doing`` on a worker whose heartbeat is older than
  ``takeover_seconds`` (its replica died) is put back, into the shared queue, and the next
  worker runs it with ``attempts > 0``, so the runtime can tell the thread. Jobs waiting in
  the own queue of a worker whose heartbeat is no longer fresh move to the shared queue.

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

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
from lettabot.runtime.tracing import carrier

__all__ = ["Inbox", "Lease", "RunJob", "libpq_url", "worker_queue"]

log = logging.getLogger("lettabot.runtime.cluster.inbox")

QUEUE = "lettabot_turns"
"""The shared queue: every worker takes jobs from it (and from its own)."""
TASK = "lettabot.turn"
POLL_SECONDS = 0.5
"""How often a worker looks for jobs without a notification (missed ones)."""
PRUNE_EVERY = 600.0
OWNERS_KEPT = "1 day"
"""Scope owners not claimed for this long are forgotten (the scope goes to any worker)."""
_SCHEMA_LOCK = zlib.crc32(b"lettabot procrastinate schema")

class RunJob(Protocol):
    """Run one message's turn here: ``message``, its ``client_message_id``, earlier
    ``attempts``, this replica's :class:`Lease` on the job, and where the message was
    accepted (its ``trace`` context and ``accepted_ns``)."""

    async def __call__(self, message: InboundMessage, client_message_id: str, attempts: int,
                       lease: Lease, *, trace: Mapping[str, str],
                       accepted_ns: int | None) -> None: ...

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
_OWNERS_TABLE = """CREATE TABLE IF NOT EXISTS lettabot_scope_owners (
    scope varchar PRIMARY KEY,
    worker_id bigint NOT NULL,
    epoch bigint NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now());
CREATE SEQUENCE IF NOT EXISTS lettabot_scope_epochs"""
_OWNER_QUEUE = """SELECT o.worker_id FROM lettabot_scope_owners o
  JOIN procrastinate_workers w ON w.id = o.worker_id
 WHERE o.scope = %(scope)s
   AND w.last_heartbeat > now() - make_interval(secs => %(seconds)s)"""
# Only the worker holding the scope's job claims it (a frozen one that lost its job does
# not); an epoch comes from a sequence, so it never repeats, even after a row was pruned.
_CLAIM = """INSERT INTO lettabot_scope_owners AS o (scope, worker_id, epoch, claimed_at)
SELECT %(scope)s, %(worker_id)s, nextval('lettabot_scope_epochs'), now()
 WHERE EXISTS (SELECT 1 FROM procrastinate_jobs
                WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'doing'
                  AND attempts = %(attempts)s)
ON CONFLICT (scope) DO UPDATE SET
    worker_id = EXCLUDED.worker_id, claimed_at = EXCLUDED.claimed_at,
    epoch = CASE WHEN o.worker_id = EXCLUDED.worker_id THEN o.epoch ELSE EXCLUDED.epoch END
RETURNING epoch"""
_WAKE_NEXT = """SELECT pg_notify('procrastinate_queue_v1#' || queue_name,
                 json_build_object('type', 'job_inserted', 'job_id', id)::text)
  FROM (SELECT id, queue_name FROM procrastinate_jobs
         WHERE lock = %(lock)s AND status = 'todo'
         ORDER BY priority DESC, id LIMIT 1) AS next"""
_MOVE_STRANDED = """WITH moved AS (
    UPDATE procrastinate_jobs j SET queue_name = %(shared)s
     WHERE j.status = 'todo' AND starts_with(j.queue_name, %(prefix)s)
       AND NOT EXISTS (
           SELECT 1 FROM procrastinate_workers w
            WHERE j.queue_name = %(prefix)s || w.id::text
              AND w.last_heartbeat > now() - make_interval(secs => %(seconds)s))
    RETURNING j.id)
SELECT count(*) AS n,
       pg_notify('procrastinate_queue_v1#' || %(shared)s,
                 json_build_object('type', 'job_inserted', 'job_id', min(id))::text)
  FROM moved HAVING count(*) > 0"""
_PRUNE_OWNERS = f"""DELETE FROM lettabot_scope_owners
 WHERE claimed_at < now() - interval '{OWNERS_KEPT}'"""
_TAKE_OVER = """WITH stalled AS (
    SELECT j.id FROM procrastinate_jobs j
     WHERE j.id = %(job_id)s AND j.status = 'doing'
       AND (j.worker_id IS NULL OR EXISTS (
            SELECT 1 FROM procrastinate_workers w
             WHERE w.id = j.worker_id
               AND w.last_heartbeat < now() - make_interval(secs => %(seconds)s)))
       FOR UPDATE)
SELECT procrastinate_retry_job_v2(id, now(), NULL::integer, %(queue)s::varchar,
                                  NULL::varchar) IS NULL AS done FROM stalled"""


def worker_queue(worker_id: int) -> str:
    """The own queue of worker ``worker_id`` (jobs of the scopes it owns)."""
    return f"{QUEUE}@{worker_id}"


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
        worker = self.inbox.worker
        if worker is not None and worker.worker_id is None:  # the worker registering
            # its own queue is known once it has an id (fetches and LISTEN come after)
            worker.queues = [QUEUE, worker_queue(worker_id)]
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
        await self._wake_next(job.lock)

    async def retry_job(self, job: pjobs.Job, retry_at: Any = None, priority: int | None = None,
                        queue: str | None = None, lock: str | None = None) -> None:
        from procrastinate import utils

        await self._settle(job, "retry", _RETRY_MINE, retry_at=retry_at or utils.utcnow(),
                           priority=priority, queue=queue, lock=lock)
        await self._wake_next(job.lock)

    async def _wake_next(self, lock: str | None) -> None:
        """Wake the worker that may take the next job of ``lock`` (procrastinate notifies
        only inserts: a job that waited behind this one would wait for a poll)."""
        if lock is None:
            return
        try:
            await self.connector.execute_query_all_async(_WAKE_NEXT, lock=lock)
        except Exception as exc:  # the poll finds it
            self.inbox._db_failed("waking the next job's worker", exc)

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
        """Put a stalled job back, into the shared queue (not its dead owner's)."""
        rows = await self.connector.execute_query_all_async(_TAKE_OVER, job_id=job.id,
                                                            seconds=seconds, queue=QUEUE)
        if rows:
            await self._wake_next(job.lock)
        return bool(rows)

    async def move_stranded(self, seconds: float) -> int:
        """Move jobs waiting in the own queue of a worker without a heartbeat for
        ``seconds`` to the shared queue; returns how many."""
        rows = await self.connector.execute_query_all_async(
            _MOVE_STRANDED, shared=QUEUE, prefix=worker_queue(0)[:-1], seconds=seconds)
        return int(rows[0]["n"]) if rows else 0


class Inbox:
    def __init__(self, url: str, replica: str, run_job: RunJob, *, concurrency: int,
                 heartbeat_seconds: float, takeover_seconds: float) -> None:
        self.dsn = libpq_url(url)
        self.replica = replica
        self._run_job = run_job
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.takeover_seconds = takeover_seconds
        self.affine_seconds = min(takeover_seconds, 2 * heartbeat_seconds + 1)
        """A scope's jobs go to its owner's queue while its heartbeat is this fresh."""
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
        self.moved = 0
        """Jobs moved from a silent worker's own queue to the shared one."""
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
                await conn.execute(_OWNERS_TABLE)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SCHEMA_LOCK)
        finally:
            await conn.close()

    async def close(self) -> None:
        self.closing = True
        with anyio.CancelScope(shield=True):
            await self.app.close_async()

    async def defer(self, message: InboundMessage, client_message_id: str, *,
                    queue: str | None = None) -> int:
        """Store the message's job, in its scope owner's queue if the owner lives (else
        the shared one; ``queue``: this one); returns its id. Raises if PostgreSQL did not
        take it."""
        key = message.scope.key
        if queue is None:
            queue = await self.queue_for(key)
        task = self.app.tasks[TASK]
        return await task.configure(lock=key, queue=queue).defer_async(
            message=message.model_dump_json(), client_message_id=client_message_id,
            trace=dict[str, Any](carrier()), accepted_ns=time.time_ns())

    async def queue_for(self, scope_key: str) -> str:
        """The queue of the scope's owner while its heartbeat is fresh, else the shared."""
        rows = await self.app.connector.execute_query_all_async(
            _OWNER_QUEUE, scope=scope_key, seconds=self.affine_seconds)
        return worker_queue(int(rows[0]["worker_id"])) if rows else QUEUE

    async def claim(self, scope_key: str, lease: Lease) -> int | None:
        """Make this worker the owner of ``scope_key`` (its job runs here, holding the
        scope's lock); returns the scope's epoch, which changes whenever the owner does.
        None: the job is not this worker's any more (taken over)."""
        rows = await self.app.connector.execute_query_all_async(
            _CLAIM, scope=scope_key, worker_id=lease.worker_id, job_id=lease.job_id,
            attempts=lease.attempts)
        return int(rows[0]["epoch"]) if rows else None

    async def _turn(self, context: Any, message: str, client_message_id: str,
                    trace: dict[str, str] | None = None,
                    accepted_ns: int | None = None) -> None:
        job = context.job
        attempts = int(getattr(job, "attempts", 0) or 0)
        lease = Lease(self, job.id, job.worker_id, attempts, self.held_until(job.worker_id))
        if job.worker_id in self._gone:
            lease.lost = True  # nothing runs yet: nothing to stop
        self._leases[job.id] = lease
        try:
            await self._run_job(InboundMessage.model_validate_json(message),
                                client_message_id, attempts, lease, trace=trace or {},
                                accepted_ns=accepted_ns)
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
                    fetch_job_polling_interval=POLL_SECONDS, delete_jobs="successful",
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
        pruned = _clock()
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            if not self._failing:  # moving a waiting job is always safe
                try:
                    moved = await manager.move_stranded(self.affine_seconds)
                    if moved:
                        self.moved += moved
                        log.info("cluster: %d job(s) waiting for a silent worker moved to "
                                 "the shared queue", moved)
                    if _clock() - pruned > PRUNE_EVERY:
                        pruned = _clock()
                        await manager.connector.execute_query_async(_PRUNE_OWNERS)
                except Exception as exc:
                    self._db_failed("moving waiting jobs", exc)
            if not self._may_take_over():
                continue
            own = self.worker.worker_id if self.worker is not None else None
            try:
                stalled = await manager.get_stalled_jobs(
                    task_name=TASK, seconds_since_heartbeat=self.takeover_seconds)
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
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %(t)s "
            "AND status IN ('todo', 'doing')", t=TASK)
        return int(rows[0]["n"]) if rows else 0
