"""The ``app_server`` transport: a conversation on a shared ``letta server --listen``.

``connect`` sends ``runtime_start`` (creating the agent and/or conversation as the
target asks: :mod:`~lettabot.sdk._internal.app_server.handshake`) and subscribes to the
conversation's frames on the shared connection; ``send`` is an ``input`` /
``create_message`` recorded in the :mod:`~lettabot.sdk._internal.app_server.ledger`;
``receive`` turns frames into typed messages (the
:mod:`~lettabot.sdk._internal.app_server.machine`), answers ``can_use_tool`` and external
tool calls through the session's handler (:mod:`~lettabot.sdk._internal.app_server.answers`),
and ends every turn with one :class:`ResultMessage`. Requests outside turns are in
:mod:`~lettabot.sdk._internal.app_server.management`.

Options this transport cannot honour are listed by :func:`unsupported_options`; the
client runs such sessions on the subprocess transport instead.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.answers import ANSWERED, Answers
from lettabot.sdk._internal.app_server.connection import Channel, Connection
from lettabot.sdk._internal.app_server.handshake import Handshake, unsupported_options
from lettabot.sdk._internal.app_server.ledger import Input, InputLedger
from lettabot.sdk._internal.app_server.machine import ABORT_GRACE, GAVE_UP, FrameMachine
from lettabot.sdk._internal.app_server.management import (
    bootstrap_state,
    list_messages_on,
    recover_approvals_on,
    remove_queued_on,
)
from lettabot.sdk._internal.app_server.models import update_model_on
from lettabot.sdk._internal.app_server.pool import Lease, acquire
from lettabot.sdk._internal.app_server.recompile import recompile_on
from lettabot.sdk._internal.app_server.turn import TurnState
from lettabot.sdk._internal.cli_words import is_conversation_busy
from lettabot.sdk._internal.transport import ControlHandler, Target
from lettabot.sdk.errors import (
    AppServerUnreachableError,
    CLIConnectionError,
    ConversationBusyError,
    ProcessError,
    SessionClosedError,
)
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.types import InitMessage, Message

T = TypeVar("T")

__all__ = ["ABORT_GRACE", "AppServerTransport", "unsupported_options"]

log = logging.getLogger("lettabot.sdk.app_server")

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
"""Backoff for inputs the server refuses (quirk: right after an approval turn)."""


class AppServerTransport:
    """One conversation on a shared App Server."""

    def __init__(self, options: SessionOptions, target: Target, handler: ControlHandler,
                 lease: Callable[[], Lease] | None = None) -> None:
        self._options = options
        self._lease_source = lease or (lambda: acquire(options))
        self._timeout = options.request_timeout
        self._handshake = Handshake(options, target, options.cwd or Path.cwd())
        self._lease: Lease | None = None
        self._conn: Connection | None = None
        self._generation = -1
        self._channel: Channel | None = None
        self._channel_changed = anyio.Event()
        self._runtime: dict[str, Any] | None = None
        self._init: InitMessage | None = None
        self._ledger = InputLedger()
        self._machine = FrameMachine(self._ledger, lambda: self._init, self._release_warm_up)
        self._answers = Answers(handler, self._lost)
        self._closed = False
        self._warm_owner = False
        self._pending: deque[Message] = deque()

    # -- opening ------------------------------------------------------------------------

    async def connect(self) -> InitMessage:
        self._handshake.check()
        self._lease = self._lease_source()
        try:
            conn = await self._lease.connection(self._timeout)
            response = await self._handshake.open(conn)
        except BaseException:
            await self.close()
            raise
        self._attach(conn, response["runtime"])
        self._init = self._handshake.init_message(response)
        return self._init

    def _attach(self, conn: Connection, runtime: dict[str, Any]) -> None:
        if self._channel is not None and self._conn is not None:
            self._conn.unsubscribe(self._channel)
        self._conn = conn
        assert self._lease is not None
        self._generation = self._lease.generation
        self._runtime = {"agent_id": runtime.get("agent_id"),
                         "conversation_id": runtime["conversation_id"]}
        self._channel = conn.subscribe((self._runtime["agent_id"],
                                        self._runtime["conversation_id"]))
        self._channel_changed.set()
        self._channel_changed = anyio.Event()

    async def _live(self) -> Connection:
        """The connection, reopening the conversation on a new one if the server died."""
        if self._closed or self._lease is None or self._runtime is None:
            raise SessionClosedError("the session is closed")
        conn = await self._lease.connection(self._timeout)
        if conn is self._conn and self._lease.generation == self._generation:
            return conn
        log.warning("reopening conversation %s on a new App Server connection",
                    self._runtime["conversation_id"])
        response = await self._handshake.reopen(conn, self._runtime)
        self._attach(conn, response["runtime"])
        return conn

    # -- turns ----------------------------------------------------------------------------

    async def send(
        self, content: str | list[dict[str, Any]], *, client_message_id: str | None = None
    ) -> str:
        conn = await self._live()
        assert self._runtime is not None
        await self._warm_up(conn)
        cmid = client_message_id or f"lb-{uuid.uuid4().hex}"
        last_error = ""
        for delay in (*RETRY_DELAYS, None):
            rid = conn.new_id("input")
            frame = frames.create_message(rid, self._runtime, content, cmid)
            # Recorded before the answer: the channel's copy of input_accepted may be read
            # (by receive) before this coroutine resumes.
            entry = Input(cmid, rid, TurnState(partial=self._options.include_partial_messages))
            self._ledger.add(entry)
            try:
                answer = await conn.request(frame, "input_accepted", self._timeout)
            except CLIConnectionError as exc:
                self._ledger.forget(entry)
                if conn.dead:  # the server went away before it took the message
                    raise AppServerUnreachableError(
                        f"the App Server at {conn.url} went away before it took the message "
                        f"({exc})", url=conn.url) from exc
                raise
            except BaseException:
                self._ledger.forget(entry)
                raise
            if answer.get("accepted"):
                entry.accepted = True
                return cmid
            self._ledger.forget(entry)
            last_error = str(answer.get("error") or "refused")
            if delay is None:
                break
            log.info("App Server refused input %s (%s); retrying in %ss", cmid, last_error, delay)
            await anyio.sleep(delay)
        message = (f"the App Server refused the message after {len(RETRY_DELAYS) + 1} "
                   f"attempts: {last_error}")
        if is_conversation_busy(last_error):
            raise ConversationBusyError(message)
        raise CLIConnectionError(message)

    async def _warm_up(self, conn: Connection) -> None:
        """Let a fresh server finish one turn before it takes concurrent ones (quirk 1)."""
        if conn.warmed.is_set() or self._warm_owner:
            return
        if not conn.warming:
            conn.warming = True
            self._warm_owner = True
            return
        with anyio.move_on_after(self._timeout):
            await conn.warmed.wait()

    def _release_warm_up(self) -> None:
        """The first turn on a fresh server ended (or was given up): others may start."""
        if self._warm_owner and self._conn is not None:
            self._conn.warmed.set()

    async def interrupt(self) -> None:
        conn = await self._live()
        assert self._runtime is not None
        frame = frames.abort_message(conn.new_id("abort"), self._runtime)
        answer = await conn.request(frame, "abort_message_response", self._timeout)
        if answer.get("aborted"):
            self._machine.aborted()

    async def receive(self) -> AsyncGenerator[Message, None]:
        # Handled messages wait in self._pending, not in this generator: a consumer cancelled
        # between two of them (then a new receive()) loses none.
        while self._pending:
            yield self._pending.popleft()
        while not self._closed:
            channel = self._channel
            if channel is None:
                return
            frame = await self._next(channel)
            if frame is None:
                if self._closed:
                    return
                if channel.overflowed and self._ledger.open():
                    for msg in self._machine.fail("this session fell too far behind the "
                                                  "App Server"):
                        yield msg
                if channel is self._channel:  # the connection is gone: wait for a new one
                    await self._channel_changed.wait()
                continue
            if frame.get("type") in ANSWERED:
                conn, runtime = self._conn, self._runtime
                if conn is not None and runtime is not None and await self._answers.answer(
                        conn, runtime, frame):
                    await self.interrupt()
                continue
            self._pending.extend(self._machine.handle(frame))
            while self._pending:
                yield self._pending.popleft()

    async def _next(self, channel: Channel) -> dict[str, Any] | None:
        """The next frame; a synthetic ``cancelled`` end if an abort went unanswered."""
        try:
            deadline = self._machine.abort_deadline
            if deadline is None:
                return await channel.receive.receive()
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                return await channel.receive.receive()
            log.warning("no turn_finished %ss after an abort; ending the turn", ABORT_GRACE)
            return {"type": GAVE_UP}
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def _lost(self) -> str:
        conn = self._conn
        assert conn is not None
        await conn.lost.wait()
        return conn.death or "the App Server connection was lost"

    # -- requests outside turns -------------------------------------------------------------

    async def control(self, subtype: str, **fields: Any) -> dict[str, Any]:
        conn = await self._live()
        assert self._runtime is not None and self._init is not None
        if subtype == "interrupt":
            await self.interrupt()
            return {}
        if subtype == "list_messages":
            return await list_messages_on(conn, self._runtime, fields, self._timeout)
        if subtype == "recover_pending_approvals":
            return await recover_approvals_on(conn, self._runtime, self._timeout)
        if subtype == "bootstrap_session_state":
            return bootstrap_state(self._init, self._options.cli_permission_mode)
        raise ProcessError(f"control request {subtype!r} is not available over the App Server")

    async def manage(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        return await call(await self._live())

    async def remove_queued(self, client_message_id: str) -> bool:
        conn = await self._live()
        assert self._runtime is not None
        return await remove_queued_on(conn, self._runtime, client_message_id, self._timeout)

    async def recompile(self) -> None:
        conn = await self._live()
        assert self._runtime is not None
        await recompile_on(conn, self._runtime["agent_id"], self._runtime["conversation_id"],
                           self._timeout)

    async def set_model(self, handle: str) -> None:
        conn = await self._live()
        assert self._runtime is not None
        await update_model_on(conn, dict(self._runtime), handle, self._timeout)

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_warm_up()
        self._channel_changed.set()
        if self._conn is not None and self._channel is not None:
            self._conn.unsubscribe(self._channel)
        self._channel = None
        lease, self._lease = self._lease, None
        if lease is not None:
            with anyio.CancelScope(shield=True):
                await lease.release()
