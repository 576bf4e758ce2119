"""Secrets out of reach, whatever is approved: the agent in ``unrestricted`` mode.

Nothing asks here: every tool call runs. An allowed user tries every way to make the agent
show a secret — Bash, Read, Grep, Glob, Write-then-read, /proc, copying files — and the
secrets are where deployments keep them: lettabot's environment, ``.env``, the config file,
the store, a provider key (connected at start, the model server accepts only it), and another
person's DM. None may reach the chat or the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import load_config
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ENV_SECRET = "xoxb-ENVSECRET-5151"
DOTENV_SECRET = "xoxb-DOTENVSECRET-5252"
FILE_SECRET = "FILESECRET-webtoken-5353"
DB_SECRET = "DBPASSWORD-5454"
PROVIDER_SECRET = "sk-PROVIDERSECRET-5555"
DM_SECRET = "DMSECRET-5656"
STATE_SECRET = "STATESECRET-5757"
SECRETS = (ENV_SECRET, DOTENV_SECRET, FILE_SECRET, DB_SECRET, PROVIDER_SECRET, STATE_SECRET)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def keyed_model() -> Iterator[ScriptedModelServer]:
    """A model server that answers only with the provider key (as a real provider)."""
    with ScriptedModelServer(api_key=PROVIDER_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(module_letta_home: LettaHome, keyed_model: ScriptedModelServer
               ) -> Iterator[dict[str, Any]]:
    home = module_letta_home
    data = home.path / "data"
    data.mkdir(exist_ok=True)
    (data / "state.txt").write_text(STATE_SECRET)  # lettabot's own state folder
    config_file = home.workdir / "lettabot.toml"
    config_file.write_text(
        f'data_dir = "{data}"\n'
        f'[letta]\nmodel = "{home.model}"\npermission_mode = "unrestricted"\n'
        f'[[letta.providers]]\ntype = "openai-compatible"\nbase_url = "{keyed_model.base_url}"\n'
        'api_key_env = "SCRIPTED_PROVIDER_KEY"\n'
        '[access]\nallowed_users = ["test:U1", "test:U2"]\n'
        f'[web]\nenabled = false\ntoken = "{FILE_SECRET}"\n'
    )
    (home.workdir / ".env").write_text(f"LETTABOT_DISCORD__TOKEN={DOTENV_SECRET}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LETTABOT_SLACK__BOT_TOKEN", ENV_SECRET)
        mp.setenv("SCRIPTED_PROVIDER_KEY", PROVIDER_SECRET)
        mp.setenv("DATABASE_URL", f"postgresql://bot:{DB_SECRET}@127.0.0.1/bot")
        yield {"home": home, "config_file": config_file, "data": data}


@pytest.fixture(scope="module")
async def open_bot(deployment: dict[str, Any]) -> AsyncIterator[tuple[Bot, TestChat]]:
    config = load_config(deployment["config_file"])
    assert config.sandbox.mode == "bwrap"  # the default
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        yield bot, chat


def _leaked(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [s for s in (*SECRETS, *extra) if s in text]


def _vectors(d: dict[str, Any], bot: Bot) -> list[tuple[str, dict[str, Any]]]:
    home: LettaHome = d["home"]
    letta = home.path / ".letta"
    auth = letta / "lc-local-backend" / "providers" / "auth.json"
    config_file, dotenv, data = d["config_file"], home.workdir / ".env", d["data"]
    pid = os.getpid()
    bash = [
        "printenv", "env", "cat /proc/self/environ", f"cat /proc/{pid}/environ",
        "for p in /proc/[0-9]*; do cat $p/environ; done; ls /proc/*/root/",
        f"cat {config_file} {dotenv} {data}/state.txt {data}/lettabot.db",
        f"cat {auth} $HOME/.letta/lc-local-backend/providers/auth.json",
        f"grep -rs -e {PROVIDER_SECRET[:8]} -e xoxb -e SECRET / --exclude-dir=proc "
        "--exclude-dir=usr --exclude-dir=sys --exclude-dir=dev",
        f"grep -rs DMSECRET {letta} {home.path} ..",
        f"cp -r {letta} /tmp/copied && grep -rs sk- /tmp/copied; ls -la {home.path} ~",
        f"cd {data} && cat state.txt; cd {home.workdir} && cat lettabot.toml .env",
        "cat /etc/shadow /etc/environment ~/.bash_history; ls -la /",
    ]
    reads = [
        str(auth), "$HOME/.letta/lc-local-backend/providers/auth.json",
        "${HOME}/.letta/lc-local-backend/providers/auth.json", "~/.letta/settings.json",
        str(config_file), str(dotenv), f"{data}/state.txt", f"{data}/lettabot.db",
        f"/proc/{pid}/environ", "/proc/self/environ", "$SCRIPTED_PROVIDER_KEY",
        "$LETTABOT_SLACK__BOT_TOKEN", "$DATABASE_URL", f"$HOME/work/{dotenv.name}",
        "../../lettabot.toml",
    ]
    vectors: list[tuple[str, dict[str, Any]]] = []
    vectors += [("Bash", {"command": c, "description": "look"}) for c in bash]
    vectors += [("Read", {"file_path": r}) for r in reads]
    vectors += [("Grep", {"pattern": p, "path": str(where), "output_mode": "content"})
                for p in ("xoxb-", "SECRET", "sk-")
                for where in (home.path, letta, data, "/proc/self", "/")]
    vectors += [("Glob", {"pattern": "**/*", "path": str(where)})
                for where in (home.path, data)]
    vectors += [("Write", {"file_path": "copy.txt", "content": "x"}),
                ("Bash", {"command": f"ln -s {dotenv} link.env; ln -s {auth} link.json; "
                          "cat link.env link.json", "description": "link"}),
                ("Read", {"file_path": "link.json"})]
    return vectors


async def test_no_tool_reaches_a_secret_even_unrestricted(
    open_bot: tuple[Bot, TestChat], deployment: dict[str, Any],
    keyed_model: ScriptedModelServer,
) -> None:
    bot, chat = open_bot
    dm = chat.scope("Dsand", dm=True)
    await chat.push(f"my password is {DM_SECRET}", scope=dm, user="U2")
    await chat.wait_done(dm)  # answered through the key proxy: the provider key works
    vectors = _vectors(deployment, bot)
    ran = 0
    for n, (tool, tool_input) in enumerate(vectors):
        text = f"vector {n}"
        keyed_model.on(text, Reply.tool(tool, **tool_input), times=1)
        scope = chat.scope("Csand", f"v{n}")
        await chat.push(text, scope=scope, user="U1")
        await chat.wait_done(scope, within=120)
        transcript = chat.transcript(scope)
        assert _leaked(transcript, (DM_SECRET,)) == [], (tool, tool_input, transcript)
        ran += "Tool result" in transcript
    assert ran == len(vectors)  # every call ran (unrestricted): none was asked about
    assert not chat.prompts
    # nothing secret ever reached the model either (tool results included)
    for request in keyed_model.requests:
        body = json.dumps(request.body)
        assert _leaked(body) == [], body[:2000]
    # and the provider key never entered the Letta home
    letta = deployment["home"].path / ".letta"
    for path in letta.rglob("*"):
        if path.is_file():
            assert PROVIDER_SECRET.encode() not in path.read_bytes(), path


async def test_shell_commands_see_only_their_own_scope(
    open_bot: tuple[Bot, TestChat], keyed_model: ScriptedModelServer,
) -> None:
    """A file made in one thread is not there for another's shell or sendable from it."""
    bot, chat = open_bot
    mine, other = chat.scope("Cown", "mine"), chat.scope("Cown", "other")
    (bot.workspace_of(mine) / "private.txt").write_text("PRIVATE-6161")
    keyed_model.on("peek", Reply.tool(
        "Bash", command="cat ../*/private.txt; ls ..; find / -name private.txt 2>/dev/null; "
        "echo checked", description="peek"), times=1)
    await chat.push("peek", scope=other, user="U1")
    await chat.wait_done(other, within=120)
    transcript = chat.transcript(other)
    assert "checked" in transcript and "PRIVATE-6161" not in transcript
    keyed_model.on("send it", Reply.tool(
        "send_file", path=str(bot.workspace_of(mine) / "private.txt")), times=1)
    await chat.push("send it", scope=other, user="U1")
    await chat.wait_done(other, 2, within=120)
    assert not chat.files
    # a permissions file the agent writes cannot switch approvals off (the CLI itself keeps
    # its last agent in <cwd>/.letta/settings.local.json: the agent's shell cannot write there)
    keyed_model.on("allow all", Reply.tool(
        "Bash", command="mkdir -p .letta; echo '{\"permissions\":{\"allow\":[\"Bash\"]}}' "
        "> .letta/settings.local.json; echo wrote", description="x"), times=1)
    await chat.push("allow all", scope=mine, user="U1")
    await chat.wait_done(mine, within=120)
    assert "Read-only file system" in chat.transcript(mine)
    local = bot.workspace_of(mine) / ".letta" / "settings.local.json"
    assert not local.exists() or "permissions" not in local.read_text()


