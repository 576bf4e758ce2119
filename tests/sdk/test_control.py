"""The control protocol, written once: one request model, one decision encoder per wire."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lettabot import sdk
from lettabot.sdk._internal import control


def _cli_types(name: str) -> str:
    import letta_code

    path = Path(letta_code.__file__).parent / "_payload" / "app" / "dist" / "types" / "types"
    return (path / name).read_text()


def _interface(source: str, name: str) -> str:
    match = re.search(r"export interface " + name + r" \{(.*?)\n\}", source, re.S)
    assert match, name
    return match.group(1)


def test_the_wire_spellings_are_the_cli_s_own() -> None:
    stream_json = _cli_types("protocol.d.ts")
    assert "updatedInput?:" in _interface(stream_json, "CanUseToolResponseAllow")
    assert "interrupt?:" in _interface(stream_json, "CanUseToolResponseDeny")
    app_server = _cli_types("protocol_v2.d.ts")
    allow = _interface(app_server, "ApprovalResponseAllowDecision")
    assert "updated_input?:" in allow and "selected_permission_suggestion_ids?:" in allow
    assert "interrupt" not in _interface(app_server, "ApprovalResponseDenyDecision")
    request = _interface(stream_json, "CanUseToolControlRequest")
    for name in control.CanUseTool.model_fields:
        assert f"{name}" in request, name


@pytest.mark.parametrize(("wire", "key"), [("stream_json", "updatedInput"),
                                           ("app_server", "updated_input")])
def test_an_allow_with_new_input(wire: control.Wire, key: str) -> None:
    decision = control.encode_decision(sdk.PermissionAllow(updated_input={"x": 1}), wire)
    assert decision.payload == {"behavior": "allow", key: {"x": 1}}
    assert not decision.interrupt_turn
    plain = control.encode_decision(sdk.PermissionAllow(), wire)
    assert plain.payload == {"behavior": "allow"}


def test_remembered_suggestions_go_to_the_app_server_only() -> None:
    allow = sdk.PermissionAllow(updated_permissions=[{"id": "save-default", "text": "t"}])
    assert control.encode_decision(allow, "app_server").payload == {
        "behavior": "allow", "selected_permission_suggestion_ids": ["save-default"]}
    assert control.encode_decision(allow, "stream_json").payload == {"behavior": "allow"}


def test_a_deny_that_interrupts() -> None:
    deny = sdk.PermissionDeny(message="no", interrupt=True)
    stream = control.encode_decision(deny, "stream_json")
    assert stream.payload == {"behavior": "deny", "message": "no", "interrupt": True}
    assert not stream.interrupt_turn
    server = control.encode_decision(deny, "app_server")
    assert server.payload == {"behavior": "deny", "message": "no"}
    assert server.interrupt_turn  # the App Server transport aborts the turn itself
    assert control.encode_decision(sdk.PermissionDeny(message="no"), "stream_json").payload == {
        "behavior": "deny", "message": "no"}


def test_a_request_off_the_wire() -> None:
    raw = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"},
           "tool_call_id": "call-1", "permission_suggestions": None, "blocked_path": None,
           "diffs": [{"path": "a"}], "something_new": 1}
    body = control.parse_request(raw)
    assert isinstance(body, control.CanUseTool)
    request = body.request("req-1", raw)
    assert (request.tool_name, request.tool_input, request.tool_call_id, request.request_id) == (
        "Bash", {"command": "ls"}, "call-1", "req-1")
    assert request.permission_suggestions == [] and request.diffs == [{"path": "a"}]
    tool = control.parse_request({"subtype": "execute_external_tool", "tool_name": "add",
                                  "tool_call_id": "c", "input": None})
    assert isinstance(tool, control.ExecuteExternalTool) and tool.input == {}
    assert control.parse_request({"subtype": "something_else"}) is None
