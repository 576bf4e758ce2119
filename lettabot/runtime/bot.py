"""The :class:`Bot`: the runtime's parts joined behind the adapters' :class:`BotAPI`.

::

    async with Bot.open(config) as bot:
        bot.add_adapter(adapter)     # runs adapter.run() in the bot's task group
        await anyio.sleep_forever()

Everything runs in one anyio task group; leaving the block drains (running turns finish
within ``grace`` seconds or are interrupted), closes every conversation (and so the App
Servers) and the store.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
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
    ContextMessage,
    DecisionOutcome,
    HistoryEntry,
    InboundMessage,
    Scope,
    SupportsAcknowledge,
    SupportsReadiness,
    SupportsThreadContext,
)
from lettabot.runtime.agents import AgentProfile, Agents
from lettabot.runtime.approvals import ApprovalBroker, ToolPolicy, TurnOwner
from lettabot.runtime.chat_tools import ChatTools
from lettabot.runtime.cluster.bus import Bus
from lettabot.runtime.cluster.inbox import Inbox, libpq_url
from lettabot.runtime.commands import Commands
from lettabot.runtime.config import AdapterSettings, Config, ConfigError, LettaConfig, Problem
from lettabot.runtime.history import entries_from
from lettabot.runtime.keyproxy import KeyProxy
from lettabot.runtime.letta_backend import ensure_backend
from lettabot.runtime.metrics import Metrics, ServerSample, StateSample, rss_bytes
from lettabot.runtime.providers import connect_providers
from lettabot.runtime.router import Router
from lettabot.runtime.sandbox import Sandbox, SandboxUnavailable, prepare
from lettabot.runtime.scheduler import Job, Scheduler
from lettabot.runtime.schedules import ScheduleRunner
from lettabot.runtime.store import Approval, Schedule, Store, open_store, sqlite_path
from lettabot.runtime.tool_guard import ToolGuard
from lettabot.runtime.turns import TurnRunner
from lettabot.runtime.workspaces import prepare_scope_dir

__all__ = ["Bot", "adapter_settings"]

log = logging.getLogger("lettabot.runtime")

ENGAGED = "lettabot:thread"
"""Claims (in the dedupe table) of the scopes a cluster has accepted a message in, so a
follow-up without a mention counts before the first answer made a route."""
ENGAGED_FOR = timedelta(days=30)

HOUSEKEEPING_EVERY = 3600.0
"""Seconds between store purges (see :meth:`Bot._housekeeping`)."""


def adapter_settings(config: Config) -> dict[str, AdapterSettings | dict[str, Any]]:
    """Each adapter's settings, as its factory takes them: the validated section model, or
    the free-form ``[adapters.<name>]`` table of an adapter that registers none."""
    out: dict[str, AdapterSettings | dict[str, Any]] = dict(config.sections())
    out.update({name: dict(section) for name, section in config.adapters.items()})
    return out


def protected_paths(config: Config) -> list[Path]:
    """lettabot's own state, which no tool call reads without an approver's click."""
    paths = [config.data_dir, Path.cwd() / ".env"]
    if config.config_file is not None:
        paths += [config.config_file, config.config_file.parent / ".env"]
    database = sqlite_path(config.store_url)
    if database is not None:
        paths.append(database)
    return paths


def tool_guard(config: Config, letta: LettaConfig | None = None) -> ToolGuard:
    """The guard for ``config`` (and one agent's ``letta`` settings): its permission mode,
    workspace, protected paths and the CLI's home."""
    letta = letta or config.letta
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LETTA_LOCAL_BACKEND_DIR")}
    env.update(letta.env)
    return ToolGuard.build(letta.permission_mode, config.letta_cwd,
                           protected_paths(config), env=env)


def cli_home(config: Config) -> tuple[Path, Path | None]:
    """The CLI's ``HOME`` and ``LETTA_LOCAL_BACKEND_DIR`` (None: the default under HOME)."""
    env = {**os.environ, **config.letta.env}
    backend = env.get("LETTA_LOCAL_BACKEND_DIR")
    return Path(env.get("HOME") or Path.home()), Path(backend) if backend else None


def tool_sandbox(config: Config) -> Sandbox | None:
    """Write the sandbox launchers for ``config`` (None with ``[sandbox] mode = "off"``).

    Raises :class:`ConfigError` (``sandbox.mode``: what failed, how to fix it) where
    bubblewrap cannot start: never a silent fallback to running tools unsandboxed."""
    if config.sandbox.mode == "off":
        log.warning("[sandbox] mode = \"off\": the agent's tools run as lettabot's user and "
                    "can read whatever it can (provider keys in the Letta home, other "
                    "conversations); only the approval guard stands in the way")
        return None
    home, backend = cli_home(config)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache / "lettabot" / "node-compile-cache"
    with suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
    try:
        return prepare(config.sandbox, config.data_dir / "sandbox",
                       workspaces=config.letta_cwd, home=home, backend=backend,
                       secret=protected_paths(config),
                       extra_rw=[cache, *_compile_cache(config)],
                       git_network=config.letta.backend == "cloud")
    except SandboxUnavailable as exc:
        raise ConfigError([Problem("sandbox.mode", exc.why, exc.fix)]) from None


def _compile_cache(config: Config) -> list[Path]:
    """``NODE_COMPILE_CACHE`` as the CLI will get it (a cache: mounted writable)."""
    where = config.letta.env.get("NODE_COMPILE_CACHE") or os.environ.get("NODE_COMPILE_CACHE")
    return [Path(where)] if where else []


def cli_options(config: Config) -> dict[str, Any]:
    """Which CLI runs, and its extra environment (backend URL and key): SDK options."""
    letta = config.letta
    options: dict[str, Any] = {}
    if letta.cli_path:
        options["cli_path"] = letta.cli_path
    env: dict[str, str] = dict(letta.env)
    if letta.backend == "cloud":
        if letta.base_url:
            env["LETTA_BASE_URL"] = letta.base_url
        if letta.api_key is not None:
            env["LETTA_API_KEY"] = letta.api_key.get_secret_value()
    if env:
        options["env"] = env
    return options


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
        self.adapters: dict[str, Adapter] = {}
        self.access = AccessPolicy(config.access, adapter_settings(config))
        self.policy = ToolPolicy.from_config(config.letta, tool_guard(config))
        self.metrics = Metrics()
        self.broker = ApprovalBroker(store, self.access, config.approvals, self.policy,
                                     self.adapters.get, metrics=self.metrics)
        self.agents = Agents(config, store, guard=lambda letta: tool_guard(config, letta),
                             adapter_settings=adapter_settings(config),
                             create_agent=self._create_agent)
        self.router = Router(store, self.agents)
        self.sandbox = tool_sandbox(config)
        self.keys = KeyProxy()
        """Provider keys stay here; the CLI gets a stand-in (see keyproxy)."""
        self.client = self._client()
        self.schedules = ScheduleRunner(store, self._run_scheduled,
                                        can_start=self._can_run_scheduled)
        self.chat_tools = ChatTools(config.chat_tools, self.adapters.get, store,
                                    self.schedules, self._notify)
        self.replica = config.cluster.replica or f"{socket.gethostname()}-{os.getpid()}"
        self.inbox: Inbox | None = None
        self.bus: Bus | None = None
        if config.cluster.enabled:
            cluster = config.cluster
            self.inbox = Inbox(config.store_url, self.replica, self._run_from_inbox,
                               concurrency=config.servers.max_concurrent_turns,
                               heartbeat_seconds=cluster.heartbeat_seconds,
                               takeover_seconds=cluster.takeover_seconds)
            self.bus = Bus(libpq_url(config.store_url), self.replica)
            self.bus.on("holds", self._holds_here)
            self.bus.on("decided", self._decided_here)
            self.bus.on("stop", self._stop_here)
        self.scheduler = Scheduler(
            client=self.client,
            router=self.router,
            broker=self.broker,
            run_turn=TurnRunner(self.adapters.get, show_tools=show_tools,
                                stall_seconds=config.turns.stall_seconds,
                                waiting_for_click=self.broker.pending_in,
                                metrics=self.metrics, files=config.files,
                                workspace=config.letta_cwd,
                                reply_as_file_after=config.chat_tools.reply_as_file_after,
                                stop_button_after=config.turns.stop_button_after),
            notify=self._notify,
            session_options=self._session_options(),
            max_concurrent_turns=config.servers.max_concurrent_turns,
            idle_seconds=idle_seconds,
            prewarm=prewarm,
            tools_for=self._tools_for,
            workspaces=config.letta_cwd,
            letta_home=cli_home(config)[0] / ".letta",
        )
        self.commands = Commands(access=self.access, router=self.router,
                                 scheduler=self.scheduler, broker=self.broker,
                                 model=config.letta.model,
                                 cli_env={**os.environ, **config.letta.env})
        self.metrics.watch(self._sample)
        self._tg: TaskGroup | None = None
        self._locks: dict[str, anyio.Lock] = {}
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
                    bot.keys.start()
                    if config.servers.count:  # before its App Servers start
                        await ensure_backend(config)
                    await connect_providers(config, bot.client, bot.keys)
                    await bot.agents.load()
                    bot._stale = await bot.broker.expire_stale()
                    await bot.scheduler.start(tg)
                    if bot.inbox is not None and bot.bus is not None:
                        await bot.inbox.open()
                        tg.start_soon(bot.bus.run, name="cluster bus")
                        if "worker" in config.cluster.roles:
                            tg.start_soon(bot.inbox.run, name="cluster worker")
                        log.info("cluster replica %s (%s)", bot.replica,
                                 ", ".join(config.cluster.roles))
                    await bot.schedules.sync_config(config.schedules)
                    tg.start_soon(bot._housekeeping, name="store housekeeping")
                    tg.start_soon(bot.schedules.run, name="schedules")
                except Exception as exc:  # raised below, outside the task group
                    failed = exc
                    tg.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await bot.scheduler.close()
                        await bot.client.close()
                        bot.keys.stop()
                        await bot._close_cluster()
                else:
                    if bot._stale:
                        log.info("expired %d approvals left pending by a previous run",
                                 len(bot._stale))
                    try:
                        yield bot
                    finally:
                        with anyio.CancelScope(shield=True):
                            await bot.scheduler.drain(grace)
                            await bot.client.close()  # stops the App Servers it started
                            bot.keys.stop()
                            await bot._close_cluster()
                        tg.cancel_scope.cancel()
            if failed is not None:
                raise failed
        finally:
            if own_store:
                with anyio.CancelScope(shield=True):
                    await store.close()

    async def _housekeeping(self) -> None:
        """Keep no more than needed: expired dedupe ids and rules, and decided approvals
        past ``approvals.retention_days``, are deleted at start and every hour."""
        retention = timedelta(days=self.config.approvals.retention_days)
        while True:
            try:
                counts = await self.store.purge(approvals_older_than=retention)
                if any(counts.values()):
                    log.info("store housekeeping removed %s", counts)
            except Exception:
                log.warning("store housekeeping failed", exc_info=True)
            await anyio.sleep(HOUSEKEEPING_EVERY)

    def _session_options(self) -> dict[str, Any]:
        cwd = self.config.letta_cwd
        cwd.mkdir(parents=True, exist_ok=True)
        options = {"permission_mode": self.policy.cli_mode, "include_partial_messages": True,
                   "cwd": cwd, **cli_options(self.config)}
        if self.sandbox is not None:
            options["cli_path"] = str(self.sandbox.cli_path)
        return options

    def _client(self) -> sdk.LettaClient:
        """The SDK client: ``servers.count`` local App Servers plus ``servers.urls``, with
        where and how the CLI runs (never through ``os.environ``: that would reach every
        CLI process and so the agent's tools)."""
        where = {k: v for k, v in self._session_options().items()
                 if k in ("cwd", "cli_path", "env")}
        if Scheduler.available_transport():
            where["transport"] = Scheduler.available_transport()
        servers = self.config.servers
        return sdk.LettaClient(servers=servers.count,
                               urls=[(u.url, u.token) for u in servers.urls], **where)

    async def _create_agent(self, profile: AgentProfile) -> str:
        letta = profile.settings
        tags = ["lettabot"] + ([f"lettabot:{profile.name}"] if profile.name != "default" else [])
        return await self.client.create_agent(
            server=0, model=letta.model, system_prompt=letta.system_prompt,
            persona=letta.persona, tags=tags,
        )

    def _tools_for(self, owner: Callable[[], TurnOwner | None],
                   profile: AgentProfile) -> list[sdk.Tool]:
        """lettabot's chat tools for a session of ``profile``'s agent (minus any its tool
        filter blocks)."""
        tools = self.chat_tools.for_session(owner, profile.policy.guard_or_default(),
                                            profile.access)
        return [t for t in tools if profile.policy.blocked(t.name) is None]

    # -- schedules --------------------------------------------------------------------

    def _can_run_scheduled(self, schedule: Schedule) -> bool:
        try:
            scope = Scope.from_key(schedule.scope)
        except ValueError:
            return False
        return (scope.adapter in self.adapters and not self.scheduler.draining
                and self.scheduler.can_accept(scope))

    async def _run_scheduled(self, schedule: Schedule, due: datetime) -> None:
        """A claimed run: a turn in its scope, as its creator's message."""
        scope = Scope.from_key(schedule.scope)
        adapter, _, user = schedule.created_by.partition(":")
        if schedule.created_by and not self.access.may_talk(adapter, user):
            log.warning("schedule %s not run: %s may no longer talk to the bot", schedule.id,
                        schedule.created_by)
            await self._notify(scope, f"🗓️ Schedule `{schedule.id}` was not run: the person "
                                      "who created it may no longer talk to the bot.")
            return
        text = schedule.prompt  # the sender note says it is scheduled, and by whom
        message_id = f"schedule:{schedule.id}:{due.isoformat()}"
        message = InboundMessage(scope=scope, user_id=user, user_name="", text=text,
                                 message_id=message_id, mentioned=True)
        log.info("schedule %s runs in %s", schedule.id, scope.key)
        self.metrics.messages.labels(scope.adapter, "scheduled").inc()
        await self._submit(message, f"{scope.adapter}:{message_id}")

    def workspace_of(self, scope: Scope) -> Path:
        """The folder ``scope``'s conversation works in (created if missing)."""
        return prepare_scope_dir(self.config.letta_cwd, scope.key)

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

    async def _notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        adapter = self.adapters.get(scope.adapter)
        if adapter is None:
            return
        try:
            await adapter.notify(scope, text, user_id=user_id)
        except Exception:
            log.warning("could not post a note in %s", scope.key, exc_info=True)

    # -- BotAPI -------------------------------------------------------------------------

    async def handle_message(self, message: InboundMessage) -> None:
        """Judge, dedupe and queue a message; the turn runs in the background."""
        scope = message.scope
        lock = self._locks.setdefault(scope.key, anyio.Lock())
        try:
            async with lock:  # keeps one scope's messages in arrival order
                await self._accept(message)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(scope.key, None)

    async def _accept(self, message: InboundMessage) -> None:
        scope = message.scope
        profile, route = await self.router.profile_for(scope)
        known = scope.key in self.scheduler.lanes or route is not None
        if not known and self.inbox is not None:  # accepted on a replica, not answered yet
            known = await self.store.event_claimed(ENGAGED, scope.key)
        access = profile.access if profile is not None else self.access
        verdict = access.check(message, has_conversation=known)
        if verdict.action == "ignore":
            self.metrics.messages.labels(scope.adapter, "ignored").inc()
            log.debug("ignored a message in %s: %s", scope.key, verdict.reason)
            if verdict.reply:
                await self._notify(scope, verdict.reply, user_id=message.user_id)
            return
        if not self.scheduler.can_accept(scope):
            text = ("lettabot is restarting; please send that again in a minute."
                    if self.scheduler.draining else
                    "Too many messages are waiting here; please wait for the answers and send "
                    "that again.")
            self.metrics.messages.labels(scope.adapter, "refused_busy").inc()
            await self._notify(scope, text, user_id=message.user_id)
            return
        if not await self.access.claim(self.store, message):
            self.metrics.messages.labels(scope.adapter, "duplicate").inc()
            log.info("duplicate delivery of %s in %s ignored", message.dedupe_id, scope.key)
            return
        if not known and scope.thread:
            message = await self._with_context(message, access)
        try:
            if self.inbox is not None and not known:  # every replica now knows the thread
                await self.store.claim_event(ENGAGED, scope.key, ENGAGED_FOR)
            await self._submit(message, f"{scope.adapter}:{message.dedupe_id}")
        except Exception:
            # not queued: its redelivery (the platform retries an unanswered event) must
            # not be taken for a duplicate
            await self.store.release_event(scope.adapter, message.dedupe_id)
            raise
        self.metrics.messages.labels(scope.adapter, "accepted").inc()
        adapter = self.adapters.get(scope.adapter)
        # in a cluster the replica that runs the turn acknowledges (and later clears) it
        if isinstance(adapter, SupportsAcknowledge) and self._tg is not None \
                and self.inbox is None:
            self._tg.start_soon(self._acknowledge, adapter, message)

    async def _submit(self, message: InboundMessage, client_message_id: str) -> None:
        """Queue an accepted message: here, or in the cluster's durable inbox."""
        if self.inbox is not None:
            await self.inbox.defer(message, client_message_id)
        else:
            self.scheduler.enqueue(Job(message, client_message_id=client_message_id))

    # -- cluster ----------------------------------------------------------------------

    async def _run_from_inbox(self, message: InboundMessage, client_message_id: str,
                              attempts: int) -> None:
        """A job of the inbox, on this replica: its turn, then its session is closed (the
        scope's next message may run on another replica)."""
        scope = message.scope
        if attempts:
            self.metrics.messages.labels(scope.adapter, "taken_over").inc()
            await self._notify(scope, "⚠️ The lettabot replica that was answering this "
                                      "stopped; another one is answering it now.")
            await self._fork_after_takeover(scope)
        adapter = self.adapters.get(scope.adapter)
        if isinstance(adapter, SupportsAcknowledge):  # this replica's adapter learns of it
            await self._acknowledge(adapter, message)
        job = Job(message, client_message_id=client_message_id)
        self.scheduler.enqueue(job)
        try:
            await job.finished.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.scheduler.release(scope)

    async def _fork_after_takeover(self, scope: Scope) -> None:
        """The dead replica's run may go on in its App Server (or hang there), keeping the
        conversation busy: the scope continues in a fork of it (same history), or, if it
        cannot be forked, in a new conversation (the agent's memory is kept)."""
        await self.scheduler.release(scope)
        route = await self.store.get_route(scope.key)
        if route is None:
            return
        try:
            fork = await self.client.fork_conversation(route.conversation_id)
        except sdk.LettaSDKError as exc:
            log.warning("could not fork %s after a takeover (%s); starting a new conversation",
                        route.conversation_id, exc)
            await self.router.reset(scope)
            return
        await self.router.bind(scope, route.agent_id, fork)
        log.info("%s continues in %s, a fork of %s (taken over)", scope.key, fork,
                 route.conversation_id)

    async def _holds_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Another replica got a click: is its prompt waiting here?"""
        return self.broker.holds(str(data.get("request_id") or ""))

    async def _decided_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Another replica decided a prompt waiting here: go look in the store (the
        message is only a hint; the store's pending → decided transition is the authority)."""
        outcome = await self.broker.apply_decided(str(data.get("request_id") or ""),
                                                  str(data.get("user_name") or ""))
        return outcome.model_dump() if outcome is not None else None

    async def _stop_here(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """A Stop another replica received, for a turn running here."""
        scope = Scope.from_key(str(data.get("scope") or ""))
        if self.scheduler.running_user(scope) is None:
            return None
        result = await self.commands.run(scope, str(data["user_id"]), "stop")
        return result.model_dump()

    async def _close_cluster(self) -> None:
        if self.bus is not None:
            await self.bus.close()
        if self.inbox is not None:
            await self.inbox.close()

    @staticmethod
    async def _acknowledge(adapter: SupportsAcknowledge, message: InboundMessage) -> None:
        with anyio.move_on_after(10):
            try:
                await adapter.acknowledge(message)
            except Exception:
                log.debug("could not acknowledge %s", message.message_id, exc_info=True)

    async def _with_context(self, message: InboundMessage,
                            access: AccessPolicy) -> InboundMessage:
        """A thread's first message to the bot carries what the thread said before it,
        each message marked trusted only if its author may talk here (``access``)."""
        adapter = self.adapters.get(message.scope.adapter)
        limit = self.config.turns.thread_context
        if not limit or not isinstance(adapter, SupportsThreadContext):
            return message
        earlier: list[ContextMessage] = []
        with anyio.move_on_after(5):  # context is nice to have; the answer must not wait
            try:
                earlier = await adapter.thread_context(message, limit)
            except Exception:
                log.warning("could not read the earlier messages of %s", message.scope.key,
                            exc_info=True)
        adapter_name = message.scope.adapter
        marked = tuple(
            c.model_copy(update={"trusted": c.from_bot or access.may_talk(adapter_name,
                                                                          c.user_id)})
            for c in earlier[-limit:])
        return message.model_copy(update={"context": marked})

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
        if self.bus is not None and not self.broker.waiting_here(request_id):
            held = await self.bus.request("holds", {"request_id": request_id})
            if held is not None:  # another replica's turn waits: decide in the store here
                approval = await self.store.get_approval(request_id)
                profile = None
                if approval is not None:
                    profile, _ = await self.router.profile_for(Scope.from_key(approval.scope))
                recorded = await self.broker.record(
                    request_id, decision, user_id,
                    profile.access if profile is not None else self.access,
                    held.get("always_covers"))
                if recorded.status != "decided":
                    return recorded
                reply = await self.bus.request("decided", {"request_id": request_id,
                                                           "user_name": user_name})
                return DecisionOutcome.model_validate(reply) if reply is not None else recorded
        return await self.broker.decide(request_id, decision, user_id, user_name)

    async def run_command(
        self, scope: Scope, user_id: str, command: str, args: str = ""
    ) -> CommandResult:
        if (command == "stop" and self.bus is not None
                and self.scheduler.running_user(scope) is None
                and self.access.may_talk(scope.adapter, user_id)):
            reply = await self.bus.request("stop", {"scope": scope.key, "user_id": user_id})
            if reply is not None:
                return CommandResult.model_validate(reply)
        return await self.commands.run(scope, user_id, command, args)

    # -- health -----------------------------------------------------------------------

    def _sample(self) -> StateSample:
        return StateSample(
            queued=sum(len(lane.queue) for lane in self.scheduler.lanes.values()),
            turns_running=self.scheduler.running(),
            turns_waiting_for_slot=self.scheduler.gate.waiting,
            approvals_pending=self.broker.pending(),
            open_conversations=self.scheduler.open_sessions(),
            draining=self.scheduler.draining,
            servers=[ServerSample(index=s["index"], remote=s["remote"], alive=s["alive"],
                                  restarts=s["restarts"], sessions=s["sessions"],
                                  rss_bytes=rss_bytes(s["pid"]) if s.get("pid") else None)
                     for s in self.scheduler.server_states()],
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
        for server in self.scheduler.server_states():
            if server.get("remote") or server.get("pid") or server.get("sessions"):
                checks[f"server:{server['index']}"] = (
                    "ok" if server.get("alive") else "down (restarted on the next turn)")
        if self.scheduler.draining:
            checks["draining"] = "shutting down"
        status = "ok" if all(v == "ok" for v in checks.values()) else "not_ready"
        return {"status": status, "checks": checks}

    def health(self) -> dict[str, Any]:
        """A small JSON-able summary for ``/healthz`` and ``status``."""
        servers = self.scheduler.server_states()
        local_ok = all(s.get("alive", True) for s in servers if s.get("sessions"))
        status = "draining" if self.scheduler.draining else ("ok" if local_ok else "degraded")
        return {
            "status": status,
            "adapters": sorted(self.adapters),
            "turns_running": self.scheduler.running(),
            "turns_waiting": self.scheduler.gate.waiting,
            "queued": sum(len(lane.queue) for lane in self.scheduler.lanes.values()),
            "open_conversations": self.scheduler.open_sessions(),
            "servers": servers,
        }
