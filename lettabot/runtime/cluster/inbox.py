"""The durable inbox: accepted messages as procrastinate jobs in PostgreSQL.

- :meth:`Inbox.defer` writes the job before the platform is told the message was seen;
  the job's procrastinate ``lock`` is its scope, so jobs of one scope run one at a time,
  in the order they were deferred, on whichever replica's worker is free.
- :meth:`Inbox.run` is this replica's worker (``concurrency`` turns at once) plus the
  takeover loop: a job still ``doing`` on a worker whose heartbeat is older than
  ``takeover_seconds`` (its replica died) is put back, and the next worker runs it with
  ``attempts > 0``, so the runtime can tell the thread.

Completed jobs are deleted; the store keeps what matters (routes, approvals).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import procrastinate

from lettabot.runtime.adapter import InboundMessage

__all__ = ["Inbox", "RunJob", "libpq_url"]

log = logging.getLogger("lettabot.runtime.cluster.inbox")

QUEUE = "lettabot_turns"
TASK = "lettabot.turn"
_SCHEMA_LOCK = zlib.crc32(b"lettabot procrastinate schema")

RunJob = Callable[[InboundMessage, str, int], Awaitable[None]]
"""Run one message's turn here (``message``, ``client_message_id``, earlier attempts)."""


def libpq_url(url: str) -> str:
    """``postgresql+asyncpg://…`` (SQLAlchemy) → ``postgresql://…`` (libpq, asyncpg)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgresql") else url


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
            conninfo=self.dsn, min_size=1, max_size=max(4, concurrency + 2)))
        self.app.task(name=TASK, queue=QUEUE, pass_context=True)(self._turn)
        self.taken_over = 0

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
        with anyio.CancelScope(shield=True):
            await self.app.close_async()

    async def defer(self, message: InboundMessage, client_message_id: str) -> int:
        """Store the message's job; returns its id. Raises if PostgreSQL did not take it."""
        task = self.app.tasks[TASK]
        return await task.configure(lock=message.scope.key).defer_async(
            message=message.model_dump_json(), client_message_id=client_message_id)

    async def _turn(self, context: Any, message: str, client_message_id: str) -> None:
        attempts = int(getattr(context.job, "attempts", 0) or 0)
        await self._run_job(InboundMessage.model_validate_json(message), client_message_id,
                            attempts)

    async def run(self) -> None:
        """This replica's worker and the takeover loop, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._take_over)
            await self.app.run_worker_async(
                queues=[QUEUE], name=self.replica, concurrency=self.concurrency,
                install_signal_handlers=False, listen_notify=True,
                fetch_job_polling_interval=2.0, delete_jobs="successful",
                update_heartbeat_interval=self.heartbeat_seconds,
                stalled_worker_timeout=self.takeover_seconds,
                shutdown_graceful_timeout=5.0)
            tg.cancel_scope.cancel()

    async def _take_over(self) -> None:
        manager = self.app.job_manager
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            try:
                stalled = await manager.get_stalled_jobs(
                    queue=QUEUE, seconds_since_heartbeat=self.takeover_seconds)
                for job in stalled:
                    try:
                        await manager.retry_job(job)
                    except Exception as exc:  # another replica took it first
                        log.debug("cluster: job %s was not retried: %s", job.id, exc)
                        continue
                    self.taken_over += 1
                    log.warning("cluster: job %s (%s) of a stopped replica is run again",
                                job.id, job.lock)
                await manager.prune_stalled_workers(self.takeover_seconds)
            except Exception:
                log.warning("cluster: looking for stalled jobs failed", exc_info=True)

    async def pending(self) -> int:
        """Jobs waiting or running (all replicas)."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE queue_name = %(q)s "
            "AND status IN ('todo', 'doing')", q=QUEUE)
        return int(rows[0]["n"]) if rows else 0
