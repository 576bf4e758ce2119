"""Benchmark the tool sandbox (issue 23). Prints a table; asserts nothing.

    .venv/bin/python bench/sandbox.py [--commands 50] [--starts 5] [--requests 200]

1. one shell command (``bash -c true``): run directly vs through the generated ``shell``
   launcher from inside the outer sandbox, as the CLI runs every Bash command (target:
   <= 50 ms overhead per command); plain ``bash`` inside the outer sandbox as a middle line
2. the App Server's start (``letta server --listen``, time to its "Listening on" line):
   the CLI's Node run directly vs through the ``letta`` launcher (the outer sandbox)
3. the key proxy: one streamed chat completion from the scripted model, fetched directly vs
   through :class:`KeyProxy` (a new connection per request in both cases)

Baselines are measured in the same run; the launchers are built with
:func:`lettabot.runtime.sandbox.prepare` in a temporary folder. Needs bubblewrap.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import signal
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path

from _offline import offline_home, print_table  # bench/ is on sys.path as a script

from lettabot.runtime.config import SandboxConfig
from lettabot.runtime.keyproxy import KeyProxy, Upstream
from lettabot.runtime.sandbox import Sandbox, letta_payload, prepare


def stats(times: list[float]) -> tuple[float, float]:
    """Median and p95 in ms."""
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def row(name: str, times: list[float], note: str = "") -> tuple[str, str, str]:
    median, p95 = stats(times)
    return (name, f"{median:.1f} ms", f"p95 {p95:.1f} ms{'; ' + note if note else ''}")


# -- 1. a shell command ----------------------------------------------------------------

_LOOP = r"""
export LC_ALL=C
for i in $(seq "$1"); do
    t0=$EPOCHREALTIME; "${@:2}" || exit 1; t1=$EPOCHREALTIME
    echo "$t0 $t1"
