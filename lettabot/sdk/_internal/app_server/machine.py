"""The frame state machine: a conversation's frames → each input's typed messages.

Frames of the conversation's channel (``stream_delta``, ``turn_finished``,
``input_accepted``, ``update_loop_status``, ``update_queue``, a lost connection) move the
:class:`~lettabot.sdk._internal.app_server.ledger.InputLedger` along and become messages
of the input they belong to; every input ends with exactly one ``ResultMessage``. A frame
of an input whose result was already given (an abort the server finished late) is
dropped, never handed to the next input. Control requests are not handled here (see
:mod:`lettabot.sdk._internal.app_server.answers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio

from lettabot.sdk._internal.app_server.connection import LOST
from lettabot.sdk._internal.app_server.ledger import Input, InputLedger
from lettabot.sdk.types import InitMessage, Message, ResultMessage

__all__ = ["ABORT_GRACE", "GAVE_UP", "FrameMachine"]

log = logging.getLogger("lettabot.sdk.app_server")

ABORT_GRACE = 5.0
"""How long after an acknowledged abort we wait for ``turn_finished`` before ending the turn."""
GAVE_UP = "_abort_unanswered"
"""The type of the synthetic frame that ends a turn whose abort got no turn_finished."""


class FrameMachine:
    """One session's frames → messages."""

    def __init__(self, ledger: InputLedger, init: Callable[[], InitMessage | None],
                 turn_ended: Callable[[], None]) -> None:
        self.ledger = ledger
        self._init = init
        self._turn_ended = turn_ended
        self.abort_deadline: float | None = None
        """When to give up waiting for the ``turn_finished`` of an acknowledged abort."""

    def aborted(self) -> None:
        """The server acknowledged an abort: its turn must end within :data:`ABORT_GRACE`."""
        if self.ledger.open():
            self.abort_deadline = anyio.current_time() + ABORT_GRACE

    def handle(self, frame: dict[str, Any]) -> list[Message]:
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
        elif kind == GAVE_UP:
            return self._give_up()
        elif kind == LOST:
            return self.fail(f"{frame.get('error')}; the turn in flight was lost")
        return []

    def fail(self, error: str) -> list[Message]:
        """The connection is gone: every open input ends with an error; nothing is owed."""
        self.abort_deadline = None
        self._turn_ended()
        failed = self.ledger.drop_all()
        if not failed:
            return []
        init = self._init()
        return [ResultMessage(
            success=False, subtype="error", error=error, error_code="server_died",
            agent_id=init.agent_id if init else None,
            conversation_id=init.conversation_id if init else None,
        ) for _ in failed]

    def _on_accepted(self, frame: dict[str, Any]) -> None:
        entry = self.ledger.by_request(frame.get("request_id"))
        if entry is None or not frame.get("accepted"):
            return
        entry.accepted = True
        if frame.get("disposition") != "queued":
            self.ledger.started(entry)

    def _on_loop_status(self, status: object) -> None:
        runs = status.get("client_message_ids_by_run_id") if isinstance(status, dict) else None
        if not isinstance(runs, dict):
            return
        ledger = self.ledger
        for run_id, cmids in runs.items():
            entries = [e for c in (cmids if isinstance(cmids, list) else ())
                       if (e := ledger.by_cmid(c)) is not None]
            if not entries:
                # A run for inputs we no longer wait for: after a crash the server replays
                # the inputs it had accepted, whose turns already ended here with an error.
                ledger.foreign_runs.add(run_id)
                continue
            ledger.foreign_runs.discard(run_id)
            for entry in entries:
                if run_id not in entry.run_ids:
                    entry.run_ids.append(run_id)
                    if not entry.started:
                        ledger.started(entry)

    def _on_queue(self, removed: object) -> list[Message]:
        out: list[Message] = []
        ledger = self.ledger
        for item in removed if isinstance(removed, list) else ():
            cmid = item.get("client_message_id") if isinstance(item, dict) else None
            entry = ledger.by_cmid(cmid) if cmid is not None else None
            if entry is None:
                continue
            if item.get("disposition") == "dequeued":
                ledger.started(entry)
            elif item.get("disposition") == "cancelled" and not entry.ended:
                entry.owed = False  # it never ran: no finish will come
                out += self._end(entry, {"stop_reason": "cancelled"})
        ledger.prune()
        return out

    def _on_delta(self, delta: dict[str, Any]) -> list[Message]:
        ledger = self.ledger
        if delta.get("message_type") == "user_message":
            otid = delta.get("otid")
            entry = ledger.by_cmid(otid)
            if entry is not None and not entry.started:
                ledger.started(entry)
            ledger.replaying = entry is None and otid in ledger.ghosts
        if delta.get("run_id") in ledger.foreign_runs:
            return []
        owners = ledger.by_run(delta.get("run_id"))
        if not owners and ledger.replaying:
            return []  # the server replays an input whose turn ended here already
        owner = owners[0] if owners else ledger.current()
        if owner is None or owner.ended:
            return []  # a late frame of a turn whose result was already given
        return owner.state.feed(delta)

    def _on_finished(self, frame: dict[str, Any]) -> list[Message]:
        ledger = self.ledger
        owned = ledger.by_run(frame.get("run_id"))
        if frame.get("run_id") in ledger.foreign_runs or (ledger.replaying and not owned):
            ledger.replaying = False
            return []
        ledger.replaying = False
        owners = owned or [e for e in [ledger.current()] if e]
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
        if self.abort_deadline is not None and not ledger.open():
            self.abort_deadline = None
        ledger.prune()
        return out

    def _end(self, entry: Input, frame: dict[str, Any]) -> list[Message]:
        entry.ended = True
        self._turn_ended()
        init = self._init()
        return entry.state.finish(frame, init.agent_id if init else None,
                                  init.conversation_id if init else None)

    def _give_up(self) -> list[Message]:
        """An abort got no turn_finished in time: end the turn; the server still owes it."""
        self.abort_deadline = None
        entry = next(iter(self.ledger.open()), None)
        if entry is None:
            return []
        out = self._end(entry, {"stop_reason": "cancelled"})
        self.ledger.prune()
        return out
