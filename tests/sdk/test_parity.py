"""What letta-agent-sdk users have, on CLI 0.34.12: forking and archiving conversations,
skill sources, pending approvals, saved permissions, removing a queued message."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.anyio


async def test_a_fork_holds_the_history_so_far_and_goes_its_own_way(
    letta_home: LettaHome, transport: str,
) -> None:
    agent = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent) as session:
        await session.run_turn("the opener")
        forked = await session.fork()
        assert forked != session.conversation_id
        await session.run_turn("only in the original")
    async with sdk.resume_session(forked) as copy:
        assert (await copy.run_turn("what was my first message?")).result == (
            "Your first message was: the opener")
        texts = [m for m in await copy.list_messages(limit=20)
                 if m.get("message_type") == "user_message"]
        assert not any("only in the original" in str(m.get("content")) for m in texts)
    # an agent's default conversation forks too, by the id the SDK hands out for it
    async with sdk.resume_session(agent) as default:
        await default.run_turn("default opener")
        assert default.conversation_id == agent
    fork_of_default = await sdk.fork_conversation(agent)
    async with sdk.resume_session(fork_of_default) as copy:
        assert (await copy.run_turn("what was my first message?")).result == (
            "Your first message was: default opener")


async def test_archived_conversations_leave_the_list_and_stay_resumable(
    letta_home: LettaHome, transport: str,
) -> None:
    agent = await sdk.create_agent(model=letta_home.model)
    ids = []
    for text in ("keep me", "archive me"):
        async with sdk.create_session(agent) as session:
            await session.run_turn(text)
            ids.append(session.conversation_id)
    keep, gone = ids
    async with sdk.resume_session(gone) as session:
        info = await session.archive()
    assert info.archived
    # (creating the agent may have made a conversation of its own)
    listed = {c.id for c in await sdk.list_conversations(agent)}
    assert keep in listed and gone not in listed
    everything = {c.id: c.archived for c in await sdk.list_conversations(
        agent, include_archived=True)}
    assert everything[keep] is False and everything[gone] is True
    async with sdk.resume_session(gone) as session:
        assert (await session.run_turn("what was my first message?")).result == (
            "Your first message was: archive me")
    await sdk.archive_conversation(gone, archived=False)
    assert {keep, gone} <= {c.id for c in await sdk.list_conversations(agent)}


@pytest.mark.parametrize(("sources", "present"), [([], False), (["bundled"], True)])
async def test_skill_sources_choose_the_skills_the_agent_is_offered(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, transport: str,
    sources: list[str], present: bool,
) -> None:
    async with sdk.create_session(model=letta_home.model, persona="p",
                                  skill_sources=sources) as session:
        await session.run_turn("hello")
    system = scripted_model.requests[-1].system
    assert ("<available_skills>" in system) is present
    assert ("`letta-guide`" in system) is present


async def test_pending_approvals_list_what_waits_for_an_answer(
    letta_home: LettaHome, transport: str,
) -> None:
    asked = anyio.Event()
    answer = anyio.Event()

    async def ask(name: str, tool_input: dict[str, Any],
                  request: sdk.CanUseToolRequest) -> sdk.PermissionResult:
        asked.set()
        await answer.wait()
        return sdk.PermissionAllow()

    async with sdk.create_session(model=letta_home.model, persona="p", can_use_tool=ask,
                                  permission_mode="strict") as session:
        assert session.pending_approvals() == []
        await session.send("run: echo waited")
        async with anyio.create_task_group() as tg:
            results: list[sdk.ResultMessage] = []

            async def consume() -> None:
                async for msg in session.stream():
                    if msg.type == "result":
                        results.append(msg)

            tg.start_soon(consume)
            with anyio.fail_after(60):
                await asked.wait()
            [pending] = session.pending_approvals()
            assert pending.tool_name == "Bash" and pending.tool_input["command"] == "echo waited"
            assert pending.tool_call_id
            answer.set()
        assert session.pending_approvals() == []
        assert "waited" in (results[0].result or "")


async def test_an_allow_can_save_the_suggested_rule_on_the_app_server(
    letta_home: LettaHome,
) -> None:
    seen: list[sdk.CanUseToolRequest] = []

    async def ask(name: str, tool_input: dict[str, Any],
                  request: sdk.CanUseToolRequest) -> sdk.PermissionResult:
        seen.append(request)
        return sdk.PermissionAllow(updated_permissions=request.permission_suggestions)

    async with sdk.create_session(model=letta_home.model, persona="p", can_use_tool=ask,
                                  transport="app_server") as session:
        first = await session.run_turn("run: echo saved-rule > out.txt")
        second = await session.run_turn("run: echo saved-rule > out.txt")
    assert first.success and second.success
    [request] = seen  # the second call ran under the saved rule, without asking
    assert [s["id"] for s in request.permission_suggestions] == ["save-default"]
    assert request.blocked_path is None


async def test_a_queued_message_can_be_taken_back(
    letta_home: LettaHome, scripted_model: ScriptedModelServer,
) -> None:
    scripted_model.on("slow first", Reply.say("first done", delay=3.0))
    async with sdk.create_session(model=letta_home.model, persona="p",
                                  transport="app_server") as session:
        await session.run_turn("warm up")
        await session.send("slow first")
        take_back = await session.send("never run this")
        await session.send("third one")
        with anyio.fail_after(10):
            while not await session.remove_queued(take_back):  # noqa: ASYNC110 (once queued)
                await anyio.sleep(0.05)
        results = []
        with anyio.fail_after(60):
            while len([r for r in results if r.success]) < 2:
                async for msg in session.stream():
                    if msg.type == "result":
                        results.append(msg)
    answered = [r.result for r in results if r.success]
    assert answered[0] == "first done" and "third one" in (answered[-1] or "")
    assert not any("never run this" in r.user_text for r in scripted_model.requests)
    assert not await _removable_after_the_fact(letta_home)


async def _removable_after_the_fact(letta_home: LettaHome) -> bool:
    async with sdk.create_session(model=letta_home.model, persona="p",
                                  transport="app_server") as session:
        cmid = await session.send("done soon")
        async for _ in session.stream():
            pass
        return await session.remove_queued(cmid)


async def test_the_subprocess_transport_says_it_cannot_take_a_message_back(
    letta_home: LettaHome,
) -> None:
    async with sdk.create_session(model=letta_home.model, persona="p",
                                  transport="subprocess") as session:
        cmid = await session.send("hello")
        with pytest.raises(NotImplementedError, match="app_server"):
            await session.remove_queued(cmid)
        async for _ in session.stream():
            pass
