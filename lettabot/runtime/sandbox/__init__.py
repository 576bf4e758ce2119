"""The agent's tools run in sandboxes that hold no secret (see docs/security.md).

:func:`prepare` writes two launchers into ``<data_dir>/sandbox/``:

- ``letta``: used as the SDK's ``cli_path``, it starts the Letta CLI (App Server or
  stream-json) inside bubblewrap with only the system, the CLI's files, the Letta home and
  the workspaces mounted (:mod:`.bwrap`);
- ``shell``: the CLI's ``$SHELL`` inside that sandbox; every Bash command of the agent goes
  through it into a second sandbox that sees only the conversation's own scope folder.

Nothing here predicts what a tool will do with its input: whatever the agent runs, these
are the only files it can reach. The approval guard stays the second line.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lettabot.runtime.config import SandboxConfig
from lettabot.runtime.sandbox.bwrap import mask_args, system_args

__all__ = ["Sandbox", "SandboxUnavailable", "letta_payload", "prepare", "probe"]

log = logging.getLogger("lettabot.runtime.sandbox")

FIX = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`) on a kernel that "
       "allows unprivileged user namespaces; in a container, allow them and an unmasked /proc "
       "(Docker: `--security-opt seccomp=deploy/docker/seccomp-bwrap.json --security-opt "
       "apparmor=unconfined --security-opt systempaths=unconfined`, or seccomp=unconfined; "
       "Kubernetes: procMount Unmasked with hostUsers false; see docs/operate.md); or set "
       "[sandbox] mode = \"off\" to run tools unsandboxed (not recommended)")


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot start here: :attr:`why` is what it said, :data:`FIX` the fix."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the tool sandbox cannot start: {why}")
        self.why = why
        self.fix = FIX


@dataclass(frozen=True)
class Sandbox:
    """The launchers :func:`prepare` wrote."""

    cli_path: Path
    """The SDK's ``cli_path``: the Letta CLI inside the sandbox."""
    shell: Path
    workspaces: Path


def letta_payload() -> tuple[Path, Path]:
    """The Letta CLI's bundled Node and ``letta.js`` (what the ``letta`` launcher runs)."""
    import letta_code  # type: ignore[import-untyped]  # the PyPI `letta` distribution

    payload = Path(letta_code.__file__).resolve().parent / "_payload"
    node, script = payload / "bin" / "node", payload / "app" / "letta.js"
    if not node.is_file() or not script.is_file():
        raise SandboxUnavailable(f"the Letta CLI's files are not where expected ({payload})")
    return node, script


def probe(bwrap: str | None = None) -> None:
    """Start a sandbox inside a sandbox, as tools will; raise :class:`SandboxUnavailable`."""
    bwrap = bwrap or shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (`bwrap`) is not installed")
    inner = [bwrap, "--unshare-all", "--die-with-parent", *system_args(nested=True), "--",
             "/bin/true"]
    outer = [bwrap, "--unshare-pid", "--die-with-parent", *system_args(), "--", *inner]
    try:
        done = subprocess.run(outer, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bwrap did not run ({exc})") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise SandboxUnavailable(f"bwrap failed: {said[-1] if said else done.returncode}")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def prepare(config: SandboxConfig, folder: Path, *, workspaces: Path, home: Path,
            backend: Path | None, secret: Iterable[Path],
            extra_rw: Iterable[Path] = (), git_network: bool = False) -> Sandbox:
    """Check bubblewrap works and write the launchers into ``folder`` (mode 0700).

    ``workspaces``: the root of the scope folders; ``home``: the CLI's ``HOME`` (only its
    ``.letta`` is mounted); ``backend``: ``LETTA_LOCAL_BACKEND_DIR`` if set; ``secret``:
    paths never to be reachable even if they lie inside a mounted folder; ``git_network``:
    the CLI's own git may reach the network (the cloud backend pushes memory).
    """
    bwrap = shutil.which("bwrap")
    probe(bwrap)
    assert bwrap is not None
    node, script = letta_payload()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    workspaces.mkdir(parents=True, exist_ok=True)
    letta_home = home / ".letta"
    letta_home.mkdir(parents=True, exist_ok=True)
    folder, workspaces, letta_home = _real(folder), _real(workspaces), _real(letta_home)
    backend = _real(backend) if backend is not None else letta_home / "lc-local-backend"
    backend.mkdir(parents=True, exist_ok=True)
    memfs = backend / "memfs"
    payload = _real(node.parent.parent)
    shell, git = folder / "shell", folder / "bin" / "git"
    (folder / "bin").mkdir(exist_ok=True)
    shared_tmp = folder / "tmp"  # one /tmp for all App Servers of this bot (their locks)
    shared_tmp.mkdir(mode=0o700, exist_ok=True)

    rw = [letta_home, backend, workspaces, *(_real(p) for p in extra_rw if Path(p).is_dir())]
    mounted = [payload, folder, *rw]
    outer = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", *system_args(), "--bind", str(shared_tmp), "/tmp"]
    home_real = _real(home)
    if home_real != Path("/") and not any(home_real == m or home_real in m.parents
                                          for m in (Path("/usr"), Path("/etc"))):
        outer += ["--tmpfs", str(home_real)]  # the rest of the home: empty
    outer += ["--ro-bind", str(payload), str(payload), "--ro-bind", str(folder), str(folder)]
    for path in rw:
        outer += ["--bind", str(path), str(path)]
    outer += mask_args(secret, mounted)
    outer += ["--setenv", "SHELL", str(shell), "--setenv", "TMPDIR", "/tmp",
              "--setenv", "LETTA_CODE_DISTRIBUTION", "pypi"]

    launcher = folder / "letta"
    _write(launcher, _LAUNCHER.format(
        outer=shlex.join(outer), node_bin=shlex.quote(f"{git.parent}:{node.parent}"),
        node=shlex.quote(str(node)), script=shlex.quote(str(script)),
        root=shlex.quote(str(workspaces))))

    def inner(network: bool) -> str:
        args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
        if network:
            args.append("--share-net")
        args += system_args(nested=True)
        args += ["--ro-bind", str(payload), str(payload)]  # git hooks of memory run its node
        args += mask_args(secret, [workspaces])
        return shlex.join(args)

    common = {"root": shlex.quote(str(workspaces)), "memfs": shlex.quote(str(memfs)),
              "timeout": config.timeout_seconds, "memory_kb": config.memory_mb * 1024,
              "nproc": config.max_processes, "fsize_kb": config.max_file_mb * 1024}
    _write(shell, _SHELL.format(inner=inner(config.network == "host"), **common))
    # The CLI runs git itself (memory, a repository's status for its context), and a
    # repository's config and hooks name programs git runs: the same sandbox, always.
    _write(git, _GIT.format(inner=inner(config.network == "host" or git_network), **common))
    log.debug("tool sandbox ready in %s", folder)
    return Sandbox(launcher, shell, workspaces)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o700)
    tmp.replace(path)