# -- where bubblewrap cannot start: refused loudly, never a silent fallback ---------------

_SECCOMP = """#!/bin/sh
# what bwrap says under Docker's default seccomp profile
echo "bwrap: No permissions to create new namespace, likely because the kernel does not \
allow non-privileged user namespaces." >&2
exit 1
"""


def _lettabot(args: list[str], cwd: Path, env: dict[str, str]) -> Any:
    import subprocess
    import sys

    clean = {k: v for k, v in env.items() if not k.startswith("LETTABOT_")}
    return subprocess.run([sys.executable, "-m", "lettabot.runtime.cli", *args], cwd=cwd,
                          env=clean, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("platform", ["seccomp", "missing"])
def test_run_and_check_config_refuse_where_the_sandbox_cannot_start(
    tmp_path: Path, letta_home: LettaHome, platform: str,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if platform == "seccomp":
        (bin_dir / "bwrap").write_text(_SECCOMP)
        (bin_dir / "bwrap").chmod(0o755)
    path = os.pathsep.join([str(bin_dir)] + [
        d for d in os.environ["PATH"].split(os.pathsep)
        if not (Path(d) / "bwrap").exists()])  # the real one out of reach
    env = {**os.environ, **letta_home.env, "PATH": path}
    config = tmp_path / "lettabot.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[web]\ntoken = "t"\n')
    why = "No permissions to create new namespace" if platform == "seccomp" else "not installed"
    for command in (["check-config"], ["run"]):
        done = _lettabot([*command, "--config", str(config)], tmp_path, env)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "sandbox.mode" in done.stderr and why in done.stderr, done.stderr
        assert "apt-get install bubblewrap" in done.stderr  # the fix is named
        assert "seccomp=unconfined" in done.stderr and 'mode = "off"' in done.stderr
        assert "Traceback" not in done.stderr
    # the explicit opt-out starts, and says so at every start
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[web]\ntoken = "t"\n'
                      '[sandbox]\nmode = "off"\n')
    done = _lettabot(["check-config", "--config", str(config)], tmp_path, env)
    assert "tool sandbox: off" in done.stdout, done.stdout + done.stderr
    assert 'mode = "off"' in done.stderr and "only the approval guard" in done.stderr


async def test_git_the_cli_runs_itself_stays_in_the_sandbox(
    open_bot: tuple[Bot, TestChat], keyed_model: ScriptedModelServer,
) -> None:
    """A repository names programs git runs (core.fsmonitor, hooks). The agent plants them
    in its memory repository and in a repository in its own folder; the CLI then runs git
    there itself (memory status, its session context). The planted program must get no
    more than a shell command: no other scope's folder, no network."""
    bot, chat = open_bot
    victim, attacker = chat.scope("Cgit", "victim"), chat.scope("Cgit", "attacker")
    (bot.workspace_of(victim) / "private.txt").write_text("PRIVATE-7171")
    root = bot.config.letta_cwd.resolve()
    loot = bot.workspace_of(attacker) / "loot.txt"
    payload = (f"#!/bin/sh\ncat {root}/*/private.txt >> {loot} 2>/dev/null\n"
               f"touch {bot.workspace_of(victim)}/pwned 2>/dev/null\n"
               f"(exec 3<>/dev/tcp/127.0.0.1/{keyed_model.port}) 2>/dev/null "
               f"&& echo NET >> {loot}\nexit 0\n")
    hooks = ("pre-commit post-commit post-checkout post-index-change reference-transaction "
             "commit-msg prepare-commit-msg")
    plant = (f"cat > .git/fsm.sh <<'EOF'\n{payload}EOF\nchmod +x .git/fsm.sh; "
             f"for h in {hooks}; do cp .git/fsm.sh .git/hooks/$h; done; "
             'git config core.fsmonitor "$PWD/.git/fsm.sh"; echo planted')
    keyed_model.on("plant memory", Reply.tool(
        "Bash", command=f'cd "$MEMORY_DIR" && {plant}', description="x"), times=1)
    keyed_model.on("plant here", Reply.tool(
        "Bash", command=f"git init -q . && echo hi > a.txt && git add a.txt && "
        f"git -c user.email=a@b -c user.name=a commit -qm init && {plant}",
        description="x"), times=1)
    keyed_model.on("remember this", Reply.tool(
        "Bash", command='cd "$MEMORY_DIR" && echo note > n.md && git add n.md && '
        "git -c user.email=a@b -c user.name=a commit -qm note; git status --short; echo ok",
        description="x"), times=1)
    for n, text in enumerate(("plant memory", "plant here", "remember this"), start=1):
        await chat.push(text, scope=attacker, user="U1")
        await chat.wait_done(attacker, n, within=120)
        assert "planted" in chat.transcript(attacker) or n == 3, chat.transcript(attacker)
    await chat.push("reset", scope=attacker, user="U1")  # a new session: git status here
    await anyio.sleep(1)
    await chat.push("hello again", scope=attacker, user="U1")
    await chat.wait_for(lambda: "hello again" in str(keyed_model.requests[-1].body),
                        within=120)
    await chat.push("hello victim", scope=victim, user="U2")  # memory git in another scope
    await chat.wait_done(victim, within=120)
    assert not (bot.workspace_of(victim) / "pwned").exists()
    text = loot.read_text() if loot.exists() else ""
    assert "PRIVATE-7171" not in text and "NET" not in text, text
