"""Approval prompts: buttons with stable ids, who may click, outcome shown, restart-safe."""

from __future__ import annotations

from typing import Any

import pytest
from discord_helpers import RecordingBot, World, running

from lettabot.runtime.adapter import ApprovalView, DecisionOutcome, Scope

pytestmark = pytest.mark.anyio

RID = "perm-call_7f3a"


def _view(world: World, **extra: Any) -> ApprovalView:
    scope = Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"])
    fields: dict[str, Any] = {
        "request_id": RID,
        "scope": scope,
        "tool_name": "Bash",
        "input_summary": "rm -rf build/ && echo ```done```",
        "diff": "--- a/x\n+++ b/x\n-old\n+new",
        "requested_by": world.ada["id"],
    }
    return ApprovalView(**{**fields, **extra})


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in message["components"] for b in row["components"]]


def _only_ada(rid: str, uid: str, ada: str) -> DecisionOutcome:
    if uid != ada:
        return DecisionOutcome(status="not_authorized", message="Only ada can decide this.")
    return DecisionOutcome(status="decided", message="Denied by ada", final_text="Denied by ada")


async def test_prompt_clicks_and_outcome(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    ada = world.ada["id"]
    bot.outcome = lambda rid, uid: _only_ada(rid, uid, ada)
    async with running(fake, bot) as adapter:
        ref = await adapter.present_approval(_view(world))
        prompt = fake.messages[int(ref.id)]
        content = prompt["content"]
        assert f"<@{ada}>" in content and "`Bash`" in content
        assert "```\nrm -rf build/ && echo `\u200b``done`\u200b``\n```" in content
        assert "```diff\n--- a/x\n+++ b/x\n-old\n+new\n```" in content
        assert [(b["label"], b["custom_id"]) for b in _buttons(prompt)] == [
            ("Approve", f"lettabot:approve:{RID}"),
            ("Deny", f"lettabot:deny:{RID}"),
            ("Always allow", f"lettabot:always:{RID}"),
        ]
        [post] = fake.rest("POST", r"/messages$")
        assert post.body["allowed_mentions"]["users"] == [int(ada)]  # only the requester is pinged

        # someone else clicks: an ephemeral refusal, the prompt unchanged
        click = await fake.click(prompt, "Approve", world.bob)
        deferred, refusal = await fake.wait_for(lambda: fake.responses_to(click)[1:]
                                                and fake.responses_to(click))
        assert deferred["type"] == 6  # acknowledged before anything else
        assert refusal["type"] == "followup" and refusal["data"]["flags"] & 64
        assert refusal["data"]["content"] == "Only ada can decide this."
        assert prompt["content"] == content
        assert not any(b.get("disabled") for b in _buttons(prompt))

        click = await fake.click(prompt, "Deny", world.ada)
        [ack] = await fake.wait_for(lambda: fake.responses_to(click))
        assert ack["type"] == 6  # acknowledged first; the prompt is then edited
        await fake.wait_for(lambda: prompt["content"] == content + "\n**Denied by ada**")
        assert all(b["disabled"] for b in _buttons(prompt))
        assert bot.decisions == [
            (RID, "approve", world.bob["id"], "bob"),
            (RID, "deny", ada, "ada"),
        ]


async def test_timeout_disables_the_buttons(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    view = _view(world, allow_always=False, diff=None)
    async with running(fake, bot) as adapter:
        ref = await adapter.present_approval(view)
        prompt = fake.messages[int(ref.id)]
        assert [b["label"] for b in _buttons(prompt)] == ["Approve", "Deny"]
        await adapter.resolve_approval(ref, view, "Timed out")
        assert prompt["content"].endswith("\n**Timed out**")
        assert "`Bash`" in prompt["content"]
        assert [(b["label"], b["disabled"]) for b in _buttons(prompt)] == [
            ("Approve", True),
            ("Deny", True),
        ]


async def test_click_after_restart_says_expired(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    async with running(fake, bot) as adapter:
        ref = await adapter.present_approval(_view(world))
    prompt = fake.messages[int(ref.id)]

    restarted = RecordingBot(
        outcome=lambda rid, uid: DecisionOutcome(status="unknown", message="unknown request")
    )
    async with running(fake, restarted):  # a new process: it never showed this prompt
        click = await fake.click(prompt, "Approve", world.ada)
        _, answer = await fake.wait_for(lambda: fake.responses_to(click)[1:]
                                        and fake.responses_to(click))
        assert answer["type"] == "followup" and answer["data"]["flags"] & 64
        assert "expired" in answer["data"]["content"]
        await fake.wait_for(lambda: all(b.get("disabled") for b in _buttons(prompt)))
        assert prompt["content"].endswith("**Expired**")
    assert restarted.decisions == [(RID, "approve", world.ada["id"], "ada")]


async def test_long_previews_fit_one_message(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    view = _view(world, input_summary="x" * 5000 + " && id", diff="+" + "y" * 5000)
    async with running(fake, bot) as adapter:
        ref = await adapter.present_approval(view)
        content = fake.messages[int(ref.id)]["content"]
        assert len(content) <= 2000
        # issue #23: marked as a preview; the whole input (what runs) is attached
        assert "Preview only" in content and f"approval-{RID}.txt" in content
        assert "&& id" not in content
        [(_, name, data)] = fake.sent_files
        assert name == f"approval-{RID}.txt"
        assert "x" * 5000 + " && id" in data.decode() and "y" * 5000 in data.decode()
        assert content.count("```") == 4  # both blocks closed
        assert "x…\n```" in content and "y…\n```" in content
        outcome = "Approved by someone-with-a-long-name — Bash is always allowed here now"
        await adapter.resolve_approval(ref, view, outcome)
        resolved = fake.messages[int(ref.id)]["content"]
        assert len(resolved) <= 2000 and resolved.endswith(f"**{outcome}**")
        assert resolved.startswith(content)  # the previews are kept
