"""``[[hosts]]`` and ``[[agents]] host`` in the config, ``check-config`` on them, and the
``lettabot host`` command's refusals and signal handling (no model needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lettabot import sdk
from lettabot.runtime.config import ConfigError, load_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]

HOSTS = """
[[hosts]]
name = "alpha"
url = "wss://alpha.internal:8790"
token = "alpha-token"

[[hosts]]
name = "beta"
url = "ws://127.0.0.1:8791"
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "lettabot.toml"
    path.write_text(text)
    return subprocess.run([*LETTABOT, "check-config", "--config", str(path)], cwd=tmp_path,
                          env=_clean_env(), capture_output=True, text=True, timeout=60)


def test_an_agent_naming_an_unknown_host_is_refused_by_check_config(tmp_path: Path) -> None:
    done = _check(tmp_path, HOSTS + '\n[[agents]]\nname = "ops"\nhost = "gamma"\n')
    assert done.returncode == 2
    assert "agents[0].host" in done.stderr and "'gamma'" in done.stderr
    assert "alpha, beta" in done.stderr  # the hosts it could name


def test_a_host_name_used_twice_or_a_remote_host_without_token_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LETTABOT_")]:
        monkeypatch.delenv(name)
    twice = tmp_path / "twice.toml"
    twice.write_text(HOSTS + '\n[[hosts]]\nname = "alpha"\nurl = "ws://127.0.0.1:1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(twice)
    assert any("hosts[2].name" in p and "used twice" in p for p in caught.value.problems)
    tokenless = tmp_path / "tokenless.toml"
    tokenless.write_text('[[hosts]]\nname = "far"\nurl = "wss://far.example:8790"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tokenless)
    assert any("token" in p and "not on this machine" in p for p in caught.value.problems)
    cloud = tmp_path / "cloud.toml"
    cloud.write_text('[letta]\nbackend = "cloud"\n' + HOSTS)
    with pytest.raises(ConfigError) as caught:
        load_config(cloud)
    assert any(p.startswith("hosts") and "cloud" in p for p in caught.value.problems)


def test_check_config_says_which_host_an_agent_lives_on(tmp_path: Path) -> None:
    done = _check(tmp_path, HOSTS + '\n[[agents]]\nname = "ops"\nhost = "alpha"\n'
                                    'default = true\n\n[[agents]]\nname = "dev"\n'
                                    'routes = [{ channel = "CDEV" }]\n')
    assert "alpha-token" not in done.stdout + done.stderr
    assert "ops: agent created on first use" in done.stdout
    ops = next(line for line in done.stdout.splitlines() if "ops: agent" in line)
    dev = next(line for line in done.stdout.splitlines() if "dev: agent" in line)
    assert "on host alpha" in ops and "on host" not in dev


@pytest.mark.anyio
async def test_a_client_keeps_hosts_out_of_the_conversation_spread() -> None:
    client = sdk.LettaClient(servers=1, urls=[("ws://127.0.0.1:9001", "t")],
                             hosts={"alpha": ("ws://127.0.0.1:9002", "t"),
                                    "beta": "ws://127.0.0.1:9003"})
    assert client.pool_size == 2
    assert (client.host_server("alpha"), client.host_server("beta")) == (2, 3)
    spread = {client.server_for(f"local-conv-{i}") for i in range(200)}
    assert spread == {0, 1}
    infos = client.servers()
    assert [i.host for i in infos] == [None, None, "alpha", "beta"]
    assert infos[3].url == "ws://127.0.0.1:9003"
    with pytest.raises(ValueError, match="no host named"):
        client.host_server("gamma")
    await client.close()


@pytest.mark.anyio
async def test_an_unreachable_host_fails_fast_with_a_typed_error() -> None:
    import anyio

    client = sdk.LettaClient(servers=0, hosts={"gone": ("ws://127.0.0.1:9", "t")})
    with anyio.fail_after(10), pytest.raises(sdk.AppServerUnreachableError) as caught:
        await client.check_server(client.host_server("gone"))
    assert caught.value.url.startswith("ws://127.0.0.1:9")
    await client.close()


def test_lettabot_host_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run([*LETTABOT, "host", "--listen", "ws://127.0.0.1:0",
                           "--home", str(tmp_path / "home")], env=_clean_env(),
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "no capability token" in done.stderr


def test_lettabot_host_passes_sigterm_on_and_reaps_its_server(tmp_path: Path) -> None:
    """A stand-in CLI (LETTA_CLI_PATH) records its argv and environment, leaves an orphan
    behind and waits for SIGTERM: the host passes the signal on, reaps both, exits 0."""
    fake = tmp_path / "letta"
    record = tmp_path / "record"
    fake.write_text(f"""#!/bin/sh
if [ "$1" = backend ]; then echo "$@" >> {record}.backend; exit 0; fi
echo "$@" > {record}
echo "HOME=$HOME BACKEND=$LETTA_LOCAL_BACKEND_DIR" >> {record}
sh -c 'sleep 0.2' &
trap 'exit 0' TERM
echo "Listening on ws://127.0.0.1:1"
while :; do sleep 0.1; done
""")
    fake.chmod(0o755)
    home = tmp_path / "home"
    env = {**_clean_env(), "LETTA_CLI_PATH": str(fake), "LETTABOT_HOST_TOKEN": "s3cret"}
    # --no-sandbox: the sandbox starts the CLI bundled with lettabot, not a stand-in
    proc = subprocess.Popen([*LETTABOT, "host", "--listen", "ws://0.0.0.0:8790",
                             "--home", str(home), "--no-sandbox"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not record.exists() or "HOME=" not in record.read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        argv, where = record.read_text().splitlines()[:2]
        token_file = home / ".lettabot-host" / "token"
        assert argv == (f"server --listen ws://0.0.0.0:8790 --ws-auth capability-token "
                        f"--ws-token-file {token_file}")
        assert token_file.read_text().strip() == "s3cret"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert where == f"HOME={home} BACKEND={home}/.letta/lc-local-backend"
        assert (tmp_path / "record.backend").read_text().strip() == "backend local"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert proc.stdout is not None
        assert b"--no-sandbox: the agents' tools run as this host's user" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_local_server_is_needed_when_every_agent_has_a_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LETTABOT_")]:
        monkeypatch.delenv(name)
    placed = tmp_path / "placed.toml"
    placed.write_text("[servers]\ncount = 0\n" + HOSTS
                      + '\n[[agents]]\nname = "ops"\nhost = "alpha"\n')
    assert load_config(placed).servers.count == 0
    unplaced = tmp_path / "unplaced.toml"
    unplaced.write_text("[servers]\ncount = 0\n" + HOSTS + '\n[[agents]]\nname = "ops"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(unplaced)
    assert any(p.startswith("servers.count") and "host" in p for p in caught.value.problems)
