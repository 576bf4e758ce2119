"""One /sync response at a time: invitations, rooms the bot may not serve, encrypted rooms,
and timeline events (messages, typed commands, reactions) handed to the runtime.

Events are handled in the order the homeserver sent them, each once: ids handled lately
are kept with the sync position (:class:`~lettabot_matrix.state.SyncState`), saved after
every batch. The first sync of a new bot (no position yet) reads no history: it only learns
the rooms and the position, so nothing said before the bot started is answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import aiohttp
from mautrix.errors import MatrixConnectionError, MatrixRequestError

from lettabot.runtime.adapter import (
    ApprovalDecision,
    BotAPI,
    InboundMessage,
    Scope,
)
from lettabot_matrix.events import (
    APPROVAL_COMMANDS,
    Encrypted,
    Identity,
    Ignored,
    Reaction,
    TypedCommand,
    classify,
)
from lettabot_matrix.render import REACTIONS
from lettabot_matrix.settings import MatrixSettings
from lettabot_matrix.state import SyncState

__all__ = ["ENCRYPTED_NOTICE", "ListenerHost", "Listeners"]

log = logging.getLogger(__name__)

ENCRYPTED_NOTICE = (
    "This room is end-to-end encrypted, and lettabot does not support encryption: it cannot "
    "read messages here, so it is leaving. Talk to it in an unencrypted room or DM (create "
    "the DM with encryption turned off).")
NOT_SERVED_NOTICE = "lettabot does not work in this room (it is not in matrix.rooms); leaving."


class ListenerHost(Protocol):
    """What the listeners need from the adapter."""

    settings: MatrixSettings
    bot: BotAPI
    state: SyncState
    me: Identity

    def spawn(self, work: Callable[[], Awaitable[None]], what: str) -> None: ...
    async def join(self, room_id: str) -> bool: ...
    async def leave(self, room_id: str, notice: str = "") -> None: ...
    async def is_encrypted(self, room_id: str) -> bool: ...
    async def member_count(self, room_id: str) -> int: ...
    def members_changed(self, room_id: str) -> None: ...
    async def post(self, scope: Scope, text: str) -> Any: ...
    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None: ...
    def prompt_for(self, event_id: str) -> tuple[str, Scope] | None: ...
    async def fetch_prompt(self, room_id: str, event_id: str) -> tuple[str, Scope] | None: ...
    def latest_prompt(self, scope: Scope) -> str | None: ...


RETRYABLE = (MatrixConnectionError, aiohttp.ClientError, TimeoutError, OSError)
"""The homeserver did not answer: retried with backoff, never skipped."""


@contextmanager
def _one_room(room_id: str) -> Iterator[None]:
    """A room that cannot be handled (the homeserver refuses a call about it) is logged and
    skipped, so it cannot stall every other room; an unreachable homeserver is raised."""
    try:
        yield
    except RETRYABLE:
        raise
    except MatrixRequestError as exc:
        log.warning("matrix: skipped a sync update of %s: %s", room_id, exc)


def _events(section: Any) -> list[Any]:
    if isinstance(section, dict) and isinstance(section.get("events"), list):
        return list(section["events"])
    return []


class Listeners:
    def __init__(self, host: ListenerHost) -> None:
        self.host = host
        self._checked: dict[str, bool] = {}
        """Rooms judged in this process: whether the bot serves them."""

    async def handle_sync(self, response: dict[str, Any]) -> None:
        state = self.host.state
        initial = state.since is None
        rooms = response.get("rooms") if isinstance(response.get("rooms"), dict) else {}
        assert isinstance(rooms, dict)
        invites = rooms.get("invite") if isinstance(rooms.get("invite"), dict) else {}
        for room_id, invite in (invites or {}).items():
            with _one_room(str(room_id)):
                await self._on_invite(str(room_id), invite)
        joined = rooms.get("join") if isinstance(rooms.get("join"), dict) else {}
        for room_id, room in (joined or {}).items():
            with _one_room(str(room_id)):
                await self._on_room(str(room_id), room if isinstance(room, dict) else {},
                                    initial)
        left = rooms.get("leave") if isinstance(rooms.get("leave"), dict) else {}
        for room_id in left or {}:
            self._checked.pop(str(room_id), None)
        next_batch = response.get("next_batch")
        if isinstance(next_batch, str) and next_batch:
            state.since = next_batch
        state.save()

    # -- rooms ---------------------------------------------------------------------------

    async def _on_invite(self, room_id: str, invite: Any) -> None:
        host = self.host
        inviter, direct = "", False
        for ev in _events(invite.get("invite_state") if isinstance(invite, dict) else None):
            if (isinstance(ev, dict) and ev.get("type") == "m.room.member"
                    and ev.get("state_key") == host.me.user_id):
                inviter = str(ev.get("sender") or "")
                content = ev.get("content") if isinstance(ev.get("content"), dict) else {}
                direct = bool(content and content.get("is_direct"))
        listed = room_id in host.settings.rooms
        if not listed and not (inviter and host.bot.may_talk("matrix", inviter)):
            log.warning("matrix: declined an invitation to %s from %s (not an allowed user, "
                        "and the room is not in matrix.rooms)", room_id, inviter or "someone")
            await host.leave(room_id)
            return
        if await host.join(room_id):
            log.info("matrix: joined %s (invited by %s)", room_id, inviter)
            if direct:
                host.state.direct.add(room_id)

    async def is_dm(self, room_id: str) -> bool:
        """Invited as a DM (``is_direct``), or two people (the bot and one other) when the
        bot first saw the room — judged once and remembered, so a room that later shrinks
        to two keeps its threads as they were."""
        state = self.host.state
        if room_id in state.direct:
            return True
        if room_id in state.group or room_id in self.host.settings.rooms:
            return False
        dm = await self.host.member_count(room_id) <= 2
        (state.direct if dm else state.group).add(room_id)
        return dm

    async def _serves(self, room_id: str, room: dict[str, Any]) -> bool:
        """Judge a room once per process (and again when its encryption changes)."""
        host = self.host
        turned_on = any(isinstance(ev, dict) and ev.get("type") == "m.room.encryption"
                        and "state_key" in ev
                        for ev in _events(room.get("state")) + _events(room.get("timeline")))
        if room_id in self._checked and not turned_on:
            return self._checked[room_id]
        ok = True
        if turned_on or await host.is_encrypted(room_id):
            log.warning("matrix: %s is end-to-end encrypted; lettabot cannot read it and "
                        "leaves it", room_id)
            await host.leave(room_id, ENCRYPTED_NOTICE)
            ok = False
        elif (host.settings.rooms and room_id not in host.settings.rooms
              and not await self.is_dm(room_id)):
            log.warning("matrix: leaving %s: not in matrix.rooms", room_id)
            await host.leave(room_id, NOT_SERVED_NOTICE)
            ok = False
        self._checked[room_id] = ok
        return ok

    async def _on_room(self, room_id: str, room: dict[str, Any], initial: bool) -> None:
        if any(isinstance(ev, dict) and ev.get("type") == "m.room.member"
               for ev in _events(room.get("state")) + _events(room.get("timeline"))):
            self.host.members_changed(room_id)
        if not await self._serves(room_id, room):
            return
        if initial:
            return  # history before the bot's first start is not answered
        state = self.host.state
        for event in self._since_invited(_events(room.get("timeline"))):
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if isinstance(event_id, str) and state.seen(event_id):
                continue
            try:
                await self._on_event(room_id, event)
            except RETRYABLE:
                raise  # the homeserver is away: this batch is handled again, this event too
            except Exception:
                log.exception("matrix: handling event %s in %s failed", event_id, room_id)
            if isinstance(event_id, str):
                state.mark(event_id)

    def _since_invited(self, timeline: list[Any]) -> list[Any]:
        """A room the bot just joined shows some history: only what was said after the
        bot was invited (or joined, when it was not invited) is for it."""
        me = self.host.me.user_id
        cut = None
        for i, ev in enumerate(timeline):
            if (isinstance(ev, dict) and ev.get("type") == "m.room.member"
                    and ev.get("state_key") == me and isinstance(ev.get("content"), dict)):
                membership = ev["content"].get("membership")
                if membership == "invite" or (membership == "join" and cut is None):
                    cut = i
        return timeline if cut is None else timeline[cut + 1:]

    # -- events --------------------------------------------------------------------------

    async def _on_event(self, room_id: str, event: Any) -> None:
        host = self.host
        dm = await self.is_dm(room_id)
        what = classify(event, room_id, is_dm=dm, me=host.me, settings=host.settings)
        if isinstance(what, Ignored):
            log.debug("matrix: ignored an event in %s: %s", room_id, what.reason)
        elif isinstance(what, InboundMessage):
            await host.bot.handle_message(what)
        elif isinstance(what, TypedCommand):
            host.spawn(lambda: self._command(what), f"command {what.name}")
        elif isinstance(what, Reaction):
            if what.key in REACTIONS:
                host.spawn(lambda: self._reaction(what), "reaction")
        elif isinstance(what, Encrypted):
            await self._encrypted(what)

    async def _encrypted(self, what: Encrypted) -> None:
        host = self.host
        log.warning("matrix: an encrypted message from %s in %s cannot be read (lettabot does "
                    "not support end-to-end encryption)", what.user_id, what.room_id)
        if what.room_id not in host.state.warned_encrypted:
            host.state.warned_encrypted.add(what.room_id)
            self._checked[what.room_id] = False
            await host.leave(what.room_id, ENCRYPTED_NOTICE)

    async def _command(self, command: TypedCommand) -> None:
        host = self.host
        if command.name in APPROVAL_COMMANDS:
            request_id = command.args.split()[0] if command.args else host.latest_prompt(
                command.scope)
            if request_id is None:
                await host.notify(command.scope, "There is no approval waiting here.",
                                  user_id=command.user_id)
                return
            decision: ApprovalDecision = APPROVAL_COMMANDS[command.name]  # type: ignore[assignment]
            await self._decide(command.scope, request_id, decision, command.user_id)
            return
        result = await host.bot.run_command(command.scope, command.user_id, command.name,
                                            command.args)
        if result.ephemeral:
            await host.notify(command.scope, result.text, user_id=command.user_id)
        else:
            await host.post(command.scope, result.text)

    async def _reaction(self, reaction: Reaction) -> None:
        host = self.host
        found = host.prompt_for(reaction.target) or await host.fetch_prompt(
            reaction.room_id, reaction.target)
        if found is None:
            return  # a reaction on something else
        request_id, scope = found
        decision: ApprovalDecision = REACTIONS[reaction.key]  # type: ignore[assignment]
        await self._decide(scope, request_id, decision, reaction.user_id)

    async def _decide(self, scope: Scope, request_id: str, decision: ApprovalDecision,
                      user_id: str) -> None:
        host = self.host
        outcome = await host.bot.decide_approval(request_id, decision, user_id, user_id)
        if outcome.status == "decided":
            return  # the runtime edits the prompt ("Approved by …")
        text = ("This approval request has expired (lettabot restarted or it timed out)."
                if outcome.status == "unknown" else outcome.message)
        await host.notify(scope, text, user_id=user_id)
