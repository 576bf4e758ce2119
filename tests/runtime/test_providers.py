"""``[[letta.providers]]``: a Letta home with no provider gets one connected by lettabot
(check-config and run), idempotently; a wrong key or an unknown provider is exit 2, naming
the key's variable but never the key (real CLI, a scripted model that checks its key)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettabot import sdk
from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config, ConfigError, load_config
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer

LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]
KEY = "sk-right-key-4f1c"


@pytest.fixture
def keyed_model() -> Iterator[ScriptedModelServer]:
    """A model server that, like a real provider, answers 401 without the right key."""
    with ScriptedModelServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def bare_home(letta_home: LettaHome) -> LettaHome:
    """A Letta home on the local backend with no model provider connected."""
    (letta_home.backend_dir / "providers" / "auth.json").unlink()
    return letta_home


def _config(tmp_path: Path, model: ScriptedModelServer, extra: str = "") -> Path:
    path = tmp_path / "lettabot.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[letta]\nmodel = "openai-compatible/scripted"\n'
        f'[[letta.providers]]\ntype = "openai-compatible"\nbase_url = "{model.base_url}"\n'
        f'api_key_env = "SCRIPTED_KEY"\n{extra}')
    return path


def _check(config: Path, home: LettaHome, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    env.update(home.env)
    env.pop("SCRIPTED_KEY", None)
    if key is not None:
        env["SCRIPTED_KEY"] = key
    return subprocess.run([*LETTABOT, "check-config", "--config", str(config)],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_config_connects_the_provider_and_then_finds_the_model(
    bare_home: LettaHome, keyed_model: ScriptedModelServer, tmp_path: Path,
) -> None:
    config = _config(tmp_path, keyed_model)
    before = _check(config, bare_home, None)
    assert before.returncode == 2
    assert "letta.providers[0].api_key_env" in before.stderr and "SCRIPTED_KEY" in before.stderr
    done = _check(config, bare_home, KEY)
    assert done.returncode == 0, done.stderr
    assert "provider openai-compatible: connected" in done.stdout
    assert KEY not in done.stdout + done.stderr
    again = _check(config, bare_home, KEY)  # idempotent: connecting twice changes nothing
    assert again.returncode == 0, again.stderr


def test_a_wrong_key_or_an_unknown_provider_is_exit_2_without_the_key(
    bare_home: LettaHome, keyed_model: ScriptedModelServer, tmp_path: Path,
) -> None:
    wrong = _check(_config(tmp_path, keyed_model), bare_home, "sk-wrong-key-9d2e")
    assert wrong.returncode == 2
    assert "letta.providers[0].api_key_env" in wrong.stderr
    assert "rejected the key (HTTP 401" in wrong.stderr
    assert "sk-wrong-key-9d2e" not in wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stderr
    config = tmp_path / "unknown.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[[letta.providers]]\n'
                      'type = "no-such-provider"\napi_key = "sk-x"\n')
    unknown = _check(config, bare_home, None)
    assert unknown.returncode == 2
    assert "letta.providers[0].type" in unknown.stderr and "anthropic" in unknown.stderr


def test_cloud_backend_with_providers_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text('[letta]\nbackend = "cloud"\napi_key = "sk-let-x"\n'
                    '[[letta.providers]]\ntype = "anthropic"\napi_key = "sk-ant-secret"\n')
    with pytest.raises(ConfigError, match=r"letta\.providers: are connected") as info:
        load_config(path)
    assert "sk-ant-secret" not in str(info.value)


@pytest.mark.anyio
async def test_run_connects_the_provider_so_the_first_message_is_answered(
    bare_home: LettaHome, keyed_model: ScriptedModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", KEY)
    config = Config(
        _env_file=None, data_dir=tmp_path / "data", access={"self_approve": True},
        letta={"model": "openai-compatible/scripted", "providers": [{
            "type": "openai-compatible", "base_url": keyed_model.base_url,
            "api_key_env": "SCRIPTED_KEY"}]})
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot, name="providers")
        bot.add_adapter(chat)
        scope = chat.scope("C1", "providers")
        await chat.push("hello provider", scope=scope, user="U1")
        await chat.wait_done(scope)
        assert chat.texts(scope) == ["You said: hello provider"]
    [connected] = [p for p in await sdk.list_providers() if p.connected]
    assert connected.id == "openai-compatible"
    assert (connected.base_url or "").startswith("http://127.0.0.1:")  # the key proxy's
    assert "/p/" in (connected.base_url or "")
    assert keyed_model.requests  # the turn went to the keyed server, with the key


@pytest.mark.anyio
async def test_run_refuses_a_missing_key_as_a_config_error(
    bare_home: LettaHome, keyed_model: ScriptedModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SCRIPTED_KEY", raising=False)
    config = Config(
        _env_file=None, data_dir=tmp_path / "data",
        letta={"providers": [{"type": "openai-compatible", "base_url": keyed_model.base_url,
                              "api_key_env": "SCRIPTED_KEY"}]})
    with pytest.raises(ConfigError, match="SCRIPTED_KEY, which is not set"):
        async with Bot.open(config, grace=5):
            pass
