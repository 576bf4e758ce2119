"""The ``lettabot`` command: ``run``, ``check-config``, ``init``, ``db``, ``host``,
``--version``.

``lettabot run`` starts every enabled adapter in one process under one anyio task
group; SIGTERM / SIGINT drain it (running turns finish within ``--grace`` seconds or are
interrupted; App Servers are closed). ``lettabot check-config`` validates the config and
prints what would run, secrets masked. A bad config exits with status 2 and a message
naming the key and the fix.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio

from lettabot.runtime.approvals import ToolPolicy
from lettabot.runtime.config import (
    AgentConfig,
    Config,
    ConfigError,
    Problem,
    env_var,
    load_config,
)
from lettabot.runtime.logs import configure_logging

__all__ = ["build_parser", "main", "serve"]

log = logging.getLogger("lettabot")
start_log = logging.getLogger("lettabot.start")
"""One line per start-up step (config, ports, store, sandbox, App Server and agent, adapters)."""

EXIT_CONFIG = 2


def _version() -> str:
    try:
        return version("lettabot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (other modules may add options to its subcommands)."""
    parser = argparse.ArgumentParser(
        prog="lettabot", description="Stateful Letta agents in team chat.")
    parser.add_argument("--version", action="version", version=f"lettabot {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run every enabled adapter until SIGTERM/SIGINT")
    run.add_argument("--config", metavar="FILE", help="TOML config (default: ./lettabot.toml)")
    run.add_argument("--health-port", type=int, metavar="PORT",
                     help="serve /healthz, /readyz and /metrics on this port (0: any free "
                          "port; default: health.port, else off)")
    run.add_argument("--health-host", metavar="HOST",
                     help="the address to serve them on (default: health.host, 127.0.0.1)")
    run.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                     help="on shutdown, how long running turns may take before being "
                          "interrupted (default 30)")
    run.add_argument("--demo", action="store_true",
                     help="the web chat on a scripted demo model: no API key needed")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also show the libraries' start-up lines (schema migrations)")
    check = sub.add_parser("check-config", help="validate the config and show what would run")
    check.add_argument("--config", metavar="FILE", help="TOML config (default: ./lettabot.toml)")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="also print the whole effective config (secrets masked)")
    from lettabot.runtime.init import add_parser as add_init

    add_init(sub)
    from lettabot.runtime.host import add_parser as add_host

    add_host(sub)
    sub.add_parser("example-config",
                   help="print the whole config, every key commented (from the settings models)")
    db = sub.add_parser("db", help="the store's schema: `current` or `upgrade` (migrate)")
    db.add_argument("action", choices=["current", "upgrade"])
    db.add_argument("--config", metavar="FILE", help="TOML config (default: ./lettabot.toml)")
    schedules = sub.add_parser("schedules", help="list the schedules, or `cancel ID` one")
    schedules.add_argument("action", nargs="?", choices=["list", "cancel"], default="list")
    schedules.add_argument("id", nargs="?", help="the schedule to cancel")
    schedules.add_argument("--config", metavar="FILE",
                           help="TOML config (default: ./lettabot.toml)")
    return parser


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _agent_line(agent: AgentConfig, config: Config) -> str:
    letta = agent.resolved(config.letta)
    where = [r.describe() for r in agent.routes]
    if agent.default or len(config.agents) == 1:
        where.append("every scope no rule matches")
    approvers = agent.approvers if agent.approvers is not None else config.access.approvers
    return (f"{agent.name}: agent {letta.agent_id or 'created on first use'}, model "
            f"{letta.model or 'the CLI default'}, permission_mode {letta.permission_mode}, "
            f"approvers {', '.join(approvers) or 'none'}; "
            f"{f'on host {agent.host}; ' if agent.host else ''}serves "
            f"{'; '.join(where) or 'nothing'}")


def _who_lines(config: Config) -> list[str]:
    """Who may talk and who may approve, in words."""
    access = config.access
    public = config.public_adapters()
    if access.open and not access.allowed_users:
        talk = "everyone who can message the bot (access.open = true)"
    elif access.allowed_users:
        talk = ", ".join(access.allowed_users) + (" (and the approvers)" if access.approvers
                                                   else "")
    elif public:
        talk = ("everyone who can message the bot (access.allowed_users is empty)"
                if access.approvers else "nobody yet (see the problem below)")
    else:
        talk = "whoever opens the web chat (with its token)"
    approvers = ", ".join(access.approvers)
    if not approvers:
        web = access.may_self_approve("web")
        approvers = ("none: " + ("the person whose message started a turn approves its tool "
                                 "calls" if access.self_approve else
                                 "in the web chat its user approves; elsewhere nobody" if web
                                 else "nobody can approve tool calls"))
    return [f"who may talk: {talk}", f"approvers: {approvers}"]


