"""Approval Block Kit: previews stay within Slack's limits and keep their code blocks."""

from __future__ import annotations

from lettabot_slack.blocks import approval_blocks, resolved_blocks

from lettabot.runtime.adapter import ApprovalView, Scope


def test_huge_previews_are_truncated_inside_closed_code_blocks() -> None:
    view = ApprovalView(
        request_id="perm-1", scope=Scope(adapter="slack", channel="C1", thread="1.2"),
        tool_name="Edit", input_summary="x = a < b\n" * 2000, diff="+ & added\n" * 3000,
    )
    sections = [b["text"]["text"] for b in approval_blocks(view) if b["type"] == "section"]
    assert len(sections) == 3
    for text in sections:
        assert len(text) <= 3000
        assert text.count("```") in (0, 2)
    assert "(truncated)" in sections[1] and "(truncated)" in sections[2]
    assert "a &lt; b" in sections[1] and "&amp; added" in sections[2]


def test_resolved_prompt_keeps_the_question_and_drops_the_buttons() -> None:
    view = ApprovalView(request_id="perm-1", scope=Scope(adapter="slack", channel="C1"),
                        tool_name="Bash", input_summary="rm -rf build")
    blocks = resolved_blocks(view, "Denied by <@U1>")
    assert not [b for b in blocks if b["type"] == "actions"]
    assert "rm -rf build" in str(blocks) and "Denied by <@U1>" in str(blocks)


def test_the_prompt_says_who_may_decide() -> None:
    scope = Scope(adapter="slack", channel="C1")
    view = ApprovalView(request_id="perm-1", scope=scope, tool_name="Bash",
                        input_summary="make deploy", deciders=("U0ADA", "U0BOB"))
    assert "Who may decide: <@U0ADA>, <@U0BOB>" in str(approval_blocks(view))
    nobody = ApprovalView(request_id="perm-2", scope=scope, tool_name="Bash",
                          input_summary="make deploy")
    assert "Nobody here may approve this" in str(approval_blocks(nobody))
