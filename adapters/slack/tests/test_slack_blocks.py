"""Approval Block Kit: previews stay within Slack's limits and keep their code blocks."""

from __future__ import annotations

from lettabot_slack.blocks import approval_attachment, approval_blocks, resolved_blocks

from lettabot.runtime.adapter import ApprovalView, Scope


def test_huge_previews_are_truncated_inside_closed_code_blocks() -> None:
    view = ApprovalView(
        request_id="perm-1", scope=Scope(adapter="slack", channel="C1", thread="1.2"),
        tool_name="Edit", input_summary="x = a < b\n" * 2000, diff="+ & added\n" * 3000,
    )
    sections = [b["text"]["text"] for b in approval_blocks(view) if b["type"] == "section"]
    assert len(sections) == 4
    for text in sections:
        assert len(text) <= 3000
        assert text.count("```") in (0, 2)
    # the cut is announced: a preview, and the whole input is attached
    assert "Preview only" in sections[1] and "approval-perm-1.txt" in sections[1]
    assert "(truncated)" in sections[2] and "(truncated)" in sections[3]
    assert "a &lt; b" in sections[2] and "&amp; added" in sections[3]
    attachment = approval_attachment(view)
    assert attachment is not None and attachment[0] == "approval-perm-1.txt"
    assert ("x = a < b\n" * 2000) in attachment[1].decode()  # the whole input, unescaped
    assert ("+ & added\n" * 3000).strip() in attachment[1].decode()


def test_a_prompt_that_fits_is_no_preview_and_has_no_attachment() -> None:
    view = ApprovalView(request_id="perm-2", scope=Scope(adapter="slack", channel="C1"),
                        tool_name="Bash", input_summary="echo " + "y" * 1000)
    assert approval_attachment(view) is None
    assert "Preview" not in str(approval_blocks(view))
    assert "y" * 1000 in str(approval_blocks(view))


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