def check_config(path: str | None, *, verbose: bool = False) -> int:
    """Verdict first, then what would run, then problems (stderr); ``verbose``: the whole
    effective config after it."""
    from lettabot.runtime.discovery import AdapterNotInstalled, available, enabled_adapters
    from lettabot.runtime.store import mask_url

    config = _load(path)
    policy = ToolPolicy.from_config(config.letta)
    facts: list[str] = []
    problems: list[str] = []
    warnings = list(config.warnings())
    problems_aside: list[str] = []  # warnings for stderr
    if config.config_file:
        facts.append(f"config file: {config.config_file}")
    if config.agents:
        facts.append(f"agents ({len(config.agents)}; the most specific matching rule picks a "
                     "new conversation's agent, a conversation keeps its agent until `reset`):")
        for agent_config in config.agents:
            facts.append(f"  {_agent_line(agent_config, config)}")
            if not agent_config.routes and not agent_config.default:
                warnings.append(f"agent {agent_config.name} has no routes and is not the "
                                "default: it serves nothing")
    else:
        agent = config.letta.agent_id or (
            f"created on first run (named by letta.agent_name {config.letta.agent_name!r}) "
            "and remembered in the store")
        facts.append(f"agent: {agent}")
        facts.append(f"model: {config.letta.model or 'the CLI default'}")
    facts.append(f"permission mode: {config.letta.permission_mode} (the CLI runs in "
                 f"{policy.cli_mode} mode: every tool call reaches lettabot, which runs reads "
                 "inside the workspace without asking and asks an approver for the rest; see "
                 "docs/security.md)")
    facts += _who_lines(config)
    facts.append(f"store: {mask_url(config.store_url)}")
    facts.append(f"App Servers: {config.servers.count} local"
                 + (f" + {len(config.servers.urls)} remote" if config.servers.urls else "")
                 + f"; at most {config.servers.max_concurrent_turns} turns at once")
    if config.letta.env:
        facts.append("CLI environment (letta.env): "
                     + ", ".join(f"{k}=********" for k in config.letta.env))
    adapters = []
    try:
        adapters = enabled_adapters(config)
    except AdapterNotInstalled as exc:
        problems.append(f"adapters: {exc}")
    for adapter in adapters:
        facts.append(f"adapter {adapter.name}: {adapter.source}")
    if not adapters and not problems:
        problems.append("adapters: none is enabled — enable one ([slack], [discord], [web] or "
                        "[adapters.<name>] with enabled = true)")
    problems += [f"lettabot run would refuse to start: {p}" for p in config.refusals()]
    sandbox, sandbox_problem = _sandbox_line(config)
    if sandbox_problem:
        problems.append(sandbox_problem)
    elif config.sandbox.mode == "off":  # on stderr too: it must not scroll by unseen
        problems_aside.append("warning: [sandbox] mode = \"off\": the agent's tools run as "
                              "lettabot's user and can read whatever it can; only the approval "
                              "guard stands in the way")
    if sandbox:
        facts.append(f"tool sandbox: {sandbox}")
    facts.append(f"installed adapters: {', '.join(sorted(available())) or 'none'}")
    if not problems:
        provider_lines: list[str] = []
        problems += [f"lettabot run would fail: {text}"
                     for text in anyio.run(_model_problems, config, provider_lines)]
        facts += provider_lines
    names = ", ".join(a.name for a in adapters) or "nothing"
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        print(f"# lettabot run would NOT start: {count} (below, on stderr)")
    else:
        print(f"# config OK: lettabot run would start {names}")
    for line in facts:
        print(f"# {line}")
    for line in warnings:
        print(f"# warning: {line}")
    if verbose:
        print("\n# the whole effective config (secrets masked)")
        print(config.describe(), end="")
    else:
        print("# (--verbose: the whole effective config)")
    sys.stdout.flush()
    for line in [*problems, *problems_aside]:
        print(line, file=sys.stderr)
    return EXIT_CONFIG if problems else 0


def _sandbox_line(config: Config) -> tuple[str | None, str | None]:
    """What the tool sandbox will be, or why it cannot start."""
    from lettabot.runtime.sandbox import SandboxUnavailable, probe

    if config.sandbox.mode == "off":
        return "off (tools run unsandboxed)", None
    try:
        probe()
    except SandboxUnavailable as exc:
        return None, f"lettabot run would refuse to start: sandbox.mode: {exc.why} — {exc.fix}"
    network = "no network" if config.sandbox.network == "none" else "the host's network"
    return (f"bubblewrap; shell commands see only their conversation's folder, {network}, "
            f"{config.sandbox.timeout_seconds} s, {config.sandbox.memory_mb} MB"), None


