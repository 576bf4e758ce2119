"""One WebSocket to an App Server, shared by every session of this event loop.

A reader task (in a task group the connection owns) reads every frame and hands it
on: answers to our requests by ``request_id``, everything about a conversation by its
``runtime`` to that conversation's bounded channel. Frames about nobody are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from lettabot.sdk._internal.app_server.frames import validate
from lettabot.sdk.errors import (
    AppServerUnreachableError,
    CLIConnectionError,
    ProtocolTimeoutError,
)

__all__ = ["BUSY_WAIT_FACTOR", "CHANNEL_BUFFER", "LOST", "PING_TIMEOUT", "Channel", "Connection",
           "RuntimeKey"]

log = logging.getLogger("lettabot.sdk.app_server")

CHANNEL_BUFFER = 2048
"""Frames a conversation may have waiting before it counts as stalled and is cut off."""
LOST = "_connection_lost"
"""The type of the synthetic frame a channel gets when the connection dies."""

RuntimeKey = tuple[str | None, str]
_ids = itertools.count(1)
PING_INTERVAL = 20.0
PING_TIMEOUT = 300.0
"""How long a ping may go unanswered before the connection counts as dead. Not the library's
20 s: a server running a thousand turns at once answered no ping for longer than that (its
one event loop was busy), and the closed connection lost every turn in flight (measured
with bench/capacity.py). A server that dies closes its socket; this is for a frozen one."""
BUSY_WAIT_FACTOR = 10
"""How many request timeouts a request waits in all while the server keeps sending frames."""
# Frames that matter to nobody here (state snapshots for UIs), dropped by the reader.
# (update_loop_status and update_queue are kept: they tie runs to inputs.)
_NOISE = frozenset({"update_device_status", "update_subagent_state"})
# Signs that a model answered on this server (the warm-up quirk is over).
_MODEL_ANSWERED = frozenset({"turn_finished", "control_request", "external_tool_call_request"})
_MODEL_OUTPUT = frozenset({"assistant_message", "reasoning_message", "tool_call_message",
                           "approval_request_message"})
# Answers that are also a conversation's business, in the order they came.
_ALSO_TO_CHANNEL = frozenset({"input_accepted"})


@dataclass(eq=False)
class Channel:
    """One subscriber's view of one conversation."""

    key: RuntimeKey
    send: MemoryObjectSendStream[dict[str, Any]]
    receive: MemoryObjectReceiveStream[dict[str, Any]]
    overflowed: bool = False


@dataclass(eq=False)
class _Pending:
    expect: str
    done: anyio.Event = field(default_factory=anyio.Event)
    frame: dict[str, Any] | None = None
    error: str | None = None


