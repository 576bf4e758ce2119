"""Bolt listeners: events, approval buttons and the ``/lettabot`` slash command.

They are registered against :class:`ListenerHost` — the few things a listener needs (the
bot, a task group, name and identity lookups, an ephemeral reply) — not the whole adapter;
payloads become :class:`InboundMessage` in :mod:`lettabot_slack.events` (pure functions).

Events go to :meth:`BotAPI.handle_message` inside the request (it only queues), so a
failure of the runtime answers Slack with a 500 (:class:`~lettabot_slack.server.RetryLater`)
and Slack retries; the runtime dedupes retries by ``event_id``. A payload the listeners
cannot read is never that: it is answered 400. Buttons and commands ack at once and do
their work in the adapter's task group (Slack wants an answer within 3 seconds).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from lettabot.runtime.adapter import BotAPI, MessageRef, Scope
from lettabot.runtime.inflight import InFlight
from lettabot_slack import blocks
from lettabot_slack.events import (
    ADAPTER,
    COMMANDS,
    Filters,
    Identity,
    Ignored,
    dm_or_here,
    inbound_from_event,
    slash_scope,
    text_command,
)
from lettabot_slack.server import RetryLater

__all__ = ["COMMAND", "ListenerHost", "register"]

log = logging.getLogger("lettabot.slack")

COMMAND = "/lettabot"
_COMMANDS = COMMANDS


class ListenerHost(Protocol):
    """What the listeners need from the adapter (:class:`~lettabot_slack.SlackAdapter`)."""

    bot: BotAPI
    filters: Filters
    handlers: InFlight
    """Event handlers in flight (finished before the adapter stops)."""

    async def identity(self) -> Identity: ...

    async def user_name(self, user_id: str) -> str: ...

    def spawn(self, job: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``job`` after the ack, in the adapter's task group."""
        ...

    def in_order(self, key: str) -> AbstractAsyncContextManager[None]: ...

    def first_delivery(self, event_id: str) -> bool: ...

    def saw_message(self, scope: Scope, channel: str, ts: str) -> None: ...

    def rated_scope(self, ts: str) -> Scope | None:
        """The scope of an answer offered feedback buttons (None if unknown)."""
        ...

    async def suggest_prompts(self, channel: str, thread_ts: str) -> None: ...

    async def post(self, scope: Scope, text: str) -> MessageRef: ...

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None: ...

    async def whisper(self, channel: str, user_id: str, text: str,
                      thread_ts: str | None) -> None:
        """An ephemeral message for ``user_id`` in ``channel`` (a thread's, if given)."""
        ...