async def _model_problems(config: Config, out: list[str] | None = None) -> list[str]:
    """Whether the CLI, run as ``lettabot run`` runs it, has a model provider and every
    configured model (asks it: ``list_models`` on a short-lived App Server); what it
    connected goes to ``out``."""
    from lettabot import sdk
    from lettabot.runtime.cli_setup import cli_options
    from lettabot.runtime.keyproxy import KeyProxy
    from lettabot.runtime.letta_backend import ensure_backend
    from lettabot.runtime.providers import connect_providers

    demo = "(to try lettabot without a model key: lettabot run --demo)"
    options = cli_options(config)
    client = sdk.LettaClient(servers=1, **options)
    keys = KeyProxy()  # as `run` connects them: keys stay out of the Letta home
    keys.start()
    try:
        await ensure_backend(config)
        for line in await connect_providers(config, client, keys):
            (out if out is not None else []).append(line)
        models = await client.list_models()
    except ConfigError as exc:
        return exc.problems
    except sdk.LettaSDKError as exc:
        return [f"letta: the Letta CLI could not list its models ({exc}) {demo}"]
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()
        keys.stop()
    if not models:
        return [f"letta: no model provider is connected in the Letta CLI's home — run "
                f"`letta` once as lettabot's user to connect one, or set letta.backend = "
                f'"cloud" with letta.api_key {demo}']
    handles = {m.handle for m in models}
    wanted = [("letta.model", config.letta.model)] + [
        (f"agents.{a.name}.model", a.model) for a in config.agents]
    offered = ", ".join(sorted(handles)[:8]) + (" ..." if len(handles) > 8 else "")
    return [f"{key}: {model!r} is not a model the Letta CLI offers — use one of: {offered}"
            for key, model in wanted if model and model not in handles]


def _listeners(config: Config, health_port: int | None,
               health_host: str) -> list[tuple[str, str, int, str]]:
    """(key, host, port, how to change it) for every port ``lettabot run`` will listen on."""
    out = []
    for name in config.enabled_adapters():
        section = config.section(name)
        if section is None:
            continue
        for key, host, port in section.listens():
            full = f"{name}.{key}"
            out.append((full, host, port, f"{full} or {env_var(full)}"))
    if health_port:
        out.append(("health.port", health_host, health_port,
                    "--health-port, health.port or LETTABOT_HEALTH__PORT"))
    return out


