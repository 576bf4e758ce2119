"""The pure parts: rendering, event classification, settings, the sync state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lettabot_matrix.events import Identity, Ignored, Reaction, TypedCommand, classify
from lettabot_matrix.render import MAX_EVENT_BYTES, edit_content, message_content, to_html
from lettabot_matrix.settings import MatrixSettings
from lettabot_matrix.state import SyncState

from lettabot.runtime.adapter import InboundMessage

ME = Identity("@lettabot:example.org", "LettaBot")
SETTINGS = MatrixSettings.from_mapping({})


def _ev(content: Any, **extra: Any) -> dict[str, Any]:
    return {"event_id": "$e1", "sender": "@ada:example.org", "type": "m.room.message",
            "origin_server_ts": 1_700_000_000_000, "content": content, **extra}


def test_html_is_escaped_then_limited_to_a_safe_subset() -> None:
    html = to_html('<script>x</script> <img src=x onerror=y> **b** [l](javascript:z) '
                   '[ok](https://example.org) @room')
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert '<a href="https://example.org">ok</a>' in html
    assert "javascript:" not in html.split("[l]")[0]
    assert "@room" not in html and "<strong>b</strong>" in html


@given(st.text(max_size=300))
def test_no_text_makes_live_markup(text: str) -> None:
    html = to_html(text)
    for bad in ("<script", "<img", "<iframe", "onerror=", "<style", "href=\"javascript"):
        assert bad not in html.lower()
    assert "@room" not in message_content(text)["body"]


def test_events_stay_under_the_homeserver_limit() -> None:
    huge = "😀<" * 40_000
    content = message_content(huge)
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= MAX_EVENT_BYTES
    edit = edit_content("$x", huge)
    assert len(json.dumps(edit, ensure_ascii=False).encode()) <= MAX_EVENT_BYTES
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$x"}
    assert content["m.mentions"] == {} and edit["m.mentions"] == {}


@pytest.mark.parametrize("event", [
    None, [], "text", {"type": "m.room.message"}, _ev("not a dict"), _ev({"body": 3}),
    _ev({"msgtype": "m.text"}), _ev({}),
    {**_ev({"msgtype": "m.text", "body": "x"}), "sender": 5},
    {**_ev({"m.relates_to": {"key": "✅"}}), "type": "m.reaction"},
    {**_ev({"m.relates_to": "x"}), "type": "m.reaction"},
])
def test_malformed_events_are_ignored(event: Any) -> None:
    assert isinstance(classify(event, "!r", is_dm=False, me=ME, settings=SETTINGS), Ignored)


def test_scopes_and_mentions() -> None:
    top = classify(_ev({"msgtype": "m.text", "body": "LettaBot: hi",
                        "m.mentions": {"user_ids": [ME.user_id]}}),
                   "!r", is_dm=False, me=ME, settings=SETTINGS)
    assert isinstance(top, InboundMessage)
    assert top.scope.thread == "$e1" and top.mentioned and top.text == "hi"
    reply = classify(_ev({"msgtype": "m.text", "body": "more", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root"}}), "!r", is_dm=False, me=ME,
        settings=SETTINGS)
    assert isinstance(reply, InboundMessage)
    assert reply.scope.thread == "$root" and not reply.mentioned
    dm = classify(_ev({"msgtype": "m.text", "body": "x", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root"}}), "!d", is_dm=True, me=ME,
        settings=SETTINGS)
    assert isinstance(dm, InboundMessage) and dm.scope.is_dm and dm.scope.thread is None
    own = classify({**_ev({"msgtype": "m.text", "body": "x"}), "sender": ME.user_id}, "!r",
                   is_dm=True, me=ME, settings=SETTINGS)
    assert isinstance(own, Ignored)
    notice = classify(_ev({"msgtype": "m.notice", "body": "from a bot"}), "!r", is_dm=True,
                      me=ME, settings=SETTINGS)
    assert isinstance(notice, Ignored)


def test_files() -> None:
    def cls(**content: Any) -> Any:
        return classify(_ev({"msgtype": "m.file", "body": "notes.txt", **content}), "!d",
                        is_dm=True, me=ME, settings=SETTINGS)

    msg = cls(url="mxc://example.org/abc", info={"mimetype": "text/plain", "size": 5})
    assert isinstance(msg, InboundMessage) and msg.text == ""
    [file] = msg.attachments
    assert (file.name, file.url, file.size) == ("notes.txt", "mxc://example.org/abc", 5)
    captioned = cls(url="mxc://e/x", filename="a.png", body="look")
    assert isinstance(captioned, InboundMessage) and captioned.text == "look"
    assert isinstance(cls(url="https://attacker.example/steal"), Ignored)
    assert isinstance(cls(), Ignored)


def test_commands_and_reactions() -> None:
    def cls(body: str, **content: Any) -> Any:
        return classify(_ev({"msgtype": "m.text", "body": body, **content}), "!r",
                        is_dm=False, me=ME, settings=SETTINGS)

    assert isinstance(cmd := cls("!lettabot reset"), TypedCommand) and cmd.name == "reset"
    assert isinstance(cmd := cls("!lettabot approve ap-1"), TypedCommand)
    assert (cmd.name, cmd.args) == ("approve", "ap-1")
    assert isinstance(cls("!lettabotx reset"), InboundMessage | Ignored)
    mention = {"m.mentions": {"user_ids": [ME.user_id]}}
    assert isinstance(cmd := cls("LettaBot: status", **mention), TypedCommand)
    assert cmd.scope.thread is None  # a command at the top level acts on the room
    assert isinstance(cls("LettaBot: status of the deploy?", **mention), InboundMessage)
    assert isinstance(cls("reset"), InboundMessage)  # no mention, no prefix: a message
    reaction = classify({**_ev({"m.relates_to": {"rel_type": "m.annotation",
                                                  "event_id": "$p", "key": "✅️"}}),
                         "type": "m.reaction"}, "!r", is_dm=False, me=ME, settings=SETTINGS)
    assert reaction == Reaction("!r", "$p", "✅", "@ada:example.org", "$e1")


def test_settings_say_what_is_missing() -> None:
    with pytest.raises(ValueError) as exc:
        MatrixSettings.from_mapping({"enabled": True, "homeserver": "matrix.example.org",
                                     "user_id": "lettabot", "rooms": ["#alias:x"]})
    text = str(exc.value)
    for key in ("access_token", "homeserver", "user_id", "rooms"):
        assert key in text


def test_the_state_survives_and_a_broken_file_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = SyncState(path)
    state.since = "s1"
    state.mark("$a")
    state.direct.add("!d")
    state.save()
    assert path.stat().st_mode & 0o777 == 0o600
    again = SyncState(path)
    assert again.since == "s1" and again.seen("$a") and "!d" in again.direct
    path.write_text("{not json")
    assert SyncState(path).since is None
