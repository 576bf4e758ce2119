"""The ``app_server`` transport: a conversation on a shared ``letta server --listen``.

``connect`` sends ``runtime_start`` (creating the agent and/or conversation as the
target asks) and subscribes to the conversation's frames on the shared connection;
``send`` is an ``input`` / ``create_message``; ``receive`` turns ``stream_delta`` frames
into typed messages, answers ``can_use_tool`` and external tool calls through the
session's handler, and ends every turn with one :class:`ResultMessage`.

Options this transport cannot honour are listed by :func:`unsupported_options`; the
client runs such sessions on the subprocess transport instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import LOST, Channel, Connection
from lettabot.sdk._internal.app_server.models import model_for_new_agent, update_model_on
from lettabot.sdk._internal.app_server.pool import Lease, acquire
from lettabot.sdk._internal.app_server.recompile import recompile_on
from lettabot.sdk._internal.app_server.turn import TurnState
from lettabot.sdk._internal.cli import last_used_agent
from lettabot.sdk._internal.transport import CanUseToolRequest, ControlHandler, Target
from lettabot.sdk._internal.transport.guard import unless_lost
from lettabot.sdk.errors import (
    CLIConnectionError,
    ProcessError,
    ProtocolTimeoutError,
    SessionClosedError,
)
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.types import InitMessage, Message, PermissionAllow, ResultMessage

T = TypeVar("T")

__all__ = ["AppServerTransport", "unsupported_options"]

log = logging.getLogger("lettabot.sdk.app_server")

ABORT_GRACE = 5.0
"""How long after an acknowledged abort we wait for ``turn_finished`` before ending the turn."""
_GAVE_UP = "_abort_unanswered"
"""The type of the synthetic frame that ends a turn whose abort got no turn_finished."""
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
"""Backoff for inputs the server refuses (quirk: right after an approval turn)."""


def unsupported_options(options: SessionOptions, target: Target) -> list[str]:
    """Options this transport cannot map (the session must use ``subprocess``)."""
    out: list[str] = []
    preset = options.preset
    if preset is not None and (preset.preset != "default" or preset.append is not None):
        out.append("system_prompt preset (CLI flag --system only)")
    if options.system_prompt is not None and not target.new_agent:
        out.append("system_prompt for an existing agent (CLI flag --system only)")
    asks = options.cli_permission_mode != "unrestricted"
    if (options.allowed_tools is not None or options.disallowed_tools is not None) and asks and (
        options.can_use_tool is not None
    ):
        # execution_settings scope tools per conversation, but the server then denies
        # every approval ("Tool requires approval (headless mode)") instead of asking.
        out.append("allowed_tools/disallowed_tools together with can_use_tool")
    return out


def _remember_agent(cwd: Path, agent_id: str) -> None:
    path = cwd / ".letta" / "settings.local.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            return
        data["lastAgent"] = agent_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
    except (OSError, ValueError):
        log.debug("could not record the last-used agent in %s", path, exc_info=True)


@dataclass(eq=False)
class _Input:
    """One message sent, from ``input`` to its result."""

    cmid: str
    request_id: str
    state: TurnState
    accepted: bool = False
    started: bool = False
    ended: bool = False
    """Its ResultMessage was given."""
    owed: bool = True
    """The server has not finished it yet (it may, late, after an abort)."""
    run_ids: list[str] = field(default_factory=list)


class AppServerTransport:
    """One conversation on a shared App Server."""

    def __init__(self, options: SessionOptions, target: Target, handler: ControlHandler,
                 lease: Callable[[], Lease] | None = None) -> None:
        self._options = options
        self._lease_source = lease or (lambda: acquire(options))
        self._target = target
        self._handler = handler
        self._timeout = options.request_timeout
        self._cwd = options.cwd or Path.cwd()
        self._lease: Lease | None = None
        self._conn: Connection | None = None
        self._generation = -1
        self._channel: Channel | None = None
        self._channel_changed = anyio.Event()
        self._runtime: dict[str, Any] | None = None
        self._init: InitMessage | None = None
        self._inputs: deque[_Input] = deque()
        self._foreign_runs: set[str] = set()
        self._ghosts: set[str] = set()
        """Inputs whose turns ended here when the connection died (a restarted server may
        replay them)."""
        self._replaying = False
        self._abort_deadline: float | None = None
        self._closed = False
        self._warm_owner = False
        self._pending: deque[Message] = deque()

    # -- opening ------------------------------------------------------------------------

    async def connect(self) -> InitMessage:
        unsupported = unsupported_options(self._options, self._target)
        if unsupported:
            raise ProcessError(
                "the app_server transport cannot honour: " + "; ".join(unsupported)
                + " (use transport='subprocess')"
            )
        self._lease = self._lease_source()
        try:
            conn = await self._lease.connection(self._timeout)
            start = await self._start_fields(conn)
            response = await self._runtime_start(conn, start)
            if self._target.conversation_id is not None:
                # An existing conversation: its prompt may predate memory committed since.
                runtime = response["runtime"]
                try:
                    await recompile_on(conn, runtime.get("agent_id"),
                                       str(runtime["conversation_id"]), self._timeout)
                except (ProcessError, ProtocolTimeoutError) as exc:  # e.g. a backend without it
                    log.warning("could not bring conversation %s up to date with the agent's "
                                "memory: %s", runtime["conversation_id"], exc)
        except BaseException:
            await self.close()
            raise
        return self._on_started(conn, response)

    async def _start_fields(self, conn: Connection) -> dict[str, Any]:
        opts, target = self._options, self._target
        fields: dict[str, Any] = {
            "mode": opts.cli_permission_mode,
            "cwd": str(self._cwd),
        }
        if opts.allowed_tools is not None or opts.disallowed_tools is not None:
            fields["execution_settings"] = frames.execution_settings(
                opts.allowed_tools, opts.disallowed_tools
            )
        if opts.tools:
            fields["external_tools"] = [{"tools": [t.definition() for t in opts.tools]}]
        if opts.skill_sources is not None:
            fields["skill_sources"] = list(opts.skill_sources)
        agent_id = target.agent_id
        if target.new_agent:
            agent_id = await self._new_agent(conn, fields)
        elif agent_id is None and target.conversation_id is not None:
            agent_id = await self._agent_of(conn, target.conversation_id)
        elif agent_id is None:
            agent_id = last_used_agent(self._cwd) or await self._new_agent(conn, fields)
        if agent_id is not None:
            fields["agent_id"] = agent_id
        if target.conversation_id is not None:
            fields["conversation_id"] = target.conversation_id
        else:
            fields["create_conversation"] = {}
        return fields

    async def _new_agent(self, conn: Connection, fields: dict[str, Any]) -> str | None:
        """A new agent: the CLI's own (its default system prompt), unless a custom system
        prompt or block references are given; those go in a raw ``create_agent`` body in
        ``runtime_start``. Memory blocks of a CLI agent are written by the client as memory
        files (see ``lettabot.sdk._internal.memfs``), as on the subprocess transport.
        Its model is one the server offers (see ``choose_model``)."""
        opts = self._options
        model = await model_for_new_agent(conn, opts.model, self._timeout)
        if opts.custom_system is not None or opts.agent_options().block_refs():
            fields["create_agent"] = {"body": self._agent_body(model), "memfs": True}
            return None
        frame: dict[str, Any] = {"type": "create_agent", "request_id": conn.new_id("agent"),
                                 "personality": "blank", "model": model}
        if opts.tags:
            frame["tags"] = list(opts.tags)
        answer = await conn.request(frame, "create_agent_response", self._timeout)
        if not answer.get("success") or not answer.get("agent_id"):
            raise ProcessError(f"the App Server could not create an agent: {answer.get('error')}")
        return str(answer["agent_id"])

    def _agent_body(self, model: str) -> dict[str, Any]:
        opts = self._options
        body: dict[str, Any] = {"tags": ["origin:letta-code"], "model": model}
        if "/" in model:  # what the CLI records; its toolset choice depends on it
            body["model_settings"] = {"provider_type": model.split("/", 1)[0]}
        if opts.custom_system is not None:
            body["system"] = opts.custom_system
        if opts.memory is not None or any(
            v is not None for v in (opts.persona, opts.human, opts.project)
        ):
            body["memory_blocks"] = [
                {k: v for k, v in b.model_dump().items() if v is not None} for b in opts.blocks()
            ]
        refs = opts.agent_options().block_refs()
        if refs:
            body["block_ids"] = [r.block_id for r in refs]
        body["tags"] += list(opts.tags or [])
        return body

    async def _agent_of(self, conn: Connection, conversation_id: str) -> str:
        frame = {"type": "conversation_retrieve", "request_id": conn.new_id("conv"),
                 "conversation_id": conversation_id}
        response = await conn.request(frame, "conversation_retrieve_response", self._timeout)
        conversation = response.get("conversation") or {}
        agent_id = conversation.get("agent_id") if isinstance(conversation, dict) else None
        if not response.get("success") or not agent_id:
            raise ProcessError(
                f"conversation {conversation_id!r} not found: {response.get('error') or 'no agent'}"
            )
        return str(agent_id)

    async def _runtime_start(self, conn: Connection, fields: dict[str, Any]) -> dict[str, Any]:
        frame = frames.runtime_start(conn.new_id("runtime-start"), **fields)
        response = await conn.request(frame, "runtime_start_response", self._timeout)
        if not response.get("success") or not isinstance(response.get("runtime"), dict):
            raise ProcessError(f"the App Server could not open the conversation: "
                               f"{response.get('error') or 'runtime_start failed'}")
        return response

    def _on_started(self, conn: Connection, response: dict[str, Any]) -> InitMessage:
        runtime = response["runtime"]
        self._attach(conn, runtime)
        agent = response.get("agent") or {}
        _remember_agent(self._cwd, str(runtime["agent_id"]))  # the CLI's "last-used agent"
        conversation_id = str(runtime["conversation_id"])
        self._init = InitMessage(
            agent_id=str(runtime["agent_id"]),
            session_id=conversation_id,
            conversation_id=conversation_id,
            model=agent.get("model") if isinstance(agent, dict) else None,
            tools=[str(t.get("name", t)) if isinstance(t, dict) else str(t)
                   for t in (agent.get("tools") or [])] if isinstance(agent, dict) else [],
            cwd=str(self._cwd),
        )
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
        fields = await self._resume_fields()
        response = await self._runtime_start(conn, fields)
        self._attach(conn, response["runtime"])
        return conn

    async def _resume_fields(self) -> dict[str, Any]:
        assert self._runtime is not None
        fields: dict[str, Any] = {
            "agent_id": self._runtime["agent_id"],
            "conversation_id": self._runtime["conversation_id"],
            "mode": self._options.cli_permission_mode,
            "cwd": str(self._cwd),
            "recover_approvals": True,
        }
        opts = self._options
        if opts.allowed_tools is not None or opts.disallowed_tools is not None:
            fields["execution_settings"] = frames.execution_settings(
                opts.allowed_tools, opts.disallowed_tools
            )
        if opts.tools:
            fields["external_tools"] = [{"tools": [t.definition() for t in opts.tools]}]
        return fields

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
            entry = _Input(cmid, rid, TurnState(partial=self._options.include_partial_messages))
            self._inputs.append(entry)
            try:
                answer = await conn.request(frame, "input_accepted", self._timeout)
            except BaseException:
                self._forget(entry)
                raise
            if answer.get("accepted"):
                entry.accepted = True
                return cmid
            self._forget(entry)
            last_error = str(answer.get("error") or "refused")
            if delay is None:
                break
            log.info("App Server refused input %s (%s); retrying in %ss", cmid, last_error, delay)
            await anyio.sleep(delay)
        raise CLIConnectionError(
            f"the App Server refused the message after {len(RETRY_DELAYS) + 1} attempts: "
            f"{last_error}"
        )

    def _forget(self, entry: _Input) -> None:
        if entry in self._inputs:
            self._inputs.remove(entry)

    def _open(self) -> list[_Input]:
        """Accepted inputs whose result has not been given yet."""
        return [i for i in self._inputs if i.accepted and not i.ended]

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

    async def interrupt(self) -> None:
        conn = await self._live()
        assert self._runtime is not None
        frame = frames.abort_message(conn.new_id("abort"), self._runtime)
        answer = await conn.request(frame, "abort_message_response", self._timeout)
        if answer.get("aborted") and self._open():
            self._abort_deadline = anyio.current_time() + ABORT_GRACE

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
                if channel.overflowed and self._open():
                    for msg in self._fail("this session fell too far behind the App Server"):
                        yield msg
                if channel is self._channel:  # the connection is gone: wait for a new one
                    await self._channel_changed.wait()
                continue
            self._pending.extend(await self._handle(frame))
            while self._pending:
                yield self._pending.popleft()

    async def _next(self, channel: Channel) -> dict[str, Any] | None:
        """The next frame; a synthetic ``cancelled`` end if an abort went unanswered."""
        try:
            if self._abort_deadline is None:
                return await channel.receive.receive()
            with anyio.move_on_after(max(0.0, self._abort_deadline - anyio.current_time())):
                return await channel.receive.receive()
            log.warning("no turn_finished %ss after an abort; ending the turn", ABORT_GRACE)
            return {"type": _GAVE_UP}
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def _handle(self, frame: dict[str, Any]) -> list[Message]:
        kind = frame.get("type")
        if kind == "stream_delta" and isinstance(frame.get("delta"), dict):
            return self._on_delta(frame["delta"])
        if kind == "turn_finished":
            return self._on_finished(frame)
        if kind == "input_accepted":
            self._on_accepted(frame)
        elif kind == "update_loop_status":
            self._on_loop_status(frame.get("loop_status"))
        elif kind == "update_queue":
            return self._on_queue(frame.get("removed"))
        elif kind == _GAVE_UP:
            return self._give_up()
        elif kind == "control_request":
            await self._answer_permission(frame)
        elif kind == "external_tool_call_request":
            await self._run_tool(frame)
        elif kind == LOST:
            return self._fail(f"{frame.get('error')}; the turn in flight was lost")
        return []

    # Which input a frame belongs to. The server runs a conversation's inputs one at a
    # time, in order; update_loop_status maps its runs to our client_message_ids. A frame
    # of an input whose result was already given (an abort the server finished late) is
    # dropped, never handed to the next input.

    def _started(self, entry: _Input) -> None:
        """``entry`` runs now: every earlier input is finished on the server."""
        entry.started = True
        for earlier in list(self._inputs):
            if earlier is entry:
                break
            earlier.owed = False
        self._prune()

    def _prune(self) -> None:
        self._inputs = deque(i for i in self._inputs if not (i.ended and not i.owed))

    def _by_cmid(self, cmid: object) -> _Input | None:
        return next((i for i in self._inputs if i.cmid == cmid), None)

    def _by_run(self, run_id: object) -> list[_Input]:
        if not isinstance(run_id, str):
            return []
        return [i for i in self._inputs if run_id in i.run_ids]

    def _current(self) -> _Input | None:
        """The input the server is on: the oldest started one it still owes a finish. (An
        input queued behind a turn this session did not start, e.g. one still running from
        before a reopen, gets none of that turn's frames.)"""
        return next((i for i in self._inputs if i.owed and i.accepted and i.started), None)

    def _on_accepted(self, frame: dict[str, Any]) -> None:
        entry = next((i for i in self._inputs if i.request_id == frame.get("request_id")), None)
        if entry is None or not frame.get("accepted"):
            return
        entry.accepted = True
        if frame.get("disposition") != "queued":
            self._started(entry)

    def _on_loop_status(self, status: object) -> None:
        runs = status.get("client_message_ids_by_run_id") if isinstance(status, dict) else None
        if not isinstance(runs, dict):
            return
        for run_id, cmids in runs.items():
            entries = [e for c in (cmids if isinstance(cmids, list) else ())
                       if (e := self._by_cmid(c)) is not None]
            if not entries:
                # A run for inputs we no longer wait for: after a crash the server replays
                # the inputs it had accepted, whose turns already ended here with an error.
                self._foreign_runs.add(run_id)
                continue
            self._foreign_runs.discard(run_id)
            for entry in entries:
                if run_id not in entry.run_ids:
                    entry.run_ids.append(run_id)
                    if not entry.started:
                        self._started(entry)

    def _on_queue(self, removed: object) -> list[Message]:
        out: list[Message] = []
        for item in removed if isinstance(removed, list) else ():
            entry = self._by_cmid(item.get("client_message_id")) if isinstance(item, dict) else None
            if entry is None:
                continue
            if item.get("disposition") == "dequeued":
                self._started(entry)
            elif item.get("disposition") == "cancelled" and not entry.ended:
                entry.owed = False  # it never ran: no finish will come
                out += self._end(entry, {"stop_reason": "cancelled"})
        self._prune()
        return out

    def _on_delta(self, delta: dict[str, Any]) -> list[Message]:
        if delta.get("message_type") == "user_message":
            otid = delta.get("otid")
            entry = self._by_cmid(otid)
            if entry is not None and not entry.started:
                self._started(entry)
            self._replaying = entry is None and otid in self._ghosts
        if delta.get("run_id") in self._foreign_runs:
            return []
        owners = self._by_run(delta.get("run_id"))
        if not owners and self._replaying:
            return []  # the server replays an input whose turn ended here already
        owner = owners[0] if owners else self._current()
        if owner is None or owner.ended:
            return []  # a late frame of a turn whose result was already given
        return owner.state.feed(delta)

    def _on_finished(self, frame: dict[str, Any]) -> list[Message]:
        owned = self._by_run(frame.get("run_id"))
        if frame.get("run_id") in self._foreign_runs or (self._replaying and not owned):
            self._replaying = False
            return []
        self._replaying = False
        owners = owned or [e for e in [self._current()] if e]
        out: list[Message] = []
        first: ResultMessage | None = None
        for entry in owners:
            entry.owed = False
            if entry.ended:
                continue  # its result was given when the abort went unanswered
            if first is None:
                out += self._end(entry, frame)
                first = next((m for m in reversed(out) if isinstance(m, ResultMessage)), None)
            else:  # inputs the server merged into one run share its result
                entry.ended = True
                if first is not None:
                    out.append(first.model_copy())
        if self._abort_deadline is not None and not self._open():
            self._abort_deadline = None
        self._prune()
        return out

    def _release_warm_up(self) -> None:
        """The first turn on a fresh server ended (or was given up): others may start."""
        if self._warm_owner and self._conn is not None:
            self._conn.warmed.set()

    def _end(self, entry: _Input, frame: dict[str, Any]) -> list[Message]:
        entry.ended = True
        self._release_warm_up()
        init = self._init
        return entry.state.finish(frame, init.agent_id if init else None,
                                  init.conversation_id if init else None)

    def _give_up(self) -> list[Message]:
        """An abort got no turn_finished in time: end the turn; the server still owes it."""
        self._abort_deadline = None
        entry = next(iter(self._open()), None)
        if entry is None:
            return []
        out = self._end(entry, {"stop_reason": "cancelled"})
        self._prune()
        return out

    def _fail(self, error: str) -> list[Message]:
        """The connection is gone: every open input ends with an error; nothing is owed."""
        self._abort_deadline = None
        self._release_warm_up()
        failed = self._open()
        self._ghosts.update(i.cmid for i in self._inputs)
        self._inputs.clear()
        if not failed:
            return []
        init = self._init
        return [ResultMessage(
            success=False, subtype="error", error=error, error_code="server_died",
            agent_id=init.agent_id if init else None,
            conversation_id=init.conversation_id if init else None,
        ) for _ in failed]

    async def _lost(self) -> str:
        conn = self._conn
        assert conn is not None
        await conn.lost.wait()
        return conn.death or "the App Server connection was lost"

    async def _answer_permission(self, frame: dict[str, Any]) -> None:
        body = frame.get("request") or {}
        if body.get("subtype") != "can_use_tool" or self._conn is None or self._runtime is None:
            return
        request = CanUseToolRequest(
            tool_name=str(body.get("tool_name") or ""),
            tool_input=dict(body.get("input") or {}),
            tool_call_id=str(body.get("tool_call_id") or ""),
            request_id=str(frame.get("request_id") or ""),
            diffs=body.get("diffs"),
            permission_suggestions=list(body.get("permission_suggestions") or []),
            blocked_path=body.get("blocked_path"),
            raw=frame,
        )
        conn, runtime = self._conn, self._runtime
        result = await unless_lost(lambda: self._handler.can_use_tool(request), self._lost,
                                   request.signal)
        if result is None:
            return  # the connection died: the LOST frame that follows ends the turn
        decision: dict[str, Any]
        if isinstance(result, PermissionAllow):
            decision = {"behavior": "allow"}
            if result.updated_input is not None:
                decision["updated_input"] = result.updated_input
            if result.updated_permissions:
                decision["selected_permission_suggestion_ids"] = result.suggestion_ids()
        else:
            decision = {"behavior": "deny", "message": result.message}
        try:
            await conn.send(frames.approval_response(runtime, request.request_id, decision))
        except CLIConnectionError:
            return  # the LOST frame that follows ends the turn
        if not isinstance(result, PermissionAllow) and result.interrupt:
            await self.interrupt()

    async def _run_tool(self, frame: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            return
        result = await unless_lost(lambda: self._handler.execute_tool(
            str(frame.get("tool_name") or ""), str(frame.get("tool_call_id") or ""),
            dict(frame.get("input") or {}),
        ), self._lost)
        if result is None:
            return
        try:
            await conn.send(frames.external_tool_response(
                str(frame.get("request_id")), result.content, result.is_error))
        except CLIConnectionError:
            return

    # -- control requests --------------------------------------------------------------------

    async def control(self, subtype: str, **fields: Any) -> dict[str, Any]:
        conn = await self._live()
        assert self._runtime is not None and self._init is not None
        if subtype == "interrupt":
            await self.interrupt()
            return {}
        if subtype == "list_messages":
            query = {k: v for k, v in fields.items() if v is not None}
            query.setdefault("order", "asc")
            frame = {"type": "conversation_messages_list", "request_id": conn.new_id("messages"),
                     "conversation_id": self._runtime["conversation_id"], "query": query}
            if self._runtime["conversation_id"] == "default":
                frame["agent_id"] = self._runtime["agent_id"]
            answer = await conn.request(frame, "conversation_messages_list_response",
                                        self._timeout)
            if not answer.get("success", True):
                raise ProcessError(f"list_messages failed: {answer.get('error')}")
            return {"messages": answer.get("messages") or [], "has_more": answer.get("has_more")}
        if subtype == "recover_pending_approvals":
            frame = {"type": "sync", "request_id": conn.new_id("sync"), "runtime": self._runtime,
                     "recover_approvals": True}
            return await conn.request(frame, "sync_response", self._timeout)
        if subtype == "bootstrap_session_state":
            return {"agent_id": self._init.agent_id, "conversation_id": self._init.conversation_id,
                    "model": self._init.model, "cwd": self._init.cwd,
                    "permission_mode": self._options.cli_permission_mode}
        raise ProcessError(f"control request {subtype!r} is not available over the App Server")

    async def manage(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        return await call(await self._live())

    async def remove_queued(self, client_message_id: str) -> bool:
        conn = await self._live()
        assert self._runtime is not None
        key = (self._runtime.get("agent_id"), str(self._runtime.get("conversation_id")))
        item = conn.queues.get(key, {}).get(client_message_id)
        if item is None:
            return False
        frame = {"type": "remove_queue_item", "request_id": conn.new_id("unqueue"),
                 "runtime": dict(self._runtime), "item_id": item}
        answer = await conn.request(frame, "remove_queue_item_response", self._timeout)
        return bool(answer.get("success"))

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

