"""What of our process reaches the CLI (and so the agent's tools), and who may drive our
App Server. Real CLI, scripted model."""

from __future__ import annotations

import pytest

from lettabot import sdk
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import shared_slots
from lettabot.sdk._internal.cli import cli_env
from lettabot.sdk.errors import CLIConnectionError
from lettabot.testing.letta_home import LettaHome

pytestmark = pytest.mark.anyio

SECRETS = {
    "LETTABOT_SLACK__BOT_TOKEN": "xoxb-ENV-SECRET-1",
    "LETTABOT_STORE__URL": "postgresql://bot:PGSECRET2@db/bot",
    "LETTA_APP_SERVER_TOKEN": "APPTOKEN-SECRET-3",
    "DISCORD_TOKEN": "DISCORD-SECRET-4",
    "AWS_SECRET_ACCESS_KEY": "AWS-SECRET-5",
}


def test_cli_env_is_minimal(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LETTA_BASE_URL", "http://127.0.0.1:8283")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = cli_env({"OPENAI_API_KEY": "given-on-purpose"})
    assert not set(SECRETS) & set(env)
    assert env["LC_ALL"] == "C.UTF-8" and env["LETTA_BASE_URL"] == "http://127.0.0.1:8283"
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and "PATH" in env and "HOME" in env
    assert env["OPENAI_API_KEY"] == "given-on-purpose"  # what the caller passes, it gets


async def test_printenv_in_a_session_shows_none_of_our_secrets(
    letta_home: LettaHome, transport: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    agent = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent, permission_mode="bypassPermissions") as session:
        result = await session.run_turn("run: printenv")
    assert result.result is not None and "PATH=" in result.result
    assert [v for v in SECRETS.values() if v in result.result] == []


async def test_the_local_app_server_refuses_clients_without_its_token(
    letta_home: LettaHome,
) -> None:
    """Loopback is not a boundary: any local process could otherwise open a conversation
    ``unrestricted``."""
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as session:
        assert (await session.run_turn("hello")).result == "You said: hello"
        [server] = [s.server for s in shared_slots() if s.server is not None]
        assert server.url is not None and server.token
        for token in (None, "guessed"):
            with pytest.raises(CLIConnectionError, match=r"401|token"):
                stranger = Connection(server.url, token)
                await stranger.open(10)
        assert (await session.run_turn("still here")).result == "You said: still here"
