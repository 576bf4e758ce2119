"""The runtime end to end: the real CLI's App Server, the scripted model, the test chat."""

from __future__ import annotations

import anyio
import pytest

from lettabot.runtime.adapter import ApprovalView, MessageRef
from lettabot.runtime.bot import Bot
from lettabot.runtime.store import ApprovalStatus, Store
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker, make_config

pytestmark = pytest.mark.anyio


async def test_fifty_scopes_at_once_all_answered_none_crossed(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scopes = [chat.scope(f"C{i % 5}", f"fifty-{i}") for i in range(50)]

    async def push(i: int) -> None:
        await chat.push(f"token-{i}-q", scope=scopes[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(scopes)):
            tg.start_soon(push, i)
    for scope in scopes:
        await chat.wait_done(scope, within=120)
    for i, scope in enumerate(scopes):
        assert chat.texts(scope) == [f"You said: token-{i}-q"]
    routes = {r.scope: r.conversation_id for r in await bot.store.list_routes()}
    conversations = [routes[s.key] for s in scopes]
    assert len(set(conversations)) == 50  # a new conversation per scope


async def test_messages_queued_during_a_turn_are_answered_in_order(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = module_bot
    scripted_model.on("slow start", Reply.say("slow reply " * 6, chunk_delay=0.5))
    scope = chat.scope("C1", "queue")
    await chat.push("slow start", scope=scope)
    await chat.wait_text(scope, "slow reply")  # the first turn is running
    for n in (1, 2, 3):
        await chat.push(f"queued {n}", scope=scope)
    status = await chat.command("status", scope=scope)
    assert "queued here: 3" in status.text
    await chat.wait_done(scope, 4)
    assert chat.texts(scope) == [
        ("slow reply " * 6).strip(), "You said: queued 1", "You said: queued 2",
        "You said: queued 3",
    ]


async def test_a_repeated_platform_event_is_answered_once(
    module_bot: tuple[Bot, TestChat],
) -> None:
    _, chat = module_bot
    scope = chat.scope("C2", "dedupe")
    first = await chat.push("only once", scope=scope, event_id="Ev-1")
    await chat.redeliver(first)
    await chat.push("afterwards", scope=scope, event_id="Ev-2")
    await chat.wait_done(scope, 2)
    await chat.redeliver(first)  # a late retry, after the turn
    await chat.push("last", scope=scope, event_id="Ev-3")
    await chat.wait_done(scope, 3)
    assert chat.texts(scope) == ["You said: only once", "You said: afterwards", "You said: last"]


async def test_channel_messages_need_a_mention_until_the_bot_is_in_the_thread(
    module_bot: tuple[Bot, TestChat],
) -> None:
    _, chat = module_bot
    scope = chat.scope("C3", "mention")
    await chat.push("not for you", scope=scope, mentioned=False)
    await chat.push("from a bot", scope=scope, is_bot=True)
    await chat.push("hey bot", scope=scope, mentioned=True)
    await chat.wait_done(scope, 1)
    await chat.push("follow-up without mention", scope=scope, mentioned=False)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope) == ["You said: hey bot", "You said: follow-up without mention"]
    dm = chat.scope("D1", dm=True)
    await chat.push("in a dm", scope=dm, mentioned=False)
    await chat.wait_done(dm)
    assert chat.texts(dm) == ["You said: in a dm"]


async def test_approve_runs_the_tool_and_is_audited(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C4", "approve")
    # relative: the conversation works in its scope's folder (and the tool line stays short)
    target = bot.workspace_of(scope) / "approved.txt"
    await chat.push("run: echo yes > approved.txt", scope=scope, user="U1", user_name="Ada")
    prompt = await chat.wait_prompt(scope)
    assert prompt.view.tool_name == "Bash"
    assert prompt.view.input_summary == "echo yes > approved.txt"
    assert prompt.view.requested_by == "U1"
    assert prompt.view.deciders == ("U1",)  # self-approval: the asker, shown on the prompt
    outcome = await chat.click(prompt.request_id, "approve", user="U1", user_name="Ada")
    assert outcome.status == "decided" and outcome.final_text == "Approved by Ada"
    await chat.wait_done(scope)
    assert target.read_text() == "yes\n"
    assert prompt.resolved == "Approved by Ada"
    assert "Tool result" in chat.transcript(scope)
    assert "🔧 Bash: `echo yes > approved.txt`" in chat.transcript(scope)  # the call, compactly
    audit = await bot.store.get_approval(prompt.request_id)
    assert audit is not None and audit.status is ApprovalStatus.APPROVED
    assert audit.decided_by == "test:U1" and audit.tool_name == "Bash"
    again = await chat.click(prompt.request_id, "approve", user="U1")
    assert again.status == "already_decided"


async def test_deny_keeps_the_tool_from_running(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C4", "deny")
    target = bot.workspace_of(scope) / "denied.txt"
    await chat.push(f"run: echo no > {target}", scope=scope, user="U1", user_name="Ada")
    prompt = await chat.wait_prompt(scope)
    outcome = await chat.click(prompt.request_id, "deny", user="U1", user_name="Ada")
    assert outcome.status == "decided"
    await chat.wait_done(scope)
    assert not target.exists()
    assert prompt.resolved == "Denied by Ada"


async def test_only_the_starter_may_decide_and_a_double_click_decides_once(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C4", "who")
    target = bot.workspace_of(scope) / "who.txt"
    await chat.push(f"run: echo who > {target}", scope=scope, user="U1")
    prompt = await chat.wait_prompt(scope)
    stranger = await chat.click(prompt.request_id, "approve", user="U2")
    assert stranger.status == "not_authorized"
    assert "started this turn" in stranger.message
    assert prompt.resolved is None  # still open
    outcomes = []

    async def click(decision: str) -> None:
        outcomes.append(await chat.click(prompt.request_id, decision, user="U1"))  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        tg.start_soon(click, "approve")
        tg.start_soon(click, "deny")
    assert sorted(o.status for o in outcomes) == ["already_decided", "decided"]
    await chat.wait_done(scope)
    decided = next(o for o in outcomes if o.status == "decided")
    assert target.exists() == (decided.final_text == "Approved by U1")
    assert len(prompt.resolutions) == 1


async def test_always_allow_skips_the_prompt_next_time_in_that_scope_only(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C5", "always")
    workspace = bot.workspace_of(scope)
    one, two = workspace / "always1.txt", workspace / "always2.txt"
    for n, path in enumerate((one, two, workspace / "always3.txt"), 1):
        path.write_text(f"always file {n}\n")
    # a curated read-only command (#23: `touch` writes, so it would get an exact rule)
    await chat.push(f"run: cat {one}", scope=scope)
    prompt = await chat.wait_prompt(scope)
    outcome = await chat.click(prompt.request_id, "always", user="U1")
    assert "from now on Bash: `cat …` commands" in (outcome.final_text or "")
    await chat.wait_done(scope)
    await chat.push(f"run: cat {two}", scope=scope)
    await chat.wait_done(scope, 2)
    assert "always file 2" in chat.transcript(scope)
    assert [p for p in chat.prompts if p.view.scope == scope] == [prompt]
    [rule] = await bot.store.list_allow_rules(scope.key)
    assert (rule.tool_name, rule.kind, rule.pattern) == ("Bash", "prefix", "cat")
    other = chat.scope("C5", "elsewhere")
    await chat.push(f"run: cat {bot.workspace_of(other) / 'always3.txt'}", scope=other)
    elsewhere = await chat.wait_prompt(other)  # the rule is per scope
    await chat.click(elsewhere.request_id, "deny", user="U1")
    await chat.wait_done(other)


async def test_unknown_request_ids_get_a_clear_answer(module_bot: tuple[Bot, TestChat]) -> None:
    _, chat = module_bot
    outcome = await chat.click("ap-000000000000000000000000", "approve")
    assert outcome.status == "unknown"
    assert "unknown" in outcome.message


async def test_no_decision_in_time_denies_and_says_so(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("hurry", approvals={"timeout_seconds": 1.5})
    scope = chat.scope("C6", "timeout")
    target = bot.workspace_of(scope) / "late.txt"
    await chat.push(f"run: echo late > {target}", scope=scope)
    prompt = await chat.wait_prompt(scope)
    assert await chat.wait_resolved(prompt) == "Timed out"
    await chat.wait_done(scope)
    assert not target.exists()
    late = await chat.click(prompt.request_id, "approve")
    assert late.status == "already_decided"
    assert "timed out" in late.message


async def test_tools_outside_allowed_tools_never_run_and_only_approvers_decide(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot(
        "locked", letta={"allowed_tools": ["Bash"]},
        access={"allowed_users": ["alice"], "approvers": ["boss"]},
    )
    scope = chat.scope("C7", "locked")
    blocked = bot.workspace_of(scope) / "blocked.txt"
    await chat.push(f"write {blocked}: never", scope=scope, user="alice")
    await chat.wait_done(scope)
    assert not blocked.exists()
    assert not [p for p in chat.prompts if p.view.scope == scope]  # nobody was asked
    assert any("Write was blocked" in n.text for n in chat.notes)
    audit = [a for a in await bot.store.list_approvals(scope.key) if a.tool_name == "Write"]
    assert audit and audit[0].status is ApprovalStatus.DENIED and audit[0].decided_by == "policy"

    ran = bot.workspace_of(scope) / "bash-ok.txt"
    await chat.push(f"run: echo ok > {ran}", scope=scope, user="alice")
    prompt = await chat.wait_prompt(scope)
    refused = await chat.click(prompt.request_id, "approve", user="alice")
    assert refused.status == "not_authorized" and "approvers" in refused.message
    assert (await chat.click(prompt.request_id, "approve", user="boss")).status == "decided"
    await chat.wait_done(scope, 2)
    assert ran.read_text() == "ok\n"

    refused_command = await chat.command("status", scope=scope, user="mallory")
    assert "not allowed" in refused_command.text
    await chat.push("let me in", scope=scope, user="mallory")
    await chat.push("still alice", scope=scope, user="alice")
    await chat.wait_done(scope, 3)
    assert chat.texts(scope)[-1] == "You said: still alice"
    assert not any("let me in" in t for t in chat.texts(scope))
    assert any(n.user_id == "mallory" and "not allowed" in n.text for n in chat.notes)


async def test_commands_status_reset_stop_memory(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer,
    module_home: LettaHome,
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C8", "commands")
    await chat.push("first words", scope=scope)
    await chat.wait_done(scope)
    route = await bot.store.get_route(scope.key)
    assert route is not None
    status = await chat.command("status", scope=scope)
    assert route.conversation_id in status.text and route.agent_id in status.text
    assert "Pending approvals here: 0" in status.text and "Server 0: up" in status.text

    reset = await chat.command("reset", scope=scope)
    assert "new conversation" in reset.text
    await chat.push("what was my first message?", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "Your first message was: what was my first message?"
    new_route = await bot.store.get_route(scope.key)
    assert new_route is not None and new_route.conversation_id != route.conversation_id
    assert new_route.agent_id == route.agent_id  # same agent, memory kept

    scripted_model.on("talk slowly", Reply.say("word " * 200, chunk_delay=0.1))
    await chat.push("talk slowly", scope=scope)
    await chat.wait_text(scope, "word word")
    other = await chat.command("stop", scope=scope, user="U2")  # not the asker, no approver
    assert other.text.startswith("Only the person who asked or an approver")
    stop = await chat.command("stop", scope=scope)
    assert stop.text == "Stopping the running turn."
    await chat.wait_done(scope, 3)
    assert "(stopped)" in chat.texts(scope)[-1]
    await chat.push("after stop", scope=scope)
    await chat.wait_done(scope, 4)
    assert chat.texts(scope)[-1] == "You said: after stop"

    memory = await chat.command("memory", scope=scope)
    files = sorted(p.name for p in module_home.memory_dir(route.agent_id).glob("*.md"))
    assert files and all(f"`{name}`" in memory.text for name in files)
    assert "reset" in (await chat.command("help", scope=scope)).text


async def test_a_write_prompt_shows_the_path_and_a_diff_preview(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C10", "write")
    target = bot.workspace_of(scope) / "notes.txt"
    await chat.push(f"write {target}: hello from the diff", scope=scope)
    prompt = await chat.wait_prompt(scope)
    assert prompt.view.tool_name == "Write"
    assert prompt.view.input_summary == str(target)
    assert prompt.view.diff is not None and "+hello from the diff" in prompt.view.diff
    await chat.click(prompt.request_id, "approve", user="U1")
    await chat.wait_done(scope)
    assert target.read_text() == "hello from the diff"


async def test_an_idle_conversation_is_released_and_resumed_on_the_next_message(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C11", "idle")
    await chat.push("remember this opener", scope=scope)
    await chat.wait_done(scope)
    await chat.wait_for(lambda: not bot.scheduler.lanes[scope.key].busy)
    open_before = bot.conversations.count()
    assert await bot.scheduler.release_idle(older_than=0) >= 1
    assert bot.conversations.count() < open_before
    assert scope.key not in bot.scheduler.lanes
    await chat.push("what was my first message?", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "Your first message was: remember this opener"


async def test_a_route_to_a_vanished_conversation_starts_a_new_one_and_says_so(
    module_bot: tuple[Bot, TestChat],
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C14", "vanished")
    agent = await bot.router.agent_id()
    await bot.store.set_route(scope.key, agent, "local-conv-999999")
    await chat.push("hello again", scope=scope)
    await chat.wait_done(scope)
    assert chat.texts(scope) == ["You said: hello again"]
    assert any(n.scope == scope and "could not be found" in n.text for n in chat.notes)
    route = await bot.store.get_route(scope.key)
    assert route is not None and route.conversation_id != "local-conv-999999"


async def test_a_failed_turn_is_a_short_message_and_the_next_turn_works(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = module_bot
    scripted_model.on("explode", Reply.fail(400, "scripted kaboom"), times=1)
    scope = chat.scope("C15", "fail")
    await chat.push("explode", scope=scope)
    await chat.wait_done(scope)
    [reply] = chat.texts(scope)
    assert reply.startswith("⚠️ Sorry — this turn failed:") and len(reply) < 300
    await chat.push("fine now", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "You said: fine now"


async def test_the_agent_is_told_who_is_speaking(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = module_bot
    scope = chat.scope("C9", "speaker-note")
    await chat.push("hello from ada", scope=scope, user="U-ada", user_name="Ada")
    await chat.wait_done(scope)
    assert chat.texts(scope) == ["You said: hello from ada"]
    request = next(r for r in scripted_model.requests if r.user_text == "hello from ada")
    last_user = [m for m in request.messages if m["role"] == "user"][-1]
    sent = "\n".join(p.get("text", "") for p in last_user["content"] if isinstance(p, dict))
    assert "This message is from Ada (id U-ada), in a thread on test." in sent


async def test_reset_drops_what_was_queued_behind_an_approval_and_says_so(
    module_bot: tuple[Bot, TestChat],
) -> None:
    """Queued messages used to start in the NEW conversation after a reset, waiting on a
    prompt nobody saw; the reset also waited out a 10 s timeout."""
    bot, chat = module_bot
    scope = chat.scope("C7", "reset-queued")
    queued = bot.workspace_of(scope) / "queued.txt"
    await chat.push(f"run: touch {queued}", scope=scope)
    prompt = await chat.wait_prompt(scope)
    await chat.push("queued one", scope=scope)
    await chat.push("queued two", scope=scope)
    with anyio.fail_after(8):  # well under the old 10 s wait
        result = await chat.command("reset", scope=scope)
    assert "2 messages still waiting for an answer were dropped" in result.text
    assert prompt.resolved is not None and "reset" in prompt.resolved
    assert await bot.store.list_pending(scope.key) == []
    await chat.push("fresh start", scope=scope)
    await chat.wait_text(scope, "You said: fresh start")
    assert "queued one" not in chat.transcript(scope)
    assert not queued.exists()


async def test_a_message_sent_while_a_reset_runs_goes_to_the_new_conversation(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    """Reset interrupts the running turn, then forgets the conversation. A message typed in
    between must not be answered in the old conversation (the worker used to take it as
    soon as the interrupted turn ended, on the session about to be closed)."""
    bot, chat = module_bot
    scope = chat.scope("C7", "reset-race")
    scripted_model.on("slow old story", Reply.say("old " * 200, chunk_delay=0.05), times=1)
    await chat.push("slow old story", scope=scope)
    await chat.wait_text(scope, "old old")
    old = await bot.store.get_route(scope.key)
    assert old is not None
    async with anyio.create_task_group() as tg:
        async def reset() -> None:
            await chat.command("reset", scope=scope)

        tg.start_soon(reset)
        await anyio.sleep(0.05)  # the reset is under way
        await chat.push("what was my first message?", scope=scope)
    await chat.wait_done(scope, 2)
    assert chat.texts(scope)[-1] == "Your first message was: what was my first message?"
    new = await bot.store.get_route(scope.key)
    assert new is not None and new.conversation_id != old.conversation_id


async def test_an_approval_shows_invisible_characters_so_a_command_cannot_be_disguised(
    module_bot: tuple[Bot, TestChat],
) -> None:
    """A right-to-left override makes ``echo safe #‮txt.exe`` read differently than it runs;
    zero-width spaces hide text. The prompt (every adapter renders ``input_summary``) and
    the chat's tool line show them as ⟦U+…⟧ with a warning."""
    bot, chat = module_bot
    scope = chat.scope("C-bidi", "bidi")
    target = bot.workspace_of(scope) / "bidi.txt"
    command = f"echo ok > {target} #\u202etxt.exe\u200b"
    await chat.push(f"run: {command}", scope=scope, user="U1")
    prompt = await chat.wait_prompt(scope)
    summary = prompt.view.input_summary
    assert summary.startswith("⚠️ invisible characters")
    assert "⟦U+202E⟧" in summary and "⟦U+200B⟧" in summary
    assert "\u202e" not in summary and "\u200b" not in summary
    await chat.click(prompt.request_id, "deny", user="U1")
    await chat.wait_done(scope)
    assert "\u202e" not in chat.transcript(scope)
    assert not target.exists()



class _SlowPromptChat(TestChat):
    """The prompt is on screen (clickable) a while before the platform call returns (a
    platform that adds reactions or buttons after posting)."""

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        ref = await super().present_approval(view)
        await anyio.sleep(1.0)
        return ref


async def test_a_click_before_the_prompt_call_returned_still_updates_the_prompt(
    module_home: LettaHome, module_store: Store,
) -> None:
    config = make_config(module_home, module_home.path / "data")
    async with Bot.open(config, store=module_store, grace=5) as bot:
        chat = _SlowPromptChat(bot, name="slowprompt")
        bot.add_adapter(chat)
        scope = chat.scope("C9", "early-click")
        await chat.push("run: echo early > early.txt", scope=scope, user="U1")
        prompt = await chat.wait_prompt(scope)
        outcome = await chat.click(prompt.request_id, "approve", user="U1", user_name="Ada")
        assert outcome.status == "decided"
        await chat.wait_done(scope)
        assert prompt.resolved == "Approved by Ada"  # not left showing its buttons