def _holder(port: int) -> str:
    """Who listens on ``port`` (Linux /proc, best effort): "pid N: command"."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1],
                                                               16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return "another program"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(os.readlink(fd) in inodes for fd in fds):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
                return f"pid {proc.name}: {command[:80]}"
        except OSError:
            continue
    return "another program (of another user)"


def port_problems(config: Config, health_port: int | None, health_host: str) -> list[Problem]:
    """A port ``lettabot run`` needs that another program holds: key, who, fix."""
    problems = []
    for key, host, port, fix in _listeners(config, health_port, health_host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    problems.append(Problem(key, f"port {port} on {host} is in use (by "
                                            f"{_holder(port)})", f"set {fix} to a free port, "
                                            "or stop it"))
                else:
                    problems.append(Problem(key, f"cannot listen on {host}:{port} "
                                            f"({exc.strerror})", f"set {fix}"))
    return problems


async def serve(
    config: Config,
    *,
    demo: bool = False,
    health_port: int | None = None,
    health_host: str | None = None,
    grace: float = 30.0,
) -> None:
    """Run the enabled adapters until SIGTERM/SIGINT, then drain.

    ``demo``: ``lettabot run --demo`` (the :class:`~lettabot.runtime.bot.Bot` says so to
    its adapters: the web chat shows a DEMO badge)."""
    from lettabot.runtime.bot import Bot
    from lettabot.runtime.discovery import enabled_adapters
    from lettabot.runtime.store import mask_url, open_store

    adapters = enabled_adapters(config)
    health_port = health_port if health_port is not None else config.health.port
    health_host = health_host or config.health.host
    start_log.info("store: opening %s%s", mask_url(config.store_url),
                   " (migrating if needed)" if config.store.migrate_on_start else "")
    if config.store_url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_store(config.store_url, migrate=config.store.migrate_on_start) as store:
        sandbox, why = _sandbox_line(config)
        if why is not None:
            raise ConfigError([why.removeprefix("lettabot run would refuse to start: ")])
        start_log.info("sandbox: %s", sandbox)
        start_log.info("App Server and agent: starting `letta server` and opening the agent "
                       "(takes a few seconds)")
        async with Bot.open(config, store=store, grace=grace, demo=demo) as bot:
            start_log.info("adapters: starting %s", ", ".join(a.name for a in adapters))
            await _run_adapters(bot, adapters, health_port, health_host, grace)


async def _run_adapters(bot: Any, adapters: list[Any], health_port: int | None,
                        health_host: str, grace: float) -> None:
    """Start ``adapters`` on ``bot`` and the health endpoint; wait for SIGTERM/SIGINT."""
    from lettabot.runtime.health import serve_health

    for adapter in adapters:
        bot.add_adapter_from(adapter.factory, adapter.settings)
        log.debug("adapter %s started (%s)", adapter.name, adapter.source)
    async with anyio.create_task_group() as tg:
        health_url = None
        if health_port is not None:
            bound = await tg.start(serve_health, bot, health_host, health_port)
            host = f"[{health_host}]" if ":" in health_host else health_host
            health_url = f"http://{host}:{bound}"
        tg.start_soon(_announce, bot, health_url)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("%s: draining (at most %ss)", signal.Signals(signum).name, grace)
                break
        tg.cancel_scope.cancel()


async def _announce(bot: Any, health_url: str | None) -> None:
    """Once, when the adapters are up (or after 15 s): what runs where."""
    from lettabot.runtime.adapter import SupportsReadiness
    from lettabot.runtime.store import mask_url

    with anyio.move_on_after(15):
        while not all(a.is_ready() for a in bot.adapters.values()  # noqa: ASYNC110
                      if isinstance(a, SupportsReadiness)):  # (is_ready is all they offer)
            await anyio.sleep(0.1)
    config: Config = bot.config
    lines = [f"lettabot {_version()} running (pid {os.getpid()})"]
    for _name, adapter in sorted(bot.adapters.items()):
        where = adapter.where() if isinstance(adapter, SupportsReadiness) else ""
        if where.startswith(("http://", "https://")):
            lines.append(f"  open: {where.split(' ')[0]}")
    for name, adapter in sorted(bot.adapters.items()):
        where = adapter.where() if isinstance(adapter, SupportsReadiness) else "started"
        ready = "" if not isinstance(adapter, SupportsReadiness) or adapter.is_ready() else (
            " (not connected yet)")
        lines.append(f"  adapter {name}: {where}{ready}")
    for profile in bot.agents.profiles:
        letta = profile.settings
        lines.append(f"  agent {profile.name}: {profile.agent_id or 'created on first message'}"
                     f", model {letta.model or 'the CLI default'}, permission_mode "
                     f"{letta.permission_mode}")
    lines.append(f"  store: {mask_url(config.store_url)}")
    servers = config.servers
    lines.append(f"  App Servers: {servers.count} local"
                 + (f" + {len(servers.urls)} remote" if servers.urls else "")
                 + f"; at most {servers.max_concurrent_turns} turns at once")
    lines.append(f"  data: {config.data_dir}; agent workspace: {config.letta_cwd}")
    lines.append(f"  health: {health_url}/healthz, /readyz, /metrics" if health_url else
                 "  health: off (set health.port or --health-port)")
    log.info("%s", "\n".join(lines))


def db_command(path: str | None, action: str) -> int:
    """``lettabot db current`` / ``upgrade``: the store's schema revision, or migrate it
    (under the same lock as a start; safe while other replicas run)."""
    from lettabot.runtime.store import StoreError, mask_url, migrations, open_store

    config = _load(path)
    url = config.store_url
    if url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)

    async def current() -> str:
        from sqlalchemy.ext.asyncio import create_async_engine

        from lettabot.runtime.store import normalize_url

        engine = create_async_engine(normalize_url(url))
        try:
            async with engine.connect() as conn:
                revision = await conn.run_sync(migrations.current)
                fresh = await conn.run_sync(migrations.up_to_date)
        finally:
            await engine.dispose()
        state = "up to date" if fresh else "run `lettabot db upgrade`"
        return (f"store {mask_url(url)}: schema at {revision or 'none (empty)'}; this "
                f"lettabot needs {migrations.head()} — {state}")

    async def upgrade() -> str:
        async with open_store(url, migrate=True):
            pass
        return await current()

    try:
        print(anyio.run(current if action == "current" else upgrade))
    except StoreError as exc:
        print(f"lettabot db {action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # the driver's own errors (unreachable, refused)
        print(f"lettabot db {action}: cannot reach the store at {mask_url(url)} "
              f"({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def schedules_command(path: str | None, action: str, schedule_id: str | None) -> int:
    """``lettabot schedules [list]`` / ``cancel ID``: what the store will run, for an
    operator (a running bot sees a cancel at its next look)."""
    from lettabot.runtime.schedules import describe
    from lettabot.runtime.store import StoreError, open_store

    config = _load(path)
    if action == "cancel" and not schedule_id:
        print("lettabot schedules cancel: name the schedule (ids from `lettabot schedules`)",
              file=sys.stderr)
        return EXIT_CONFIG

    async def go() -> str:
        async with open_store(config.store_url, migrate=config.store.migrate_on_start) as store:
            if action == "cancel":
                assert schedule_id is not None
                found = await store.get_schedule(schedule_id)
                if found is not None and found.source == "config":
                    return (f"{schedule_id} comes from [[schedules]] in the config: remove it "
                            "there")
                done = await store.delete_schedule(schedule_id)
                return f"cancelled {schedule_id}" if done else f"no schedule {schedule_id}"
            found_all = await store.list_schedules()
            if not found_all:
                return "no schedules"
            return "\n".join(f"{s.scope}  {describe(s)}".replace("`", "") for s in found_all)

    try:
        print(anyio.run(go))
    except StoreError as exc:
        print(f"lettabot schedules: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else the group)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run(args: argparse.Namespace, *, demo: bool = False) -> int:
    from lettabot.runtime.agents import AgentMissingError
    from lettabot.runtime.discovery import AdapterNotInstalled
    from lettabot.runtime.store import StoreError
    from lettabot.sdk import LettaSDKError

    config = _load(args.config)
    if demo:  # scripted model + a Letta home of its own; see lettabot.runtime.demo
        from lettabot.runtime.demo import enter_demo

        config = enter_demo(config)
    configure_logging(config.log_level, config.log_format,
                      verbose=bool(getattr(args, "verbose", False)))
    if refusals := config.refusals():
        for problem in refusals:
            print(f"lettabot: refusing to start: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings():
        log.warning("%s", warning)
    if config.access.open and config.access.allowed_users:
        log.warning("access.open = true: everyone who can message the bot may talk to it")
    if not config.enabled_adapters():
        print("no adapter is enabled — enable [slack], [discord] or [web] "
              "(lettabot check-config shows the effective config)", file=sys.stderr)
        return EXIT_CONFIG
    start_log.info("config: %s; adapters %s", config.config_file or "defaults (no "
                   "lettabot.toml)", ", ".join(config.enabled_adapters()))
    health_port = args.health_port if args.health_port is not None else config.health.port
    health_host = args.health_host or config.health.host
    if busy := port_problems(config, health_port, health_host):
        for problem in busy:
            print(f"lettabot: cannot start: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    start_log.info("ports: free (%s)", ", ".join(
        f"{key} {port}" for key, _, port, _ in _listeners(config, health_port, health_host))
        or "none needed")
    try:
        try:
            anyio.run(lambda: serve(config, demo=demo, health_port=args.health_port,
                                    health_host=args.health_host, grace=args.grace))
        except BaseExceptionGroup as group:  # one error from inside the bot's task group
            raise _single(group) from None
    except (AdapterNotInstalled, AgentMissingError, ConfigError, StoreError) as exc:
        print(f"lettabot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LettaSDKError as exc:  # e.g. no model provider configured yet
        print(f"lettabot: could not start the agent: {exc}\n"
              "  (to try lettabot without a model key: lettabot run --demo)", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        raise SystemExit(check_config(args.config, verbose=args.verbose))
    if args.command == "db":
        raise SystemExit(db_command(args.config, args.action))
    if args.command == "schedules":
        raise SystemExit(schedules_command(args.config, args.action, args.id))
    if args.command == "example-config":
        from lettabot.runtime.config import full_example

        print(full_example(), end="")
        raise SystemExit(0)
    if args.command == "init":
        from lettabot.runtime.init import run_init

        raise SystemExit(run_init(args))
    if args.command == "host":
        from lettabot.runtime.host import host_command

        raise SystemExit(host_command(args))
    if args.command == "run":
        raise SystemExit(run(args, demo=bool(getattr(args, "demo", False))))
    parser.print_help()
    raise SystemExit(EXIT_CONFIG)


if __name__ == "__main__":
    main()
