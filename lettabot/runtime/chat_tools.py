"""Tools lettabot gives the agent to act in the chat: react, send a file, schedule.

They are SDK custom tools (:mod:`lettabot.sdk.tools`): the CLI asks lettabot to run them,
so they run here, in lettabot's process, for the turn that is running in the tool's
conversation (:class:`~lettabot.runtime.approvals.TurnOwner`). They need no click because
each checks its own input, with the same limits a person in the chat has:

- ``react``: an emoji on the message that started the turn;
- ``send_file``: a file *inside the workspace* (never lettabot's or Letta's state, the
  same rule as reads without a click), up to ``chat_tools.send_max_bytes``;
- ``schedule`` / ``list_schedules`` / ``cancel_schedule``: prompts run later in this
  scope, capped per scope and per bot, a repeating one no more often than
  ``chat_tools.min_interval_minutes``, a one-off no sooner than
  ``chat_tools.min_delay_minutes`` after it is made; only its creator or an approver
  cancels one. Each run is a turn whose tool calls ask for approval as the creator's
  message would, and which cannot ``schedule`` (a run that schedules itself again would
  never stop).

In a *tainted* turn (its input quotes people who may not talk to the bot) none of them
runs without an approver's click (the session's ``can_use_tool`` sends them to the broker).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import Adapter, SupportsFiles, SupportsReactions
from lettabot.runtime.config import ChatToolsConfig
from lettabot.runtime.jobs import TurnOwner
from lettabot.runtime.schedules import (
    ScheduleRunner,
    check_cron,
    check_timezone,
    describe,
    min_gap,
    new_schedule_id,
    next_run,
)
from lettabot.runtime.store import Schedule, Store, utcnow
from lettabot.runtime.tool_guard import ToolGuard
from lettabot.runtime.workspaces import scoped_guard

__all__ = ["RUNTIME_TOOLS", "ChatTools"]

log = logging.getLogger("lettabot.runtime.chat_tools")

RUNTIME_TOOLS = frozenset({"react", "send_file", "schedule", "list_schedules",
                           "cancel_schedule"})
MAX_AHEAD = timedelta(days=366)


class ToolRefused(Exception):
    """The call is not allowed; its message is what the agent reads."""


@dataclass
class ChatTools:
    """Builds the runtime tools for one conversation's session."""

    config: ChatToolsConfig
    adapter_for: Callable[[str], Adapter | None]
    store: Store
    runner: ScheduleRunner
    notify: Callable[..., Awaitable[None]]
    clock: Callable[[], datetime] = utcnow

    def for_session(self, owner: Callable[[], TurnOwner | None], guard: ToolGuard,
                    access: AccessPolicy) -> list[sdk.Tool]:
        """The enabled tools, acting for whichever turn ``owner()`` names when called."""
        def current() -> TurnOwner:
            turn = owner()
            if turn is None:
                raise ToolRefused("no chat turn is running")
            return turn

        def wrap(name: str, description: str, parameters: dict[str, Any],
                 run: Callable[[TurnOwner, dict[str, Any]], Awaitable[str]]) -> sdk.Tool:
            async def handler(args: dict[str, Any]) -> sdk.ToolResult:
                try:
                    return sdk.ToolResult.of(await run(current(), args))
                except ToolRefused as exc:
                    return sdk.ToolResult.error(f"{name}: {exc}")
            return sdk.Tool(name=name, description=description, parameters=parameters,
                            handler=handler)

        enabled = set(self.config.enabled)
        tools: list[sdk.Tool] = []
        if "react" in enabled:
            tools.append(wrap("react", "React to the message you are answering with an emoji "
                              "(a character such as 👍 or a name such as thumbsup).",
                              _obj(emoji=("string", "the emoji")), self._react))
        if "send_file" in enabled:
            async def send(turn: TurnOwner, args: dict[str, Any]) -> str:
                return await self._send_file(turn, args, guard)
            tools.append(wrap("send_file", "Send a file from your working folder to this chat "
                              "thread (a report, a log, code you wrote).",
                              _obj(path=("string", "the file, relative to your working folder"),
                                   comment=("string", "a short message to go with it"),
                                   required=["path"]), send))
        if "schedule" in enabled:
            tools.append(wrap(
                "schedule",
                "Run a prompt later in this thread, as if sent here: once (`in_minutes` or "
                "`at`, an ISO 8601 time) or repeatedly (`cron`, five fields, read in "
                "`timezone`). Example: cron \"0 9 * * 1-5\" for every weekday at 9:00.",
                _obj(prompt=("string", "what to do then, written as a message to yourself"),
                     cron=("string", "five-field cron expression, for a repeating schedule"),
                     at=("string", "ISO 8601 date and time, for one run"),
                     in_minutes=("integer", "minutes from now, for one run"),
                     timezone=("string", "IANA time zone for cron and at (default UTC)"),
                     required=["prompt"]),
                self._schedule))
            tools.append(wrap("list_schedules", "List the schedules of this thread.",
                              _obj(), self._list))

            async def cancel(turn: TurnOwner, args: dict[str, Any]) -> str:
                return await self._cancel(turn, args, access)
            tools.append(wrap("cancel_schedule", "Cancel a schedule of this thread by its id.",
                              _obj(id=("string", "the schedule's id, from list_schedules"),
                                   required=["id"]), cancel))
        return tools

    # -- react -------------------------------------------------------------------------

    async def _react(self, turn: TurnOwner, args: dict[str, Any]) -> str:
        emoji = str(args.get("emoji") or "").strip()
        if not emoji or len(emoji) > 64:
            raise ToolRefused("give one emoji")
        adapter = self.adapter_for(turn.scope.adapter)
        if not isinstance(adapter, SupportsReactions):
            raise ToolRefused("this chat cannot show reactions")
        if not turn.message_id:
            raise ToolRefused("there is no message to react to in a scheduled run")
        try:
            await adapter.react(turn.scope, turn.message_id, emoji)
        except ValueError as exc:
            raise ToolRefused(str(exc)) from exc
        return f"Reacted with {emoji}."

    # -- send_file ---------------------------------------------------------------------

    async def _send_file(self, turn: TurnOwner, args: dict[str, Any], guard: ToolGuard) -> str:
        raw = str(args.get("path") or "").strip()
        if not raw:
            raise ToolRefused("give the file's path")
        guard = scoped_guard(guard, turn.scope.key)  # this thread's folder, no other
        adapter = self.adapter_for(turn.scope.adapter)
        if not isinstance(adapter, SupportsFiles):
            raise ToolRefused("this chat cannot take files")
        path = guard.resolve(raw)
        if not guard.sendable(path):
            raise ToolRefused(f"{raw} is outside your working folder (or part of lettabot's "
                              "own state); only files of the working folder can be sent")
        data = _read(path, self.config.send_max_bytes, raw)
        comment = str(args.get("comment") or "")[:2000]
        await adapter.send_file(turn.scope, path.name, data, comment=comment)
        log.info("sent %s (%d bytes) to %s", path, len(data), turn.scope.key)
        return f"Sent {path.name} ({len(data):,} bytes) to the chat."

    # -- schedules ---------------------------------------------------------------------

    async def _schedule(self, turn: TurnOwner, args: dict[str, Any]) -> str:
        if turn.scheduled:  # else a run that schedules itself again never stops
            raise ToolRefused("this is a scheduled run, and a scheduled run cannot create or "
                              "re-arm schedules; say in your reply what should be scheduled, "
                              "and a person can ask for it")
        prompt = str(args.get("prompt") or "").strip()
        if not prompt:
            raise ToolRefused("give the prompt to run")
        if len(prompt) > 4000:
            raise ToolRefused("the prompt is longer than 4,000 characters")
        timezone = str(args.get("timezone") or "UTC").strip()
        if (why := check_timezone(timezone)) is not None:
            raise ToolRefused(f"timezone {timezone!r} {why}")
        now = self.clock()
        cron = str(args.get("cron") or "").strip() or None
        when = _one_time(args, timezone, now)
        if (cron is None) == (when is None):
            raise ToolRefused("give exactly one of cron, at or in_minutes")
        if cron is not None:
            if (why := check_cron(cron)) is not None:
                raise ToolRefused(f"cron {cron!r} {why}")
            gap = min_gap(cron, timezone, now)
            if gap < timedelta(minutes=self.config.min_interval_minutes):
                raise ToolRefused(f"that runs every {gap}; the shortest allowed interval is "
                                  f"{self.config.min_interval_minutes} minutes")
            when = next_run(cron, timezone, now)
        assert when is not None
        if when <= now or when - now > MAX_AHEAD:
            raise ToolRefused("the time must be in the future, within a year")
        delay = timedelta(minutes=self.config.min_delay_minutes)
        if cron is None and when - now < delay:
            raise ToolRefused(f"a one-off runs at least {_minutes(delay)} after it is made")
        every = [s for s in await self.store.list_schedules() if s.source == "chat"]
        mine = [s for s in every if s.scope == turn.scope.key]
        if len(mine) >= self.config.schedules_per_scope:
            raise ToolRefused(f"this thread has {len(mine)} schedules already (the limit); "
                              "cancel one first")
        if len(every) >= self.config.schedules_per_bot:
            raise ToolRefused(f"this bot has {len(every)} schedules already in all its "
                              "threads (the limit); cancel one first")
        schedule = await self.store.add_schedule(Schedule(
            id=new_schedule_id(), scope=turn.scope.key, prompt=prompt, cron=cron,
            timezone=timezone, next_run=when,
            created_by=f"{turn.scope.adapter}:{turn.user_id}" if turn.user_id else "",
            source="chat", created_at=now))
        self.runner.wake()
        line = describe(schedule)
        await self.notify(turn.scope, f"🗓️ Scheduled {line}. Say `schedules` to list them, "
                                      f"`schedules cancel {schedule.id}` to cancel it.")
        log.info("schedule %s created in %s by %s", schedule.id, turn.scope.key, turn.user_id)
        return f"Scheduled {line}."

    async def _list(self, turn: TurnOwner, args: dict[str, Any]) -> str:
        found = await self.store.list_schedules(turn.scope.key)
        if not found:
            return "This thread has no schedules."
        return "\n".join(describe(s) for s in found)

    async def _cancel(self, turn: TurnOwner, args: dict[str, Any], access: AccessPolicy) -> str:
        text = await cancel_schedule(self.store, turn.scope.key, str(args.get("id") or ""),
                                     turn.scope.adapter, turn.user_id, access)
        return text