class Connection:
    """A WebSocket to one App Server; ``open()`` it, ``close()`` it."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url if url.rstrip("/").endswith("/ws") else url.rstrip("/") + "/ws"
        self.token = token
        self.dead = False
        self.death: str | None = None
        self.warmed = anyio.Event()
        self.warming = False
        self.lost = anyio.Event()
        """Set when the connection is dead (``death`` says why)."""
        self._ws: ClientConnection | None = None
        self._channels: dict[RuntimeKey, list[Channel]] = {}
        self.queues: dict[RuntimeKey, dict[str, str]] = {}
        """Each conversation's waiting inputs, client_message_id → queue item id (from the
        latest update_queue, read as frames arrive, whether or not anyone streams)."""
        self._pending: dict[str, _Pending] = {}
        self._stop = anyio.Event()
        self._host: asyncio.Task[None] | None = None
        self._send_lock = anyio.Lock()
        self.last_frame_at = 0.0
        """When the server last sent a frame (``anyio.current_time()``)."""

    # -- lifecycle ------------------------------------------------------------------

    async def open(self, timeout: float) -> None:  # noqa: ASYNC109
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            with anyio.fail_after(timeout):
                self._ws = await connect(
                    self.url, additional_headers=headers, max_size=None, open_timeout=None,
                    ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise CLIConnectionError(
                    f"the App Server at {self.url} refused the connection (HTTP 401): "
                    "missing or wrong token; set LETTA_APP_SERVER_TOKEN to its capability token",
                    status=status,
                ) from exc
            raise AppServerUnreachableError(
                f"the App Server at {self.url} answered HTTP {status}", url=self.url,
                status=status,
            ) from exc
        except TimeoutError as exc:
            raise AppServerUnreachableError(
                f"no App Server answered at {self.url} within {timeout}s", url=self.url
            ) from exc
        except (OSError, WebSocketException) as exc:
            raise AppServerUnreachableError(
                f"cannot reach the App Server at {self.url}: {exc}", url=self.url
            ) from exc
        # The reader's task group must be entered and left in one task, and sessions
        # open and close from any task: so it lives in one host task per connection.
        self._host = asyncio.get_running_loop().create_task(self._run_host())

    async def _run_host(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reader)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._mark_dead(self.death or "the App Server connection was closed")
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await self._ws.close()

    async def close(self) -> None:
        """Stop the reader, close the socket; idempotent."""
        self._stop.set()
        host, self._host = self._host, None
        if host is not None and host is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await host
        for channels in self._channels.values():
            for channel in channels:
                channel.send.close()

    # -- reading ----------------------------------------------------------------------

    async def _reader(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                self.last_frame_at = anyio.current_time()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("App Server sent a frame that is not JSON: %.200r", raw)
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except ConnectionClosed as exc:
            self.death = f"the App Server connection closed ({exc})"
        except Exception as exc:  # a broken socket must end turns, not hang them
            self.death = f"the App Server connection failed: {type(exc).__name__}: {exc}"
        else:
            self.death = "the App Server closed the connection"
        self._stop.set()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in _NOISE:
            return
        if kind in _MODEL_ANSWERED or (
            kind == "stream_delta" and isinstance(frame.get("delta"), dict)
            and frame["delta"].get("message_type") in _MODEL_OUTPUT
        ):
            self.warmed.set()  # the model answered once: the server resolved its models
        rid = frame.get("request_id")
        pending = self._pending.get(rid) if isinstance(rid, str) else None
        if pending is not None and pending.expect == kind:
            del self._pending[rid]  # type: ignore[arg-type]
            pending.frame = frame
            pending.done.set()
            if kind not in _ALSO_TO_CHANNEL:
                return
        runtime = frame.get("runtime")
        if not isinstance(runtime, dict):
            return
        key = (runtime.get("agent_id"), str(runtime.get("conversation_id")))
        if kind == "update_queue" and isinstance(frame.get("queue"), list):
            self.queues[key] = {str(i["client_message_id"]): str(i["id"])
                                for i in frame["queue"]
                                if isinstance(i, dict) and i.get("id")
                                and i.get("client_message_id")}
        for channel in self._channels.get(key, ()):
            self._put(channel, frame)

    def _put(self, channel: Channel, frame: dict[str, Any]) -> None:
        if channel.overflowed:
            return
        try:
            channel.send.send_nowait(frame)
        except anyio.WouldBlock:
            channel.overflowed = True
            log.error("conversation %s fell %d frames behind; cutting it off", channel.key,
                      CHANNEL_BUFFER)
            channel.send.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def _mark_dead(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.death = reason
        self.lost.set()
        self.warmed.set()  # nobody waits for a warm-up that will never come
        for pending in self._pending.values():
            pending.error = reason
            pending.done.set()
        self._pending.clear()
        for channels in self._channels.values():
            for channel in channels:
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError,
                                         anyio.BrokenResourceError):
                    channel.send.send_nowait({"type": LOST, "error": reason})

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, key: RuntimeKey) -> Channel:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](CHANNEL_BUFFER)
        channel = Channel(key, send, receive)
        self._channels.setdefault(key, []).append(channel)
        return channel

    def unsubscribe(self, channel: Channel) -> None:
        channels = self._channels.get(channel.key, [])
        if channel in channels:
            channels.remove(channel)
        if not channels:
            self._channels.pop(channel.key, None)
        channel.send.close()

    # -- writing ------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(_ids)}"

    async def send(self, frame: dict[str, Any]) -> None:
        """Validate and send one frame (no answer expected)."""
        validate(frame)
        if self.dead or self._ws is None:
            raise CLIConnectionError(self.death or "the App Server connection is closed")
        data = json.dumps(frame)
        try:
            async with self._send_lock:
                await self._ws.send(data)
        except ConnectionClosed as exc:
            self._mark_dead(f"the App Server connection closed ({exc})")
            raise CLIConnectionError(self.death or "connection closed") from exc

    async def request(
        self, frame: dict[str, Any], expect: str, timeout: float  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send ``frame`` and wait for the ``expect`` frame with its ``request_id``."""
        rid = frame["request_id"]
        pending = _Pending(expect)
        self._pending[rid] = pending
        try:
            await self.send(frame)
            # ``timeout`` is silence: the server runs commands one after another on one
            # event loop, so under a burst an answer comes late while others keep coming
            # (measured: input_accepted seconds after the input). Give up after ``timeout``
            # without any frame, or after BUSY_WAIT_FACTOR x ``timeout`` in all.
            give_up = anyio.current_time() + timeout * BUSY_WAIT_FACTOR
            deadline = anyio.current_time() + timeout
            while not pending.done.is_set():
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                    await pending.done.wait()
                deadline = min(self.last_frame_at + timeout, give_up)
                if pending.done.is_set() or deadline <= anyio.current_time():
                    break
        finally:
            self._pending.pop(rid, None)
        if pending.frame is not None:
            return pending.frame
        if pending.error is not None:
            raise CLIConnectionError(f"{frame['type']} got no answer: {pending.error}")
        raise ProtocolTimeoutError(
            f"the App Server did not answer {frame['type']} ({rid}) within {timeout}s "
            "(it drops commands it considers invalid without a reply)"
        )
