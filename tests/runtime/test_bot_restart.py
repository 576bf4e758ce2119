"""The runtime across restarts and failures: routes survive, stale prompts expire, a
dead App Server is reported in chat and the next message works."""

from __future__ import annotations

import os
import signal

import pytest

from lettabot import sdk
from lettabot.runtime.bot import Bot
from lettabot.runtime.router import AgentMissingError
from lettabot.runtime.store import open_store
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker, make_config

pytestmark = pytest.mark.anyio


async def test_routes_survive_a_restart_and_stale_prompts_are_expired(
    module_home: LettaHome,
) -> None:
    config = make_config(module_home, module_home.path / "restart-data")
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        scope = chat.scope("C1", "t-restart")
        await chat.push("first words", scope=scope)
        await chat.wait_done(scope)
        before = await bot.store.get_route(scope.key)
    assert before is not None
    # What a crash would leave behind: a prompt still waiting for a click.
    async with open_store(config.store_url) as store:
        await store.create_pending(
            "ap-stale", scope=scope.key, conversation_id=before.conversation_id,
            tool_name="Bash", tool_input={"command": "touch x"}, input_summary="touch x",
            requested_by="U1")
        await store.set_approval_message("ap-stale", "a-old")

    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        prompt = await chat.wait_for(
            lambda: next((p for p in chat.prompts if p.request_id == "ap-stale"), None))
        assert prompt.resolved == "Expired: lettabot restarted"
        late = await chat.click("ap-stale", "approve", user="U1")
        assert late.status == "unknown" and "expired" in late.message
        await chat.push("what was my first message?", scope=scope)
        await chat.wait_done(scope)
        assert chat.texts(scope) == ["Your first message was: first words"]
        after = await bot.store.get_route(scope.key)
    assert after is not None
    assert (after.agent_id, after.conversation_id) == (before.agent_id, before.conversation_id)


async def test_a_configured_agent_that_does_not_exist_is_an_error(
    module_home: LettaHome,
) -> None:
    missing = "agent-local-00000000-0000-0000-0000-000000000000"
    config = make_config(module_home, module_home.path / "missing-data",
                         letta={"agent_id": missing})
    with pytest.raises(AgentMissingError) as caught:
        async with Bot.open(config, grace=1):
            pass
    assert missing in str(caught.value) and "letta.agent_id" in str(caught.value)


