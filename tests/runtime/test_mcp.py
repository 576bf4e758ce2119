"""An agent's MCP servers in the chat, end to end: real MCP servers (started per
conversation, in the tool sandbox), the real CLI, approvals through the broker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config, ConfigError
from lettabot.testing.chat import TestChat
from lettabot.testing.scripted_model import Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker
from tests.sdk.mcp_servers import DEMO, demo_http_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]



def demo(name: str, **fields: Any) -> dict[str, Any]:
    """The test MCP server over stdio; the sandbox lets it read Python and its script."""
    return {"name": name, "command": sys.executable, "args": [str(DEMO), "stdio"],
            "read_paths": [sys.prefix, sys.base_prefix, str(DEMO.parent)], **fields}


@pytest.fixture(scope="module")
async def mcp_bot(make_bot: BotMaker) -> tuple[Bot, TestChat]:
    return await make_bot("mcp", letta={"mcp_servers": [
        demo("tools", trusted=True, env={"GIVEN": "yes"}), demo("plain")]})


async def test_a_trusted_servers_read_only_tool_runs_without_a_click(
    mcp_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = mcp_bot
    scope = chat.scope("C1", "ro")
    scripted_model.on("what is stressed", Reply.tool("mcp__tools__lookup", word="stressed"))
    await chat.push("what is stressed", scope=scope)
    await chat.wait_done(scope)
    assert not [p for p in chat.prompts if p.view.scope == scope]
    assert scripted_model.requests[-1].tool_result == "stressed means desserts"
    status = (await chat.command("status", scope=scope)).text
    assert "MCP server tools (stdio, trusted): connected; tools: add, lookup (read-only)" \
        in status
    assert "MCP server plain (stdio): connected" in status


async def test_every_other_call_asks_and_a_denial_reaches_the_agent(
    mcp_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = mcp_bot
    scope = chat.scope("C1", "ask")
    # read-only, but its server is not trusted: asks
    scripted_model.on("plain lookup", Reply.tool("mcp__plain__lookup", word="live"))
    await chat.push("plain lookup", scope=scope)
    prompt = await chat.wait_prompt(scope)
    assert prompt.view.tool_name == "mcp__plain__lookup"
    await chat.click(prompt.request_id, "deny", user="U1")
    await chat.wait_done(scope)
    assert "Denied by" in scripted_model.requests[-1].tool_result
    # not read-only on the trusted server: asks too; approved, it runs
    scripted_model.on("add them", Reply.tool("mcp__tools__add", a=2, b=3))
    await chat.push("add them", scope=scope)
    prompt = await chat.wait_prompt(scope)
    assert prompt.view.tool_name == "mcp__tools__add"
    await chat.click(prompt.request_id, "approve", user="U1")
    await chat.wait_done(scope, count=2)
    assert scripted_model.requests[-1].tool_result == "sum=5"


async def _approved(chat: TestChat, scope: Any, text: str, count: int) -> str:
    await chat.push(text, scope=scope)
    prompt = await chat.wait_prompt(scope)
    await chat.click(prompt.request_id, "approve", user="U1")
    await chat.wait_done(scope, count=count)
    return prompt.view.tool_name


async def test_a_stdio_server_runs_in_the_sandbox_with_the_scopes_folder(
    mcp_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bot, chat = mcp_bot
    scope = chat.scope("C1", "sandboxed")
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", "xoxb-secret")
    outside = tmp_path / "outside.txt"
    outside.write_text("top secret")
    store = bot.config.data_dir / "lettabot.db"
    scripted_model.on("read outside", Reply.tool("mcp__tools__read_file", path=str(outside)))
    scripted_model.on("read store", Reply.tool("mcp__tools__read_file", path=str(store)))
    scripted_model.on("token?", Reply.tool("mcp__tools__getenv",
                                           name="LETTABOT_SLACK__BOT_TOKEN"))
    scripted_model.on("given?", Reply.tool("mcp__tools__getenv", name="GIVEN"))
    scripted_model.on("note it", Reply.tool("mcp__tools__write_here", name="note.txt",
                                            text="hi"))
    results = []
    for i, text in enumerate(["read outside", "read store", "token?", "given?", "note it"]):
        await _approved(chat, scope, text, i + 1)
        results.append(scripted_model.requests[-1].tool_result)
    assert results[0] == "cannot read: FileNotFoundError"
    assert results[1].startswith("cannot read:")
    assert results[2] == "LETTABOT_SLACK__BOT_TOKEN=<unset>"
    assert results[3] == "GIVEN=yes"
    folder = bot.workspace_of(scope)
    assert (folder / "note.txt").read_text() == "hi"
    # its processes (the sandbox names the scope's folder) end with the conversation
    assert _processes_naming(str(folder))
    await bot.conversations.close_scope(scope.key)
    assert not _processes_naming(str(folder))


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def http_url() -> Iterator[str]:
    """The test MCP server over streamable HTTP, in its own process."""
    with demo_http_server() as url:
        yield url


async def test_an_http_server_asks_like_any_tool(
    make_bot: BotMaker, scripted_model: ScriptedModelServer, http_url: str
) -> None:
    _, chat = await make_bot("mcp-http", letta={"mcp_servers": [
        {"name": "web", "url": http_url, "headers": {"X-Token": "t0ken"}}]})
    scope = chat.scope("C3", "http")
    scripted_model.on("web lookup", Reply.tool("mcp__web__lookup", word="reward"))
    assert await _approved(chat, scope, "web lookup", 1) == "mcp__web__lookup"
    assert scripted_model.requests[-1].tool_result == "reward means drawer"


async def test_each_agent_has_its_own_servers(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    _, chat = await make_bot("mcp-agents", agents=[
        {"name": "default", "default": True, "mcp_servers": []},
        {"name": "ops", "routes": [{"channel": "OPS"}],
         "mcp_servers": [demo("ops", trusted=True)]},
    ])
    scripted_model.on("ops lookup", Reply.tool("mcp__ops__lookup", word="gag"))
    ops = chat.scope("OPS", "t1")
    await chat.push("ops lookup", scope=ops)
    await chat.wait_done(ops)
    assert scripted_model.requests[-1].tool_result == "gag means gag"
    plain = chat.scope("C2", "t1")
    await chat.push("hello there", scope=plain)
    await chat.wait_done(plain)
    assert not any(n.startswith("mcp__") for n in scripted_model.requests[-1].tool_names)


def test_check_config_explains_bad_mcp_servers(tmp_path: Path) -> None:
    from lettabot.runtime.config import load_config

    config = tmp_path / "lettabot.toml"
    config.write_text('[[letta.mcp_servers]]\nname = "docs"\nargs = ["x"]\n'
                      'url = "http://127.0.0.1:1/mcp"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert "letta.mcp_servers[0].url: is set together with args" in str(raised.value)
    ok = Config(_env_file=None, letta={"mcp_servers": [
        {"name": "docs", "url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "x"}}]})
    assert "Authorization = \"x\"" not in ok.describe()


def test_the_operate_docs_example_is_a_valid_config(tmp_path: Path) -> None:
    import re

    from lettabot.runtime.config import load_config

    text = (Path(__file__).parents[2] / "docs" / "operate.md").read_text()
    section = text.split("## MCP servers\n", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    config = tmp_path / "lettabot.toml"
    config.write_text(block.group(1))
    loaded = load_config(config)
    fetch, docs = loaded.letta.mcp_servers
    assert (fetch.type, fetch.trusted, docs.type) == ("stdio", True, "http")


def test_check_config_warns_of_unsandboxed_stdio_servers() -> None:
    config = Config(_env_file=None, sandbox={"mode": "off"},
                    letta={"mcp_servers": [demo("tools")]})
    assert any("MCP servers tools run unsandboxed" in w for w in config.warnings())
    assert not Config(_env_file=None, letta={"mcp_servers": [demo("tools")]}).warnings()


def test_only_a_trusted_servers_read_only_tools_skip_the_click() -> None:
    from pydantic import ValidationError

    from lettabot import sdk
    from lettabot.runtime.approvals import ToolPolicy
    from lettabot.runtime.config import McpServerConfig
    from lettabot.runtime.mcp import McpTrust

    trust = McpTrust([McpServerConfig(name="kb", command="kb", trusted=True),
                      McpServerConfig(name="web", url="http://127.0.0.1:1/mcp")])

    def tool(server: str, name: str, read_only: bool) -> sdk.McpToolInfo:
        return sdk.McpToolInfo(server=server, name=name, tool_name=f"mcp__{server}__{name}",
                               read_only=read_only)

    for server in ("kb", "web"):
        trust.record(sdk.McpServerState(name=server, type="stdio", connected=True, tools=[
            tool(server, "search", True), tool(server, "delete", False)]))
    standard = ToolPolicy("standard", mcp=trust)
    assert standard.auto_allow("mcp__kb__search", {}, None) is not None
    assert standard.auto_allow("mcp__kb__delete", {}, None) is None
    assert standard.auto_allow("mcp__web__search", {}, None) is None  # not trusted
    assert ToolPolicy("strict", mcp=trust).auto_allow("mcp__kb__search", {}, None) is None
    # a server named so that its tools could pass for another's is refused
    for name in ("kb__x", "kb_", "_kb"):
        with pytest.raises(ValidationError):
            McpServerConfig(name=name, command="x")
        with pytest.raises(ValidationError):
            sdk.McpStdioServer(name=name, command="x")