_LAUNCHER = """#!/bin/sh
# The Letta CLI inside lettabot's tool sandbox (generated by lettabot; do not edit).
tokdir=
prev=
for arg in "$@"; do
    [ "$prev" = "--ws-token-file" ] && tokdir=$(dirname -- "$arg")
    prev=$arg
done
here=$(pwd -P 2>/dev/null)
case "$here/" in
    {root}/*) ;;
    *) here={root} ;;  # where the CLI runs is always a mounted folder
esac
exec {outer} ${{tokdir:+--ro-bind "$tokdir" "$tokdir"}} \\
    --setenv PATH {node_bin}:"$PATH" --chdir "$here" -- {node} {script} "$@"
"""

_BINDS = r"""root={root}
memfs={memfs}
binds=()
case "$target/" in
    "$root"/?*/*)
        rel=${{target#"$root"/}}; scope=$root/${{rel%%/*}}
        binds+=(--bind "$scope" "$scope" --tmpfs "$scope/.letta" --remount-ro "$scope/.letta")
        ;;
    "$memfs"/?*/*)
        rel=${{target#"$memfs"/}}; agent=$memfs/${{rel%%/*}}
        binds+=(--bind "$agent" "$agent")
        ;;
    *)
        outside=1
        ;;
esac
if [ -n "${{MEMORY_DIR:-}}" ]; then
    mem=$(realpath -e -- "$MEMORY_DIR" 2>/dev/null) || mem=
    case "$mem/" in
        "$memfs"/?*/memory/) binds+=(--bind "$mem" "$mem") ;;
    esac
fi
limits=(/bin/bash -c 'ulimit -v {memory_kb} -u {nproc} -f {fsize_kb} 2>/dev/null; exec "$@"' limits
        /usr/bin/timeout -k 5 {timeout})
"""

_SHELL = r"""#!/bin/bash
# The agent's shell: each command in a sandbox that sees only its conversation's folder
# (generated by lettabot; do not edit).
cwd=$(pwd -P 2>/dev/null) || cwd=$PWD
target=$cwd
outside=
""" + _BINDS + r"""
if [ -n "$outside" ]; then
    echo "lettabot sandbox: shell commands run only in the conversation's folder" \
         "(the current directory $cwd is outside it)" >&2
    exit 126
fi
exec {inner} "${{binds[@]}}" --dir /tmp/home --setenv HOME /tmp/home \
    --unsetenv LETTA_API_KEY --unsetenv LETTA_BASE_URL --chdir "$cwd" -- \
    "${{limits[@]}}" /bin/bash "$@"
"""

_GIT = r"""#!/bin/bash
# git as the Letta CLI runs it: in the tool sandbox, seeing only the repository's scope
# folder or agent memory folder (generated by lettabot; do not edit). A repository's config
# and hooks name programs git runs (core.fsmonitor, hooks, filters): never outside it.
cwd=$(pwd -P 2>/dev/null) || cwd=$PWD
target=$cwd
args=("$@")
i=0
while [ "$i" -lt "${{#args[@]}}" ]; do
    case "${{args[$i]}}" in
        -C)
            j=$((i + 1)); dir=${{args[$j]:-.}}
            case "$dir" in /*) ;; *) dir=$target/$dir ;; esac
            target=$(realpath -m -- "$dir"); args[$j]=$target; i=$((i + 2)) ;;
        -c|--git-dir|--work-tree|--namespace|--exec-path) i=$((i + 2)) ;;
        -*) i=$((i + 1)) ;;
        *) break ;;
    esac
done
outside=
""" + _BINDS + r"""
here=$cwd
if [ -n "$outside" ]; then
    here=/  # nothing of it is mounted: git finds no repository there
else
    case "$cwd/" in "$target"/*) ;; *) here=$target ;; esac
fi
exec {inner} "${{binds[@]}}" --dir /tmp/home --setenv HOME /tmp/home \
    --unsetenv LETTA_API_KEY --unsetenv LETTA_BASE_URL --chdir "$here" -- \
    "${{limits[@]}}" /usr/bin/git "${{args[@]}}"
"""