async def test_a_server_killed_mid_turn_is_reported_and_the_next_message_works(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    bot, chat = await make_bot("crash")
    scope = chat.scope("C9", "crash")
    await chat.push("warm up", scope=scope)
    await chat.wait_done(scope)
    scripted_model.on("slow story", Reply.say("once upon a time " * 20, chunk_delay=0.3))
    await chat.push("slow story", scope=scope)
    await chat.wait_text(scope, "once upon")
    [server] = bot.health()["servers"]
    os.kill(server["pid"], signal.SIGKILL)
    await chat.wait_done(scope, 2)
    assert "server stopped" in chat.texts(scope)[-1]
    await chat.push("back again", scope=scope)
    await chat.wait_done(scope, 3)
    assert chat.texts(scope)[-1] == "You said: back again"
    [restarted] = bot.health()["servers"]
    assert restarted["alive"] and restarted["pid"] != server["pid"]


async def test_two_app_servers_share_the_conversations_by_a_stable_hash(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("pair", servers={"count": 2})
    scopes = [chat.scope("C12", f"pair-{i}") for i in range(6)]
    for i, scope in enumerate(scopes):
        await chat.push(f"opener {i}", scope=scope)
    for scope in scopes:
        await chat.wait_done(scope)
        await chat.wait_for(lambda scope=scope: not bot.scheduler.lanes[scope.key].busy)
    servers = bot.health()["servers"]
    assert [s["index"] for s in servers] == [0, 1]
    assert all(s["alive"] and s["pid"] for s in servers)
    assert servers[0]["pid"] != servers[1]["pid"]
    await bot.scheduler.release_idle(older_than=0)
    for scope in scopes:
        await chat.push("what was my first message?", scope=scope)
    for i, scope in enumerate(scopes):
        await chat.wait_done(scope, 2)
        assert chat.texts(scope)[-1] == f"Your first message was: opener {i}"
        route = await bot.store.get_route(scope.key)
        assert route is not None
        assert bot.conversations.open_now[scope.key].server == bot.client.server_for(
            route.conversation_id)


async def test_a_prompt_open_when_the_server_dies_is_cancelled_and_the_tool_never_runs(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("crash-prompt")
    scope = chat.scope("C13", "crash-prompt")
    target = bot.workspace_of(scope) / "never-after-crash.txt"
    await chat.push(f"run: echo x > {target}", scope=scope)
    prompt = await chat.wait_prompt(scope)
    [server] = [s for s in bot.health()["servers"] if s.get("pid")]
    os.kill(server["pid"], signal.SIGKILL)
    assert await chat.wait_resolved(prompt) == "Cancelled: the agent's server stopped"
    await chat.wait_done(scope)
    assert "server stopped" in chat.texts(scope)[-1]
    late = await chat.click(prompt.request_id, "approve", user="U1")
    assert late.status == "unknown"
    await chat.push("are you back?", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "You said: are you back?"
    assert not target.exists()


async def test_shutdown_ends_a_turn_that_waits_only_for_a_click(
    module_home: LettaHome,
) -> None:
    """SIGTERM with a prompt open must not sit out the whole grace period (Docker stops
    after 10 s): the prompt is cancelled ("lettabot is restarting") and the drain ends."""
    import anyio

    config = make_config(module_home, module_home.path / "click-data")
    with anyio.fail_after(25):  # far below the 120 s grace
        async with Bot.open(config, grace=120) as bot:
            chat = TestChat(bot)
            bot.add_adapter(chat)
            scope = chat.scope("C1", "t-click")
            never = bot.workspace_of(scope) / "never.txt"
            await chat.push(f"run: touch {never}", scope=scope)
            prompt = await chat.wait_prompt(scope)
    assert prompt.resolved == "Cancelled: lettabot is restarting"
    assert not never.exists()


async def test_a_hung_model_ends_the_turn_and_the_next_message_is_answered(
    make_bot: BotMaker, scripted_model: ScriptedModelServer,
) -> None:
    """No deadline used to exist: a hanging model request held its conversation (and a turn
    slot) forever. Now the turn ends after turns.stall_seconds with a note, and the scope
    moves to a new conversation, since the server still has the old one busy."""
    bot, chat = await make_bot("stall", turns={"stall_seconds": 3})
    scripted_model.on("hang forever", Reply.hanging(), times=1)
    scope = chat.scope("C9", "t-stall")
    await chat.push("hang forever", scope=scope)
    await chat.wait_done(scope, within=60)
    assert "made no progress for 3 s" in chat.transcript(scope)
    stuck = [a.conversation_id for a in await bot.store.list_routes() if a.scope == scope.key]
    await chat.push("are you back?", scope=scope)
    await chat.wait_done(scope, 2, within=60)
    assert chat.texts(scope)[-1] == "You said: are you back?"
    after = await bot.store.get_route(scope.key)
    assert after is not None and after.conversation_id not in stuck  # moved off it


async def test_a_prompt_waiting_for_a_click_is_not_a_stall(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("patient", turns={"stall_seconds": 2})
    scope = chat.scope("C9", "t-patient")
    target = bot.workspace_of(scope) / "patient.txt"
    await chat.push(f"run: touch {target}", scope=scope)
    prompt = await chat.wait_prompt(scope)
    import anyio

    await anyio.sleep(5)  # longer than stall_seconds: the prompt pauses the clock
    assert prompt.resolved is None
    await chat.click(prompt.request_id, "approve")
    await chat.wait_done(scope)
    assert target.exists() and "no progress" not in chat.transcript(scope)


async def test_a_stop_whose_abort_fails_leaves_no_tail_for_the_next_message(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    """If the interrupt cannot be sent the turn is cancelled; its session still holds that
    unfinished turn, so it is closed: the next message must not receive the old tail."""
    bot, chat = await make_bot("abort-fails")
    scope = chat.scope("C21", "abort-fails")
    scripted_model.on("tell a long tale", Reply.say("tale " * 150, chunk_delay=0.1), times=1)
    await chat.push("tell a long tale", scope=scope)
    await chat.wait_text(scope, "tale tale")
    conversation = bot.conversations.open_now[scope.key]

    async def broken_abort() -> None:  # the fault: the interrupt never reaches the CLI
        raise sdk.CLIConnectionError("injected: abort could not be sent")

    conversation.session.abort = broken_abort  # type: ignore[method-assign]
    await chat.command("stop", scope=scope)
    await chat.wait_done(scope)
    await chat.push("fresh question", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "You said: fresh question"
    assert "(interrupted)" in chat.texts(scope)[0]


async def test_a_thread_reopened_after_idle_release_and_restart_sees_memory_taught_since(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    """Thread B talks first; thread A then teaches the agent; B's session is released, the
    bot restarts, and B (its own, older conversation) answers from the agent's memory."""
    bot, chat = await make_bot("memory-a")
    b = chat.scope("C22", "memory-b")
    a = chat.scope("C22", "memory-a")
    await chat.push("hello from B", scope=b)
    await chat.wait_done(b)
    await chat.push("remember: the secret word is papaya", scope=a)
    await chat.wait_done(a)
    assert chat.texts(a)[-1].endswith("Tool result: saved")  # a memory save needs no click
    route = await bot.store.get_route(b.key)
    assert route is not None
    assert await bot.scheduler.release_idle(older_than=0) >= 1
    _, chat2 = await make_bot("memory-a")  # "restarted": a new bot on the same store
    await chat2.push("What is the secret word?", scope=b)
    await chat2.wait_done(b)
    assert chat2.texts(b)[-1] == "The secret word is papaya."
    again = await bot.store.get_route(b.key)
    assert again is not None and again.conversation_id == route.conversation_id
