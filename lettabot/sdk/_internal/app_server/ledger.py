"""The input ledger: every message a session sent, from ``input`` to its result.

The server runs a conversation's inputs one at a time, in order; ``update_loop_status``
maps its runs to our ``client_message_id``\\ s. The ledger records which inputs were
accepted, which one runs, which runs are whose, and which inputs it still owes a finish
(an abort the server finishes late), so every frame finds its input, or none.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from lettabot.sdk._internal.app_server.turn import TurnState

__all__ = ["Input", "InputLedger"]


@dataclass(eq=False)
class Input:
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


class InputLedger:
    """The inputs of one session, oldest first."""

    def __init__(self) -> None:
        self.inputs: deque[Input] = deque()
        self.foreign_runs: set[str] = set()
        """Runs of inputs we no longer wait for (replayed by a restarted server)."""
        self.ghosts: set[str] = set()
        """Inputs whose turns ended here when the connection died (a restarted server may
        replay them)."""
        self.replaying = False
        """The frames now streaming belong to a replayed ghost input."""

    def add(self, entry: Input) -> None:
        self.inputs.append(entry)

    def forget(self, entry: Input) -> None:
        if entry in self.inputs:
            self.inputs.remove(entry)

    def open(self) -> list[Input]:
        """Accepted inputs whose result has not been given yet."""
        return [i for i in self.inputs if i.accepted and not i.ended]

    def started(self, entry: Input) -> None:
        """``entry`` runs now: every earlier input is finished on the server."""
        entry.started = True
        for earlier in list(self.inputs):
            if earlier is entry:
                break
            earlier.owed = False
        self.prune()

    def prune(self) -> None:
        self.inputs = deque(i for i in self.inputs if not (i.ended and not i.owed))

    def by_request(self, request_id: object) -> Input | None:
        return next((i for i in self.inputs if i.request_id == request_id), None)

    def by_cmid(self, cmid: object) -> Input | None:
        return next((i for i in self.inputs if i.cmid == cmid), None)

    def by_run(self, run_id: object) -> list[Input]:
        if not isinstance(run_id, str):
            return []
        return [i for i in self.inputs if run_id in i.run_ids]

    def current(self) -> Input | None:
        """The input the server is on: the oldest started one it still owes a finish. (An
        input queued behind a turn this session did not start, e.g. one still running from
        before a reopen, gets none of that turn's frames.)"""
        return next((i for i in self.inputs if i.owed and i.accepted and i.started), None)

    def drop_all(self) -> list[Input]:
        """The connection is gone: forget every input (remembered as ghosts); returns the
        open ones, each owed an error result."""
        failed = self.open()
        self.ghosts.update(i.cmid for i in self.inputs)
        self.inputs.clear()
        return failed
