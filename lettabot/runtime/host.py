"""``lettabot host``: an App Server host — ``letta server --listen`` on a Letta home of its
own, whose local backend holds the agents placed on it (``[[agents]] host``).

- The capability token comes from ``--token-file`` or ``$LETTABOT_HOST_TOKEN`` (then it is
  written, mode 0600, to ``<home>/.lettabot-host/token``: the CLI reads a file). Every
  client (lettabot replicas, ``[[hosts]] token``) sends it as a bearer token.
- ``HOME`` and ``LETTA_LOCAL_BACKEND_DIR`` point into ``--home`` (a volume of its own), and
  the home is put on the local backend (``letta backend local``) before the server starts.
- The agents' tools run in lettabot's tool sandbox (docs/security.md), as on a bot that
  runs its own App Servers: the CLI in bubblewrap with only the system, its files, the
  Letta home and ``--workspaces`` mounted, each shell command (and the CLI's own git) in a
  second sandbox that sees only its conversation's folder. ``--workspaces`` must be the
  replicas' ``letta.cwd`` at the same path (a shared volume): conversations work in their
  scope's folder there. ``--no-sandbox`` runs tools as this host's user (warned).
- The server runs as this process's child: SIGTERM, SIGINT and SIGHUP are passed on to it,
  it dies with this process (``PR_SET_PDEATHSIG``), and this process is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so whatever the agents' tools leave behind is reaped here,
  not left as zombies (in a container this process may be PID 1). The exit status is the
  server's (0 after a stop this process passed on).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from lettabot.runtime.config import SandboxConfig
from lettabot.runtime.sandbox import SandboxUnavailable, prepare
from lettabot.sdk import LettaSDKError, cli_env, find_cli

__all__ = ["TOKEN_ENV", "add_parser", "host_command", "server_argv"]

TOKEN_ENV = "LETTABOT_HOST_TOKEN"
EXIT_USAGE = 2
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def add_parser(sub: Any) -> None:
    host = sub.add_parser(
        "host", help="run an App Server host (letta server --listen) on its own Letta home")
    host.add_argument("--listen", required=True, metavar="URL",
                      help="where to listen, e.g. ws://0.0.0.0:8790")
    host.add_argument("--home", required=True, metavar="DIR",
                      help="this host's Letta home (HOME of the CLI: agents, memory, "
                           "provider keys); its own volume")
    host.add_argument("--token-file", metavar="FILE",
                      help=f"the capability token (default: ${TOKEN_ENV})")
    host.add_argument("--workspaces", metavar="DIR",
                      help="the root of the conversations' folders: the replicas' letta.cwd, "
                           "mounted at the same path (default: <home>/workspaces)")
    host.add_argument("--sandbox-network", choices=("none", "host"), default="none",
                      help="shell commands' network (default: none)")
    host.add_argument("--no-sandbox", action="store_true",
                      help="run the agents' tools unsandboxed, as this host's user (they can "
                           "read its Letta home: provider keys, every conversation)")


def _prctl(option: int, value: int) -> None:
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _die_with_parent() -> None:  # runs in the child, before exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _token_file(args: argparse.Namespace, home: Path) -> Path | None:
    if args.token_file:
        path = Path(args.token_file).resolve()
        return path if path.is_file() and path.read_text().strip() else None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    folder = home / ".lettabot-host"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return path


def server_argv(cli: str, listen: str, token_file: Path) -> list[str]:
    """The App Server's command line."""
    return [cli, "server", "--listen", listen, "--ws-auth", "capability-token",
            "--ws-token-file", str(token_file)]


def _local_backend(cli: str, env: dict[str, str], home: Path) -> None:
    """``letta backend local`` in ``home`` unless it is already (a fresh home is not)."""
    try:
        settings = json.loads((home / ".letta" / "settings.json").read_text())
    except (OSError, ValueError):
        settings = {}
    if isinstance(settings, dict) and settings.get("preferredBackendMode") == "local":
        return
    subprocess.run([cli, "backend", "local"], env=env, cwd=home, check=True,
                   stdout=subprocess.DEVNULL, timeout=120)


def host_command(args: argparse.Namespace) -> int:
    """Run the host until its server exits or a stop signal; its exit status."""
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    token_file = _token_file(args, home)
    if token_file is None:
        print(f"lettabot host: no capability token: pass --token-file FILE or set "
              f"{TOKEN_ENV} (lettabot's [[hosts]] token is the same value)", file=sys.stderr)
        return EXIT_USAGE
    env = cli_env({"HOME": str(home),
                   "LETTA_LOCAL_BACKEND_DIR": str(home / ".letta" / "lc-local-backend")})
    try:
        cli = find_cli()
        _local_backend(cli, env, home)
    except (LettaSDKError, OSError, subprocess.SubprocessError) as exc:
        print(f"lettabot host: cannot prepare the Letta home {home}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.no_sandbox:
        print("lettabot host: --no-sandbox: the agents' tools run as this host's user and can "
              "read whatever it can (provider keys in the Letta home, other conversations)",
              file=sys.stderr)
        launcher = cli
    else:
        workspaces = Path(args.workspaces or home / "workspaces").resolve()
        try:
            launcher = str(prepare(
                SandboxConfig(network=args.sandbox_network), home / ".lettabot-host" / "sandbox",
                workspaces=workspaces, home=home, backend=home / ".letta" / "lc-local-backend",
                secret=[token_file]).cli_path)
        except SandboxUnavailable as exc:
            print(f"lettabot host: {exc}; {exc.fix}", file=sys.stderr)
            return EXIT_USAGE
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return supervise(server_argv(launcher, args.listen, token_file), env, home)


def supervise(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run ``argv``, passing stop signals on, reaping every child (orphans included),
    until it exits; its exit status (0 if it ended on a stop passed on)."""
    stopping = False
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if proc is not None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in _STOPS}
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd,
                                preexec_fn=_die_with_parent)
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 0
            if pid == proc.pid:
                proc.returncode = code = os.waitstatus_to_exitcode(status)
                break
        _reap_exited()
        if code < 0:
            return 0 if stopping and -code in _STOPS else 128 - code
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reap_exited() -> None:
    """Reap children that already exited (tool processes orphaned to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
