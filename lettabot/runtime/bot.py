"""The :class:`Bot`: the runtime's stages wired together, behind the adapters' :class:`BotAPI`.

::

    async with Bot.open(config) as bot:
        bot.add_adapter(adapter)     # runs adapter.run() in the bot's task group
        await anyio.sleep_forever()

A message's path (docs/runtime.md): adapter → :class:`~lettabot.runtime.intake.Intake`
(access, dedupe, context) → :class:`~lettabot.runtime.scheduler.Scheduler` (lanes, fair
gate) → :class:`~lettabot.runtime.conversations.Conversations` (the scope's open session)
→ :class:`~lettabot.runtime.turns.TurnRunner` (the reply streamed into the chat). In a
cluster, intake's last step puts the message in the durable inbox
(:class:`~lettabot.runtime.cluster.replica.Replica`) and a replica's worker queues it.

Everything runs in one anyio task group; leaving the block drains (running turns finish
within ``grace`` seconds or are interrupted), closes every conversation (and so the App
Servers) and the store.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import (
    Adapter,
    AdapterFactory,
    ApprovalDecision,
    CommandResult,
    DecisionOutcome,
    HistoryEntry,
    InboundMessage,
    Scope,
    SupportsReadiness,
)
from lettabot.runtime.agents import AgentProfile, Agents
from lettabot.runtime.approvals import ApprovalBroker, ToolPolicy
from lettabot.runtime.budgets import Budgets
from lettabot.runtime.chat_tools import ChatTools
from lettabot.runtime.cli_setup import (
    cli_home,
    letta_client,
    protected_paths,
    session_options,
    tool_guard,
    tool_sandbox,
)
from lettabot.runtime.cluster.replica import Replica
from lettabot.runtime.commands import Commands
from lettabot.runtime.config import AdapterSettings, Config, ConfigError
from lettabot.runtime.conversations import Conversations
from lettabot.runtime.history import entries_from
from lettabot.runtime.hosts import HostWait
from lettabot.runtime.intake import Intake
from lettabot.runtime.jobs import TurnOwner
from lettabot.runtime.keyproxy import KeyProxy
from lettabot.runtime.letta_backend import ensure_backend
from lettabot.runtime.mcp import McpServers
from lettabot.runtime.metrics import Metrics, ServerSample, StateSample, rss_bytes
from lettabot.runtime.providers import connect_providers
from lettabot.runtime.router import Router
from lettabot.runtime.scheduler import Scheduler
from lettabot.runtime.schedules import ScheduleRunner
from lettabot.runtime.store import Approval, Schedule, Store, open_store
from lettabot.runtime.tracing import configure_tracing, failed, post_span, shutdown_tracing
from lettabot.runtime.turns import TurnRunner
from lettabot.runtime.workspaces import prepare_scope_dir

__all__ = ["Bot", "adapter_settings"]

log = logging.getLogger("lettabot.runtime")

HOUSEKEEPING_EVERY = 3600.0
"""Seconds between store purges (see :func:`housekeeping`)."""


def adapter_settings(config: Config) -> dict[str, AdapterSettings | dict[str, Any]]:
    """Each adapter's settings, as its factory takes them: the validated section model, or
    the free-form ``[adapters.<name>]`` table of an adapter that registers none."""
    out: dict[str, AdapterSettings | dict[str, Any]] = dict(config.sections())
    out.update({name: dict(section) for name, section in config.adapters.items()})
    return out


async def housekeeping(store: Store, retention: timedelta) -> None:
    """Keep no more than needed: expired dedupe ids and rules, and decided approvals
    past ``retention``, are deleted at start and every hour."""
    while True:
        try:
            counts = await store.purge(approvals_older_than=retention)
            if any(counts.values()):
                log.info("store housekeeping removed %s", counts)
        except Exception:
            log.warning("store housekeeping failed", exc_info=True)
        await anyio.sleep(HOUSEKEEPING_EVERY)


class Bot:
    """Implements :class:`~lettabot.runtime.adapter.BotAPI`. Build it with :meth:`open`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        show_tools: bool = True,
        prewarm: bool = True,
        idle_seconds: float = 900.0,
        demo: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.demo = demo
        """``lettabot run --demo``: a scripted model (the web chat shows a DEMO badge)."""
        self.adapters: dict[str, Adapter] = {}
        self.metrics = Metrics()
        # who may do what
        self.access = AccessPolicy(config.access, adapter_settings(config))
        self.policy = ToolPolicy.from_config(config.letta, tool_guard(config))
        self.broker = ApprovalBroker(store, self.access, config.approvals, self.policy,
                                     self.adapters.get, metrics=self.metrics)
        self.agents = Agents(config, store, guard=lambda letta: tool_guard(config, letta),
                             adapter_settings=adapter_settings(config),
                             create_agent=self._create_agent)
        self.router = Router(store, self.agents)
        # where the CLI runs: sandboxed, with provider keys kept here (see keyproxy)
        self.sandbox = tool_sandbox(config)
        # each agent's MCP servers: stdio ones in the sandbox, with the scope's folder
        self.mcp = McpServers(config.sandbox, sandboxed=self.sandbox is not None,
                              secret=protected_paths(config))
        for profile in self.agents.profiles:
            trust = self.mcp.trust(profile.name, profile.settings.mcp_servers)
            profile.policy = dataclasses.replace(profile.policy, mcp=trust)
        self.keys = KeyProxy()
        options = session_options(config, self.policy.cli_mode, self.sandbox)
        self.client = letta_client(config, options)
        # the pipeline: intake → scheduler → conversations → turn
        self.schedules = ScheduleRunner(store, self._run_scheduled,
                                        can_start=self._can_run_scheduled)
        self.chat_tools = ChatTools(config.chat_tools, self.adapters.get, store,
                                    self.schedules, self._notify)
        self.conversations = Conversations(
            client=self.client, router=self.router, broker=self.broker, notify=self._notify,
            session_options=options, prewarm=prewarm, tools_for=self._tools_for,
            workspaces=config.letta_cwd, letta_home=cli_home(config)[0] / ".letta",
            mcp_for=lambda profile, folder: self.mcp.for_session(profile.name, folder))
        self.budgets = Budgets(config.budgets, store, metrics=self.metrics)
        self.conversations.on_open = lambda how: self.metrics.sessions_opened.labels(how).inc()
        self.turns = TurnRunner(self.adapters.get, show_tools=show_tools,
                                stall_seconds=config.turns.stall_seconds,
                                waiting_for_click=self.broker.pending_in,
                                metrics=self.metrics, files=config.files,
                                workspace=config.letta_cwd,
                                reply_as_file_after=config.chat_tools.reply_as_file_after,
                                stop_button_after=config.turns.stop_button_after,
                                budgets=self.budgets)
        self.scheduler = Scheduler(conversations=self.conversations, turns=self.turns,
                                   router=self.router, broker=self.broker,
                                   notify=self._notify,
                                   max_concurrent_turns=config.servers.max_concurrent_turns,
                                   idle_seconds=idle_seconds)
        self.intake = Intake(store=store, router=self.router, scheduler=self.scheduler,
                             access=self.access, metrics=self.metrics, adapters=self.adapters,
                             notify=self._notify, thread_context=config.turns.thread_context,
                             clustered=config.cluster.enabled)
        self.commands = Commands(access=self.access, router=self.router,
                                 scheduler=self.scheduler, conversations=self.conversations,
                                 broker=self.broker,
                                 model=config.letta.model,
                                 cli_env={**os.environ, **config.letta.env},
                                 budgets=self.budgets, mcp=self.mcp)
        self.cluster: Replica | None = None
        if config.cluster.enabled:
            name = config.cluster.replica or f"{socket.gethostname()}-{os.getpid()}"
            self.cluster = Replica(
                config, name, store=store, router=self.router, scheduler=self.scheduler,
                conversations=self.conversations, broker=self.broker, access=self.access,
                metrics=self.metrics, adapters=self.adapters, notify=self._notify)
        self.host_wait: HostWait | None = None
        if config.hosts:  # messages for an unreachable host wait for it
            self.host_wait = HostWait(store=store, router=self.router, client=self.client,
                                      scheduler=self.scheduler, notify=self._notify,
                                      adapters=self.adapters,
                                      clustered=config.cluster.enabled)
            self.turns.hold = self.host_wait.hold
            self.commands.drop_held = self.host_wait.drop
            if self.cluster is not None:
                self.cluster.host_wait = self.host_wait
        self.metrics.watch(self._sample)
        self._tg: TaskGroup | None = None
        self._stale: list[Approval] = []

    # -- opening and closing ------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, *, store: Store | None = None, grace: float = 30.0, **options: Any
    ) -> AsyncIterator[Bot]:
        """Start the bot (store, agent, prewarmed conversation); drain and close on exit.

        ``options``: ``show_tools``, ``prewarm``, ``idle_seconds``, ``demo`` (see __init__).
        Raises :class:`~lettabot.runtime.router.AgentMissingError` if the agent cannot be
        opened.
        """
        own_store = store is None
        if store is None:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            store = await open_store(config.store_url, migrate=config.store.migrate_on_start)
        failed: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                bot = cls(config, store, **options)
                bot._tg = tg
                try:
                    await bot._start(tg)
                except Exception as exc:  # raised below, outside the task group
                    failed = exc
                    tg.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await bot.conversations.close()
                        await bot._stop()
                else:
                    try:
                        yield bot
                    finally:
                        with anyio.CancelScope(shield=True):
                            await bot.scheduler.drain(grace)
                            await bot._stop()
                        tg.cancel_scope.cancel()
            if failed is not None:
                raise failed
        finally:
            if own_store:
                with anyio.CancelScope(shield=True):
                    await store.close()

    async def _start(self, tg: TaskGroup) -> None:
        config = self.config
        if config.tracing.enabled:
            configure_tracing(config.tracing)
        self.keys.start()
        if config.servers.count and any(p.host is None for p in self.agents.profiles):
            # before its App Servers start (hosts keep their own Letta homes)
            await ensure_backend(config)
        await connect_providers(config, self.client, self.keys)
        await self.agents.load()
        self._stale = await self.broker.expire_stale()
        await self.conversations.start(tg)
        await self.scheduler.start(tg)
        submit = None
        if self.cluster is not None:
            submit = self.cluster.submit
        elif self.host_wait is not None:
            submit = self.host_wait.submit
        if self.host_wait is not None:
            await self.host_wait.start(tg)
        self.intake.start(tg.start_soon, submit=submit)
        if self.cluster is not None:
            await self.cluster.open(tg, self.commands.run)
        await self.schedules.sync_config(config.schedules)
        tg.start_soon(housekeeping, self.store,
                      timedelta(days=config.approvals.retention_days), name="store housekeeping")
        tg.start_soon(self.schedules.run, name="schedules")
        if self._stale:
            log.info("expired %d approvals left pending by a previous run", len(self._stale))

    async def _stop(self) -> None:
        await self.client.close()  # stops the App Servers it started
        self.keys.stop()
        if self.cluster is not None:
            await self.cluster.close()
        if self.config.tracing.enabled:  # export what is left, in a thread (it may block)
            await anyio.to_thread.run_sync(shutdown_tracing)

    # -- what the stages ask of the bot -------------------------------------------

    async def _create_agent(self, profile: AgentProfile) -> str:
        letta = profile.settings
        tags = ["lettabot"] + ([f"lettabot:{profile.name}"] if profile.name != "default" else [])
        server = self.client.host_server(profile.host) if profile.host else 0
        return await self.client.create_agent(
            server=server, model=letta.model, system_prompt=letta.system_prompt,
            persona=letta.persona, tags=tags,
        )

    def _tools_for(self, owner: Callable[[], TurnOwner | None],
                   profile: AgentProfile) -> list[sdk.Tool]:
        """lettabot's chat tools for a session of ``profile``'s agent (minus any its tool
        filter blocks)."""
        tools = self.chat_tools.for_session(owner, profile.policy.guard_or_default(),
                                            profile.access)
        return [t for t in tools if profile.policy.blocked(t.name) is None]

    async def _notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        adapter = self.adapters.get(scope.adapter)
        if adapter is None:
            return
        with post_span("note", scope, len(text)) as span:
            try:
                await adapter.notify(scope, text, user_id=user_id)
            except Exception as exc:
                failed(span, exc)
                log.warning("could not post a note in %s", scope.key, exc_info=True)

    async def _run_scheduled(self, schedule: Schedule, due: datetime) -> None:
        await self.intake.scheduled(schedule, due)

    def _can_run_scheduled(self, schedule: Schedule) -> bool:
        return self.intake.can_run_scheduled(schedule)

    # -- adapters ---------------------------------------------------------------------

    def add_adapter(self, adapter: Adapter) -> Adapter:
        """Register ``adapter`` and run it (``adapter.run()``) in the bot's task group."""
        if adapter.name in self.adapters:
            raise ValueError(f"an adapter named {adapter.name!r} is already running")
        assert self._tg is not None, "use Bot.open()"
        self.adapters[adapter.name] = adapter
        self._tg.start_soon(self._run_adapter, adapter, name=f"adapter:{adapter.name}")
        stale = [a for a in self._stale if Scope.from_key(a.scope).adapter == adapter.name]
        if stale:
            self._tg.start_soon(self.broker.resolve_stale, adapter, stale)
        return adapter

    def add_adapter_from(self, factory: AdapterFactory,
                         settings: AdapterSettings | Mapping[str, Any]) -> Adapter:
        return self.add_adapter(factory(settings, self))

    async def _run_adapter(self, adapter: Adapter) -> None:
        try:
            await adapter.run()
        except ConfigError:
            raise  # settings to fix: `lettabot run` says it in one line, no traceback
        except Exception:
            log.exception("adapter %s stopped with an error", adapter.name)
            raise

    # -- BotAPI -------------------------------------------------------------------------

    async def handle_message(self, message: InboundMessage) -> None:
        """Judge, dedupe and queue a message (:class:`Intake`); the turn runs in the
        background."""
        await self.intake.handle(message)

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return self.access.may_talk(adapter, user_id)

    def platform_error(self, adapter: str, status: int | str) -> None:
        self.metrics.platform_call(adapter, status)

    async def record_feedback(self, scope: Scope, message_ref: str, user_id: str,
                              rating: Literal["good", "bad"]) -> bool:
        profile, route = await self.router.profile_for(scope)
        access = profile.access if profile is not None else self.access
        if not access.may_talk(scope.adapter, user_id) or rating not in ("good", "bad"):
            return False
        await self.store.record_feedback(
            scope.key, message_ref, f"{scope.adapter}:{user_id}", rating,
            conversation_id=route.conversation_id if route is not None else None)
        self.metrics.feedback.labels(scope.adapter, rating).inc()
        log.info("feedback %s on %s in %s", rating, message_ref, scope.key)
        return True

    async def history(self, scope: Scope, limit: int = 100) -> list[HistoryEntry]:
        route = await self.store.get_route(scope.key)
        if route is None:
            return []
        try:
            messages = await self.client.list_conversation_messages(
                route.conversation_id, limit=limit, order="desc")
        except sdk.LettaSDKError as exc:
            log.warning("could not read the history of %s: %s", scope.key, exc)
            return []
        return entries_from(list(reversed(messages)))

    async def decide_approval(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str = ""
    ) -> DecisionOutcome:
        if self.cluster is not None and not self.broker.waiting_here(request_id):
            outcome = await self.cluster.decide_elsewhere(request_id, decision, user_id,
                                                          user_name)
            if outcome is not None:
                return outcome
        return await self.broker.decide(request_id, decision, user_id, user_name)

    async def run_command(
        self, scope: Scope, user_id: str, command: str, args: str = ""
    ) -> CommandResult:
        if (command == "stop" and self.cluster is not None
                and self.scheduler.running_user(scope) is None
                and self.access.may_talk(scope.adapter, user_id)):
            result = await self.cluster.stop_elsewhere(scope, user_id)
            if result is not None:
                return result
        return await self.commands.run(scope, user_id, command, args)

    def workspace_of(self, scope: Scope) -> Path:
        """The folder ``scope``'s conversation works in (created if missing)."""
        return prepare_scope_dir(self.config.letta_cwd, scope.key)

    # -- health -----------------------------------------------------------------------

    def _sample(self) -> StateSample:
        state = self.scheduler.state()
        return StateSample(
            queued=state.queued,
            turns_running=state.turns_running,
            turns_waiting_for_slot=state.turns_waiting_for_slot,
            approvals_pending=self.broker.pending(),
            open_conversations=state.open_conversations,
            draining=state.draining,
            servers=[ServerSample(index=s["index"], remote=s["remote"], alive=s["alive"],
                                  restarts=s["restarts"], sessions=s["sessions"],
                                  rss_bytes=rss_bytes(s["pid"]) if s.get("pid") else None)
                     for s in self.conversations.server_states()],
        )

    async def readiness(self) -> dict[str, Any]:
        """``/readyz``: whether this process should get traffic now. Each check is
        ``ok`` or says what is wrong; ``status`` is ``ok`` only when all are."""
        checks: dict[str, str] = {}
        try:
            with anyio.fail_after(3):
                await self.store.ping()
            checks["store"] = "ok"
        except TimeoutError:
            checks["store"] = "no answer within 3 s"
        except Exception as exc:
            checks["store"] = str(exc)
        for name, adapter in sorted(self.adapters.items()):
            ready = not isinstance(adapter, SupportsReadiness) or adapter.is_ready()
            checks[f"adapter:{name}"] = "ok" if ready else "not connected"
        if not self.adapters:
            checks["adapters"] = "none started yet"
        for server in self.conversations.server_states():
            if server.get("remote") or server.get("pid") or server.get("sessions"):
                checks[f"server:{server['index']}"] = (
                    "ok" if server.get("alive") else "down (restarted on the next turn)")
        if self.scheduler.draining:
            checks["draining"] = "shutting down"
        status = "ok" if all(v == "ok" for v in checks.values()) else "not_ready"
        return {"status": status, "checks": checks}

    def health(self) -> dict[str, Any]:
        """A small JSON-able summary for ``/healthz`` and ``status``."""
        servers = self.conversations.server_states()
        state = self.scheduler.state()
        local_ok = all(s.get("alive", True) for s in servers if s.get("sessions"))
        status = "draining" if state.draining else ("ok" if local_ok else "degraded")
        return {
            "status": status,
            "adapters": sorted(self.adapters),
            "turns_running": state.turns_running,
            "turns_waiting": state.turns_waiting_for_slot,
            "queued": state.queued,
            "open_conversations": state.open_conversations,
            "servers": servers,
        }