def register(app: AsyncApp, adapter: ListenerHost) -> None:
    """Attach the listeners to ``app``; they act through ``adapter``."""

    async def on_event(body: dict[str, Any]) -> None:
        with adapter.handlers.track():
            await _on_event(body)

    async def _on_event(body: dict[str, Any]) -> None:
        try:
            identity = await adapter.identity()  # asked at start: cached
        except Exception as exc:
            raise RetryLater("auth.test failed") from exc
        message = inbound_from_event(body, identity, adapter.filters)
        if isinstance(message, Ignored):
            log.debug("slack: ignored event %s: %s", body.get("event_id"), message.reason)
            return
        command = text_command(message.text) if message.mentioned else None
        if command is not None:
            # "@lettabot reset": once per event (Slack may deliver it again)
            if adapter.first_delivery(message.dedupe_id):
                scope, user_id = message.scope, message.user_id
                adapter.spawn(
                    lambda: _command(adapter, scope, user_id, command, ""), f"@ {command}"
                )
            return
        # One scope's messages reach the runtime in the order Slack delivered them: the
        # (possibly slow) name lookup happens inside the scope's turn, never before it.
        # Past this point the message was read: a failure is ours, and Slack should retry.
        try:
            async with adapter.in_order(message.scope.key):
                name = ""
                if not message.is_bot and adapter.bot.may_talk(ADAPTER, message.user_id):
                    with anyio.move_on_after(1.5):  # nice to have; the ack won't wait
                        name = await adapter.user_name(message.user_id)
                if name:
                    message = message.model_copy(update={"user_name": name})
                adapter.saw_message(message.scope, message.scope.channel, message.message_id)
                await adapter.bot.handle_message(message)
        except Exception as exc:
            raise RetryLater("the runtime could not take the message") from exc

    app.event("app_mention")(on_event)
    app.event("message")(on_event)

    async def on_thread_started(body: dict[str, Any]) -> None:
        """Someone opened a new assistant thread (Messages tab): suggested prompts."""
        thread = (body.get("event") or {}).get("assistant_thread") or {}
        channel, ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        user = str(thread.get("user_id") or "")
        if channel and ts and adapter.bot.may_talk(ADAPTER, user):
            adapter.spawn(lambda: adapter.suggest_prompts(channel, ts), "suggested prompts")

    app.event("assistant_thread_started")(on_thread_started)

    async def on_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        decision = blocks.ACTIONS[action["action_id"]]
        request_id = str(action.get("value") or "")
        user = body.get("user") or {}
        user_id = str(user.get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        container = body.get("container") or {}
        thread = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")

        async def decide() -> None:
            name = await adapter.user_name(user_id) or str(user.get("username") or "")
            outcome = await adapter.bot.decide_approval(request_id, decision, user_id, name)
            log.info("slack: %s on %s by %s: %s", decision, request_id, user_id, outcome.status)
            if outcome.status != "decided" and channel:
                await adapter.whisper(channel, user_id, outcome.message, thread)

        adapter.spawn(decide, f"approval click {request_id}")

    app.action(re.compile(blocks.ACTION_PATTERN))(on_action)

    async def on_feedback(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        ts = str((body.get("container") or {}).get("message_ts") or "")
        rating = action.get("value")
        scope = adapter.rated_scope(ts)
        if scope is None or rating not in ("good", "bad") or not user_id:
            return

        async def record() -> None:
            if await adapter.bot.record_feedback(scope, ts, user_id, rating):
                log.info("slack: feedback %s on %s by %s", rating, ts, user_id)

        adapter.spawn(record, f"feedback on {ts}")

    app.action(blocks.FEEDBACK_ACTION)(on_feedback)

    async def on_stop(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Stop: the ``stop`` command for the clicker, in the scope the button is for (it
        must be in the channel the click came from)."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        try:
            scope = Scope.from_key(str(action.get("value") or ""))
        except ValueError:
            return
        if scope.adapter != ADAPTER or scope.channel != channel or not user_id:
            return

        async def stop() -> None:
            result = await adapter.bot.run_command(scope, user_id, "stop")
            await adapter.whisper(channel, user_id, result.text, scope.thread)

        adapter.spawn(stop, f"stop in {scope.key}")

    app.action(blocks.STOP_ACTION)(on_stop)

    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        words = str(body.get("text") or "").strip()
        scope, rest = slash_scope(body, words)
        command, _, args = rest.partition(" ")
        user_id = str(body.get("user_id") or "")
        command = command.lower() or "help"
        if command not in _COMMANDS:
            text = f"Unknown command `{command}`. Try: " + ", ".join(f"`{c}`" for c in _COMMANDS)
            adapter.spawn(lambda: _ephemeral(adapter, scope, user_id, text), "slash reply")
            return
        typed_in = str(body.get("channel_id") or "")
        if scope.channel != typed_in:
            # A pasted link may name any thread, including someone else's DM with the bot or
            # a channel the caller cannot see: commands act only where they were typed.
            text = ("Run this command in the channel of that thread (commands act only on "
                    "threads of the channel you type them in).")
            adapter.spawn(lambda: _ephemeral(adapter, dm_or_here(typed_in, scope), user_id,
                                             text), "slash reply")
            return
        if not scope.is_dm and not adapter.filters.channel_ok(scope.channel):
            text = "lettabot does not work in that channel."
            adapter.spawn(lambda: _ephemeral(adapter, scope, user_id, text), "slash reply")
            return

        adapter.spawn(
            lambda: _command(adapter, scope, user_id, command, args.strip()), f"/lettabot {command}"
        )

    app.command(COMMAND)(on_command)

    # Last (Bolt runs the first listener that matches): everything else Slack may send is
    # acknowledged and dropped, so it gets 200 (no retries, the subscription stays on) and
    # Bolt's "unhandled request" warning, which quotes the request, is never logged.
    async def ignore(ack: AsyncAck) -> None:
        await ack()

    anything = re.compile(".*")
    for register in (app.event, app.action, app.command, app.view, app.shortcut,
                     app.options):
        register(anything)(ignore)


async def _command(adapter: ListenerHost, scope: Scope, user_id: str, command: str,
                   args: str) -> None:
    result = await adapter.bot.run_command(scope, user_id, command, args)
    if result.ephemeral:
        await _ephemeral(adapter, scope, user_id, result.text)
    else:
        await adapter.post(scope, result.text)


async def _ephemeral(adapter: ListenerHost, scope: Scope, user_id: str, text: str) -> None:
    await adapter.notify(scope, text, user_id=user_id)