done
"""
"""Times each run of a command from inside bash, so only the command's own start and end
count (not the start of the harness, nor of the outer sandbox)."""


def loop(prefix: list[str], n: int, command: list[str], cwd: Path) -> list[float]:
    done = subprocess.run([*prefix, "/bin/bash", "-c", _LOOP, "loop", str(n), *command],
                          capture_output=True, text=True, cwd=cwd, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the timing loop failed ({done.returncode}): {done.stderr.strip()}")
    pairs = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return [float(b) - float(a) for a, b in pairs]


def outer_prefix(sandbox: Sandbox, cwd: Path) -> list[str]:
    """The outer sandbox's bwrap command as the ``letta`` launcher runs it, up to the
    program: read from the launcher itself, so the bench measures what lettabot wrote."""
    text = sandbox.cli_path.read_text()
    line = next(part for part in text.split("\nexec ")[1:])
    outer = shlex.split(line.split(" ${tokdir", 1)[0])
    return [*outer, "--chdir", str(cwd), "--"]


def shell_commands(sandbox: Sandbox, scope: Path, n: int) -> list[tuple[str, str, str]]:
    prefix = outer_prefix(sandbox, scope)
    for warm in ([], prefix):  # page caches and the dynamic loader, before timing
        loop(warm, 3, ["/bin/bash", "-c", "true"], scope)
    direct = loop([], n, ["/bin/bash", "-c", "true"], scope)
    inside = loop(prefix, n, ["/bin/bash", "-c", "true"], scope)
    launcher = loop(prefix, n, [str(sandbox.shell), "-c", "true"], scope)
    base, _ = stats(direct)
    median, p95 = stats(launcher)
    return [
        row("bash -c true, direct", direct, f"N={n}"),
        row("bash -c true, in the outer sandbox", inside, "plain bash, no inner sandbox"),
        row("bash -c true, via the shell launcher", launcher,
            f"{median / base:.1f}x direct"),
        ("  overhead per command (median)", f"{median - base:.1f} ms",
         f"p95 {p95 - base:.1f} ms (target <= 50 ms)"),
    ]


# -- 2. the App Server's start ---------------------------------------------------------

def time_to_listen(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert proc.stdout is not None
        tail = []
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            if "Listening on" in line:
                return time.perf_counter() - t
            tail.append(line)
        raise SystemExit(f"{argv[0]} exited before listening:\n{''.join(tail[-20:])}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: this server and its children
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def server_starts(sandbox: Sandbox, cwd: Path, n: int) -> list[tuple[str, str, str]]:
    node, script = letta_payload()
    listen = ["server", "--listen", "ws://127.0.0.1:0"]
    plain_argv, sandboxed_argv = [str(node), str(script), *listen], [str(sandbox.cli_path), *listen]
    time_to_listen(plain_argv, cwd)  # warm: the compile cache, the page cache
    time_to_listen(sandboxed_argv, cwd)
    plain: list[float] = []
    sandboxed: list[float] = []
    for _ in range(n):  # interleaved: drift in the machine's load hits both alike
        plain.append(time_to_listen(plain_argv, cwd))
        sandboxed.append(time_to_listen(sandboxed_argv, cwd))
    base, _ = stats(plain)
    median, _ = stats(sandboxed)
    return [
        row("App Server start, plain", plain, f"N={n}, to 'Listening on'"),
        row("App Server start, via the letta launcher", sandboxed,
            f"{median - base:+.0f} ms, {median / base:.2f}x plain"),
    ]


# -- 3. the key proxy ------------------------------------------------------------------

BODY = json.dumps({"model": "scripted", "stream": True,
                   "messages": [{"role": "user", "content": "ping"}]}).encode()


def completion(base_url: str, key: str) -> float:
    url = urllib.parse.urlsplit(base_url)
    t = time.perf_counter()
    conn = http.client.HTTPConnection(url.netloc, timeout=30)
    try:
        conn.request("POST", url.path.rstrip("/") + "/chat/completions", body=BODY,
                     headers={"content-type": "application/json",
                              "authorization": f"Bearer {key}"})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200 or b"[DONE]" not in data:
            raise SystemExit(f"unexpected answer {answer.status}: {data[:300]!r}")
    finally:
        conn.close()
    return time.perf_counter() - t


def key_proxy(model_url: str, n: int) -> list[tuple[str, str, str]]:
    proxy = KeyProxy()
    proxied_url = proxy.add(Upstream(model_url, "real-key"))
    proxy.start()
    try:
        for _ in range(10):
            completion(model_url, "real-key")
            completion(proxied_url, proxy.stand_in)
        direct: list[float] = []
        proxied: list[float] = []
        for _ in range(n):
            direct.append(completion(model_url, "real-key"))
            proxied.append(completion(proxied_url, proxy.stand_in))
    finally:
        proxy.stop()
    base, _ = stats(direct)
    median, p95 = stats(proxied)
    _, base_p95 = stats(direct)
    return [
        row("streamed completion, direct", direct, f"N={n}"),
        row("streamed completion, via KeyProxy", proxied,
            f"{median - base:+.2f} ms (p95 {p95 - base_p95:+.2f} ms), {median / base:.2f}x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with offline_home() as (model, home):
        data = home.path / "data"
        workspaces = data / "workspaces"
        cache = Path(os.environ["NODE_COMPILE_CACHE"])
        cache.mkdir(parents=True, exist_ok=True)
        sandbox = prepare(SandboxConfig(), data / "sandbox", workspaces=workspaces,
                          home=home.path, backend=home.backend_dir, secret=[data / "store.db"],
                          extra_rw=[cache])
        scope = workspaces / "bench-scope"
        scope.mkdir(parents=True, exist_ok=True)
        rows = shell_commands(sandbox, scope.resolve(), args.commands)
        rows += server_starts(sandbox, scope.resolve(), args.starts)
        rows += key_proxy(model.base_url, args.requests)
    print_table(rows)


if __name__ == "__main__":
    main()
