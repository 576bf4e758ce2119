"""The ``subprocess`` transport: one ``letta`` process, stream-json on stdin/stdout.

No background task reads stdout. Whoever needs the next object (``receive()``, or a
control request waiting for its answer) takes the read lock and *pumps*: reads one
line, answers the CLI's own control requests inline, hands control responses to their
waiters and queues messages. So there is nothing to leak and nothing to cancel: the
process is the only resource, and :meth:`close` reaps it.

stderr goes to a temporary file (a pipe nobody drains would block the CLI); its tail is
put into errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import tempfile
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import Process

from lettabot.sdk._internal import control
from lettabot.sdk._internal.app_server.models import (
    model_for_new_agent,
    on_server,
    update_model_on,
)
from lettabot.sdk._internal.app_server.recompile import recompile_via_server
from lettabot.sdk._internal.cli import cli_env, find_cli, is_conversation_id, last_used_agent
from lettabot.sdk._internal.cli_words import not_found_error
from lettabot.sdk._internal.parser import TurnTracker, parse_stream_json
from lettabot.sdk._internal.start_lock import SettingsGuard, StartGate, cli_start_lock
from lettabot.sdk._internal.transport import ControlHandler, Target
from lettabot.sdk.errors import (
    CLIConnectionError,
    LettaSDKError,
    ProcessError,
    ProtocolTimeoutError,
    SessionClosedError,
)
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.types import InitMessage, Message, ResultMessage

if TYPE_CHECKING:
    from lettabot.sdk._internal.app_server.connection import Connection

T = TypeVar("T")

__all__ = ["SubprocessTransport", "build_argv"]

log = logging.getLogger("lettabot.sdk")

_MAX_LINE = 32 * 1024 * 1024
_MAX_QUEUED = 10_000
_CLOSE_GRACE = 3.0
_ABORT_GRACE = 5.0


def build_argv(cli: str, options: SessionOptions, target: Target) -> list[str]:
    """The CLI command line for a session (the CLI always gets an explicit permission mode)."""
    argv = [
        cli,
        "--output-format",
        "stream-json",
        "--input-format",
        "stream-json",
        "--permission-mode",
        options.cli_permission_mode,
    ]
    if target.new_agent:
        argv.append("--new-agent")
        if options.tags:
            argv += ["--tags", ",".join(options.tags)]
    elif target.conversation_id and target.conversation_id != "default":
        argv += ["--conversation", target.conversation_id]
    elif target.agent_id and target.conversation_id == "default":
        argv += ["--agent", target.agent_id, "--conversation", "default"]
    elif target.agent_id:
        argv += ["--agent", target.agent_id, "--new"]
    else:
        argv.append("--new")
    if options.model:
        argv += ["-m", options.model]
    preset = options.preset
    if preset is not None:
        argv += ["--system", preset.cli_name]
    elif options.custom_system is not None:
        argv += ["--system-custom", options.custom_system]
    if options.allowed_tools is not None:
        argv += ["--allowedTools", ",".join(options.allowed_tools)]
    if options.disallowed_tools:
        argv += ["--disallowedTools", ",".join(options.disallowed_tools)]
    if options.skill_sources is not None:
        argv += (["--skill-sources", ",".join(options.skill_sources)] if options.skill_sources
                 else ["--no-skills"])
    if options.include_partial_messages:
        argv.append("--include-partial-messages")
    return argv


class SubprocessTransport:
    """A session on its own CLI process."""

    def __init__(self, options: SessionOptions, target: Target, handler: ControlHandler) -> None:
        cid = target.conversation_id
        if cid and cid != "default" and not is_conversation_id(cid):
            raise ValueError(f"not a conversation id: {target.conversation_id!r}")
        self._options = options
        self._target = target
        self._handler = handler
        self._process: Process | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = bytearray()
        # fast_acquire: no event-loop round trip when uncontended (one per output line adds up).
        self._read_lock = anyio.Lock(fast_acquire=True)
        self._write_lock = anyio.Lock(fast_acquire=True)
        # Messages, and the CLI's control requests (raw dicts), in arrival order. Control
        # requests are answered by the receive() loop, outside the read lock, so a slow
        # permission callback never blocks another task's control request.
        self._messages: deque[Message | dict[str, Any]] = deque()
        self._responses: dict[str, dict[str, Any]] = {}
        self._request_ids = iter(range(1, 1 << 62))
        self._turns_open = 0
        self._tracker = TurnTracker()
        self._eof = False
        self._closed = False
        self._init: InitMessage | None = None
        self._respawn_needed = False
        self._abort_deadline: float | None = None

    # -- lifecycle ------------------------------------------------------------

    async def connect(self) -> InitMessage:
        target = self._target
        if target.agent_id and target.conversation_id == "default":
            # Reopened, the default conversation keeps the prompt it was compiled with
            # (measured, CLI 0.34.12); other conversations load the agent's memory anew.
            try:
                await recompile_via_server(self._options, target.agent_id, "default")
            except LettaSDKError as exc:  # e.g. a backend without it: the old prompt, then
                log.warning("could not bring the default conversation of %s up to date with "
                            "its memory: %s", target.agent_id, exc)
        if self._makes_agent(target):
            # The CLI makes an agent with any ``provider/name`` it is given: pick one it
            # offers (listed by an App Server: stream-json has no such request).
            model = await on_server(self._options, lambda conn: model_for_new_agent(
                conn, self._options.model, self._options.request_timeout))
            self._options = self._options.model_copy(update={"model": model})
        self._init = await self._spawn(target)
        return self._init

    def _makes_agent(self, target: Target) -> bool:
        """Whether the CLI will make a new agent for ``target``."""
        if target.new_agent:
            return True
        if target.agent_id is not None or target.conversation_id is not None:
            return False
        cwd = Path(self._options.cwd) if self._options.cwd else Path.cwd()
        return last_used_agent(cwd) is None

    async def recompile(self) -> None:
        """Through an App Server (stream-json has no such request); the CLI process is
        replaced before the next message so it reads the new prompt."""
        assert self._init is not None
        await recompile_via_server(self._options, self._init.agent_id,
                                   self._init.conversation_id or "default")
        self._respawn_needed = True

    async def manage(self, call: Callable[[Connection], Awaitable[T]]) -> T:
        """Through an App Server for these options (stream-json has no such requests)."""
        return await on_server(self._options, call)

    async def remove_queued(self, client_message_id: str) -> bool:
        """Not possible here: a message sent is written to the CLI's stdin at once, and
        stream-json cannot take it back (use the app_server transport)."""
        raise NotImplementedError(
            "removing a queued message needs the app_server transport (the subprocess "
            "transport writes every message to the CLI at once)")

    async def set_model(self, handle: str) -> None:
        """Through an App Server (stream-json has no such request); the CLI process is
        replaced before the next message so it uses the new model."""
        assert self._init is not None
        runtime = {"agent_id": self._init.agent_id,
                   "conversation_id": self._init.conversation_id or "default"}
        await on_server(self._options, lambda conn: update_model_on(
            conn, runtime, handle, self._options.request_timeout))
        self._respawn_needed = True

    async def _respawn(self) -> None:
        """Replace the process with a new one on the same conversation.

        CLI 0.34.12 on the local backend leaves an interrupted run marked active in the
        process (every later message fails with "already has an active run"); a new
        process starts without it. Measured: the run stayed active for minutes.
        """
        assert self._init is not None
        old, self._process = self._process, None
        if old is not None:
            with anyio.CancelScope(shield=True):
                await _reap(old)
        if self._stderr is not None:
            self._stderr.close()
        self._buffer.clear()
        self._messages.clear()
        self._responses.clear()
        self._eof = False
        conversation = self._init.conversation_id
        if conversation == "default" or not conversation:
            target = Target(agent_id=self._init.agent_id, conversation_id="default")
        else:
            target = Target(conversation_id=conversation)
        self._init = await self._spawn(target)

    async def _spawn(self, target: Target) -> InitMessage:
        cli = find_cli(self._options.cli_path)
        argv = build_argv(cli, self._options, target)
        env = cli_env(self._options.env)
        # Concurrent CLI starts on one Letta home share conversation ids and wipe
        # settings.json (see start_lock): the process boots at once, but from its first
        # touch of the home until its init it holds the home's start lock.
        gate = StartGate()
        gate.prepare(env, cli)
        try:
            if gate.active:
                await self._start_process(cli, argv, env, gate)
            async with cli_start_lock(env):
                guard = SettingsGuard(env)
                if not gate.active:
                    await self._start_process(cli, argv, env, gate)
                gate.open()
                try:
                    response = await self.control("initialize")
                finally:
                    guard.repair()
            if self._options.tools:
                await self.control(
                    "register_external_tools",
                    tools=[t.definition() for t in self._options.tools],
                )
            init = await self._wait_init(response)
        except ProcessError as exc:
            await self._close_after_failed_start(exc)
            raise
        except BaseException:
            await self.close()
            raise
        finally:
            gate.close()
        return init

    async def _start_process(self, cli: str, argv: list[str], env: dict[str, str],
                             gate: StartGate) -> None:
        self._stderr = tempfile.TemporaryFile(prefix="letta-stderr-")  # noqa: SIM115 (closed in close())
        cwd = str(self._options.cwd) if self._options.cwd else os.getcwd()
        log.debug("starting CLI: %s (cwd %s)", _redact(argv), cwd)
        try:
            self._process = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                env=env,
                start_new_session=True,
                pass_fds=gate.pass_fds,
            )
        except OSError as exc:
            raise CLIConnectionError(f"could not start the Letta CLI {cli!r}: {exc}") from exc
        finally:
            gate.started()

    async def _close_after_failed_start(self, exc: ProcessError) -> None:
        await self.close()
        missing = not_found_error(exc.stderr, message=str(exc))
        if missing is not None:  # the CLI's "Conversation X not found" before it exits
            raise missing from exc

    async def _wait_init(self, response: dict[str, Any]) -> InitMessage:
        for msg in list(self._messages):
            if isinstance(msg, InitMessage):
                self._messages.remove(msg)
                return msg
        agent_id = response.get("agent_id")
        if not agent_id:
            raise ProcessError("the CLI sent no init message", stderr=self._stderr_tail())
        return InitMessage(
            agent_id=agent_id,
            session_id=str(response.get("session_id") or agent_id),
            conversation_id=str(response.get("conversation_id") or ""),
            model=response.get("model"),
            tools=list(response.get("tools") or []),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        process = self._process
        with anyio.CancelScope(shield=True):
            if process is not None:
                await _reap(process)
            if self._stderr is not None:
                self._stderr.close()

    # -- I/O ------------------------------------------------------------------

    async def _write(self, obj: dict[str, Any]) -> None:
        if self._closed or self._process is None or self._process.stdin is None:
            raise SessionClosedError("the session is closed")
        data = (json.dumps(obj) + "\n").encode()
        async with self._write_lock:
            try:
                await self._process.stdin.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise ProcessError(
                    "the CLI process is gone",
                    exit_code=self._process.returncode,
                    stderr=self._stderr_tail(),
                ) from exc

    async def send(
        self, content: str | list[dict[str, Any]], *, client_message_id: str | None = None
    ) -> str:
        cmid = client_message_id or f"lb-{uuid.uuid4().hex}"
        message: dict[str, Any] = {"role": "user", "content": content}
        frame: dict[str, Any] = {"type": "user", "message": message, "client_message_id": cmid}
        if self._respawn_needed:
            self._respawn_needed = False
            await self._respawn()
        await self._write(frame)
        self._turns_open += 1
        return cmid

    async def interrupt(self) -> None:
        if self._turns_open and self._abort_deadline is None:
            self._abort_deadline = anyio.current_time() + _ABORT_GRACE
        await self.control("interrupt")

    async def control(self, subtype: str, **fields: Any) -> dict[str, Any]:
        if self._respawn_needed and subtype not in ("initialize", "interrupt"):
            self._respawn_needed = False
            await self._respawn()
        request_id = f"req-{next(self._request_ids)}"
        await self._write(
            {
                "type": "control_request",
                "request_id": request_id,
                "request": {"subtype": subtype, **fields},
            }
        )
        try:
            with anyio.fail_after(self._options.request_timeout):
                while request_id not in self._responses:
                    async with self._read_lock:
                        if request_id in self._responses:
                            break
                        if not await self._pump():
                            raise ProcessError(
                                f"the CLI exited before answering {subtype!r}",
                                exit_code=self._returncode(),
                                stderr=self._stderr_tail(),
                            )
        except TimeoutError:
            raise ProtocolTimeoutError(
                f"no answer to control request {subtype!r} within {self._options.request_timeout}s"
            ) from None
        response = self._responses.pop(request_id)
        if response.get("subtype") == "error":
            raise ProcessError(f"control request {subtype!r} failed: {response.get('error')}")
        return dict(response.get("response") or {})

    async def receive(self) -> AsyncGenerator[Message, None]:
        while True:
            if self._messages:
                msg = self._messages.popleft()
                if isinstance(msg, dict):
                    try:
                        await self._answer(msg)
                    except anyio.get_cancelled_exc_class():
                        # Cancelled before the CLI got its answer: the next receive() asks
                        # again rather than leave the CLI waiting forever.
                        if not self._closed:
                            self._messages.appendleft(msg)
                        raise
                    continue
                if isinstance(msg, ResultMessage):
                    self._turns_open = max(0, self._turns_open - 1)
                    self._abort_deadline = None
                    if msg.subtype == "interrupted" and self._is_local():
                        self._respawn_needed = True
                yield msg
                continue
            if self._eof or self._closed:
                return
            async with self._read_lock:
                if self._messages:
                    continue
                deadline = self._abort_deadline
                with anyio.CancelScope(deadline=deadline or math.inf) as scope:
                    more = await self._pump()
                if scope.cancelled_caught:
                    await self._abandon_turn()
                elif not more:
                    self._on_eof()

    async def _abandon_turn(self) -> None:
        """The CLI did not end an interrupted turn in time (measured: an interrupt does not
        reach a model request that has sent nothing yet). Replace the process instead."""
        log.warning(
            "the CLI did not stop the turn within %ss of an interrupt; restarting it", _ABORT_GRACE
        )
        self._abort_deadline = None
        self._turns_open = 0
        self._respawn_needed = True
        if self._process is not None:
            with anyio.CancelScope(shield=True):
                _signal_group(self._process, terminate=False)
                await self._process.wait()
        self._messages.append(
            ResultMessage(
                success=False,
                subtype="interrupted",
                error="The turn was interrupted.",
                error_code="interrupted",
                stop_reason="cancelled",
            )
        )

    def _on_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self._turns_open > 0 and not self._closed:
            code = self._returncode()
            tail = self._stderr_tail()
            error = f"The Letta CLI exited unexpectedly (exit code {code})."
            if tail:
                error += f" stderr: {tail[-1500:]}"
            self._messages.append(
                ResultMessage(
                    success=False, subtype="error", error=error, error_code="process_exited"
                )
            )

    async def _read_line(self) -> bytes | None:
        assert self._process is not None and self._process.stdout is not None
        while True:
            line = self._buffered_line()
            if line is not None:
                return line
            if len(self._buffer) > _MAX_LINE:
                raise ProcessError(f"a CLI output line exceeded {_MAX_LINE} bytes")
            try:
                chunk = await self._process.stdout.receive(65536)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                if self._buffer:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return rest
                return None
            self._buffer.extend(chunk)

    async def _pump(self) -> bool:
        """Read output and dispatch every whole line it holds; False at end of output."""
        if self._process is None:
            return False
        line = await self._read_line()
        if line is None:
            with anyio.move_on_after(5):
                await self._process.wait()
            return False
        while line is not None:
            self._dispatch(line)
            line = self._buffered_line()
        return True

    def _buffered_line(self) -> bytes | None:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            return None
        line = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        return line

    def _dispatch(self, line: bytes) -> None:
        """One output line: a control response for its waiter, anything else queued."""
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            log.warning("skipping a malformed CLI output line: %r", line[:300])
            return
        if log.isEnabledFor(5):
            log.log(5, "CLI> %s", line[:2000].decode(errors="replace"))
        if not isinstance(obj, dict):
            log.warning("skipping a non-object CLI output line: %r", line[:300])
            return
        kind = obj.get("type")
        if kind == "control_response":
            response = obj.get("response") or {}
            self._responses[str(response.get("request_id"))] = response
            return
        if kind == "control_request":
            self._messages.append(obj)
            return
        if kind == "message":
            self._tracker.observe(obj)
        elif kind == "stream_event" and isinstance(obj.get("event"), dict):
            self._tracker.observe(obj["event"])
        elif kind == "error":
            self._tracker.observe_error(str(obj.get("message") or "error"))
        try:
            parsed = [
                self._tracker.complete(m) if isinstance(m, ResultMessage) else m
                for m in parse_stream_json(obj)
            ]
        except Exception:
            log.warning("skipping an unparseable CLI message: %r", line[:300], exc_info=True)
            return
        if len(self._messages) + len(parsed) > _MAX_QUEUED:
            raise ProcessError(f"more than {_MAX_QUEUED} unread messages: is stream() consumed?")
        self._messages.extend(parsed)

    async def _answer(self, obj: dict[str, Any]) -> None:
        """Answer one of the CLI's control requests (permission, external tool)."""
        request_id = obj.get("request_id")
        body = obj.get("request") or {}
        request = control.parse_request(body)
        process = self._process

        async def lost() -> str:
            assert process is not None
            code = await process.wait()
            return f"the Letta CLI exited (exit code {code})"

        response: dict[str, Any]
        if isinstance(request, control.CanUseTool):
            decision = await control.ask_permission(self._handler, request, str(request_id),
                                                    body, lost)
            if decision is None:
                return  # the CLI is gone; its end of output ends the turn
            answer = control.encode_decision(decision, "stream_json").payload
            response = {"subtype": "success", "request_id": request_id, "response": answer}
        elif isinstance(request, control.ExecuteExternalTool):
            result = await control.run_external_tool(self._handler, request, lost)
            if result is None:
                return
            response = {
                "subtype": "external_tool_result",
                "request_id": request_id,
                "tool_call_id": body.get("tool_call_id"),
                "content": result.content,
                "is_error": result.is_error,
            }
        else:
            response = {
                "subtype": "error",
                "request_id": request_id,
                "error": f"unsupported control request {body.get('subtype')!r}",
            }
        await self._write({"type": "control_response", "response": response})

    # -- diagnostics ------------------------------------------------------------

    def _is_local(self) -> bool:
        return self._init is not None and self._init.agent_id.startswith("agent-local-")

    def _returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def _stderr_tail(self, limit: int = 8000) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""


async def _reap(process: Process) -> None:
    """Close stdin, then TERM, then KILL; always wait for the exit."""
    if process.stdin is not None:
        with anyio.move_on_after(1):
            await process.stdin.aclose()
    if process.returncode is None:
        with anyio.move_on_after(0.5):
            await process.wait()
    if process.returncode is None:
        _signal_group(process, terminate=True)
        with anyio.move_on_after(_CLOSE_GRACE):
            await process.wait()
    if process.returncode is None:
        _signal_group(process, terminate=False)
        await process.wait()
    await process.aclose()


def _signal_group(process: Process, *, terminate: bool) -> None:
    import signal

    sig = signal.SIGTERM if terminate else signal.SIGKILL
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.terminate() if terminate else process.kill()


def _redact(argv: list[str]) -> str:
    # A custom system prompt may be long or private; keep logs short.
    out = []
    skip = False
    for arg in argv:
        if skip:
            out.append(f"<{len(arg)} chars>")
            skip = False
            continue
        out.append(arg)
        skip = arg == "--system-custom"
    return " ".join(out)