async def cancel_schedule(store: Store, scope: str, schedule_id: str, adapter: str,
                          user_id: str, access: AccessPolicy) -> str:
    """Cancel ``schedule_id`` of ``scope`` for ``user_id`` (its creator or an approver)."""
    schedule = await store.get_schedule(schedule_id.strip())
    if schedule is None or schedule.scope != scope or schedule.next_run is None:
        raise ToolRefused(f"no schedule {schedule_id!r} here")
    mine = schedule.created_by == f"{adapter}:{user_id}"
    if not mine and not access.config.is_approver(adapter, user_id):
        raise ToolRefused("only the person who created it or an approver can cancel it"
                          + (" (config schedules: remove them from the config)"
                             if schedule.source == "config" else ""))
    await store.delete_schedule(schedule.id)
    return f"Cancelled schedule {schedule.id}."


def _minutes(delay: timedelta) -> str:
    minutes = delay.total_seconds() / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def _obj(required: list[str] | None = None, **props: tuple[str, str]) -> dict[str, Any]:
    return {"type": "object",
            "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()},
            "required": required or []}


def _one_time(args: dict[str, Any], timezone: str, now: datetime) -> datetime | None:
    minutes, at = args.get("in_minutes"), str(args.get("at") or "").strip()
    if minutes not in (None, "") and at:
        raise ToolRefused("give in_minutes or at, not both")
    if minutes not in (None, ""):
        try:
            return now + timedelta(minutes=float(minutes))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ToolRefused("in_minutes must be a number") from exc
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError as exc:
            raise ToolRefused(f"at {at!r} is not an ISO 8601 time") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(timezone))
        return when.astimezone(UTC)
    return None


def _read(path: Path, limit: int, shown: str) -> bytes:
    """The file's bytes; never through a symlink swapped in after the check."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise ToolRefused(f"{shown} does not exist") from exc
    except OSError as exc:
        raise ToolRefused(f"{shown} cannot be read ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        if not os.path.isfile(path) or os.fstat(f.fileno()).st_size > limit:
            raise ToolRefused(f"{shown} is not a regular file of at most {limit:,} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ToolRefused(f"{shown} is larger than {limit:,} bytes")
    return data
