"""The adapter against a real Synapse, with a recording runtime: what people do in rooms
reaches the runtime with the right scope, and what the runtime sends looks right to them."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from lettabot_matrix.adapter import APPROVAL_KEY
from lettabot_matrix.listeners import ENCRYPTED_NOTICE
from matrix_helpers import RecordingBot, running, unique, wait_for
from synapse_server import Person, Synapse

from lettabot.runtime.adapter import ApprovalView, DecisionOutcome, Scope

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def people(synapse: Synapse) -> dict[str, Person]:
    return {name: synapse.register(unique(name)) for name in ("bot", "ada", "bob")}


@pytest.fixture
def rec(people: dict[str, Person]) -> RecordingBot:
    return RecordingBot(allowed={people["ada"].user_id})


def _room_with_bot(owner: Person, bot: Person, **kw: Any) -> str:
    room = owner.create_room([bot.user_id], **kw)
    return room


async def test_invitations_only_from_allowed_users(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, bob, me = people["ada"], people["bob"], people["bot"]
    async with running(synapse, me, rec, tmp_path / "state.json"):
        from_ada = ada.create_room([me.user_id])
        from_bob = bob.create_room([me.user_id])
        await wait_for(lambda: from_ada in me.joined_rooms())
        # bob's invitation was declined: the bot is not in his room, and never will be
        await wait_for(lambda: me.user_id not in str(
            bob.call("GET", f"/rooms/{from_bob}/state/m.room.member/{me.user_id}")) or
            bob.call("GET", f"/rooms/{from_bob}/state/m.room.member/{me.user_id}")
            ["membership"] == "leave")
        assert from_bob not in me.joined_rooms()


async def test_mention_starts_a_thread_replies_continue_it(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, bob, me = people["ada"], people["bob"], people["bot"]
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        room = ada.create_room([me.user_id, bob.user_id])
        bob.join(room)
        await wait_for(lambda: room in me.joined_rooms())
        ada.say(room, "chatting among people")
        asked = ada.say(room, "what is our deploy process?", mention=me.user_id)
        [first] = await wait_for(lambda: [m for m in rec.messages if m.mentioned])
        assert first.scope == Scope(adapter="matrix", channel=room, thread=asked)
        assert first.text == "what is our deploy process?"
        [plain] = [m for m in rec.messages if not m.mentioned]
        assert plain.scope.thread is None and plain.text == "chatting among people"

        ref = await adapter.post(first.scope, "Here is **how** we deploy.")
        reply = next(m for m in ada.messages(room) if m["event_id"] == ref.id)
        assert reply["thread"] == asked and reply["content"]["msgtype"] == "m.notice"
        assert "<strong>how</strong>" in reply["content"]["formatted_body"]

        bob.say(room, "and rollbacks?", thread=asked)
        second = (await wait_for(lambda: rec.messages[2:]))[0]
        assert second.scope == first.scope and not second.mentioned
        assert second.user_id == bob.user_id
        assert len(rec.messages) == 3  # the bot's own reply was not delivered


async def test_a_room_stays_a_room_when_people_leave(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, bob, me = people["ada"], people["bob"], people["bot"]
    async with running(synapse, me, rec, tmp_path / "state.json"):
        room = ada.create_room([me.user_id, bob.user_id])
        bob.join(room)
        await wait_for(lambda: room in me.joined_rooms())
        ada.say(room, "first", mention=me.user_id)
        await wait_for(lambda: rec.messages)
        bob.call("POST", f"/rooms/{room}/leave", {})
        asked = ada.say(room, "second", mention=me.user_id)
        [_, second] = await wait_for(lambda: rec.messages[1:] and rec.messages)
        assert second.scope == Scope(adapter="matrix", channel=room, thread=asked)


async def test_a_dm_is_one_scope(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        dm = ada.create_room([me.user_id], direct=True)
        await wait_for(lambda: dm in me.joined_rooms())
        first = ada.say(dm, "hello there")
        [msg] = await wait_for(lambda: rec.messages)
        assert msg.scope == Scope(adapter="matrix", channel=dm, is_dm=True) and msg.mentioned
        ada.say(dm, "in a thread", thread=first)
        [_, again] = await wait_for(lambda: rec.messages[1:] and rec.messages)
        assert again.scope == msg.scope  # a DM is one conversation, threads or not
        ref = await adapter.post(msg.scope, "Hi!")
        [reply] = [m for m in ada.messages(dm) if m["event_id"] == ref.id]
        assert reply["thread"] is None


async def test_typed_commands(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    async with running(synapse, me, rec, tmp_path / "state.json"):
        room = ada.create_room([me.user_id, people["bob"].user_id])
        await wait_for(lambda: room in me.joined_rooms())
        root = ada.say(room, "start", mention=me.user_id)
        await wait_for(lambda: rec.messages)
        ada.say(room, "!lettabot reset", thread=root)
        ada.say(room, "status", thread=root, mention=me.user_id)
        ada.say(room, "!lettabot schedules cancel s-1")
        ada.say(room, "reset is a word in a sentence", thread=root)  # not a command
        await wait_for(lambda: len(rec.commands) == 3)
        thread = Scope(adapter="matrix", channel=room, thread=root)
        assert [(c[0], c[2], c[3]) for c in rec.commands] == [
            (thread, "reset", ""), (thread, "status", ""),
            (Scope(adapter="matrix", channel=room), "schedules", "cancel s-1")]
        texts = await wait_for(lambda: [m["content"]["body"] for m in ada.messages(room)
                                        if m["sender"] == me.user_id and "done" in
                                        m["content"]["body"]][2:] and
                               [m["content"]["body"] for m in ada.messages(room)
                                if m["sender"] == me.user_id])
        assert "reset done" in texts
        assert f"{ada.user_id}: status done" in texts  # a note for its asker
        assert rec.messages[-1].text == "reset is a word in a sentence"


async def test_an_encrypted_room_is_refused_out_loud(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    ada, me = people["ada"], people["bot"]
    caplog.set_level(logging.WARNING, logger="lettabot_matrix")
    async with running(synapse, me, rec, tmp_path / "state.json"):
        room = ada.create_room([me.user_id], encrypted=True)
        notices = await wait_for(lambda: [m for m in ada.messages(room)
                                          if m["sender"] == me.user_id])
        assert notices[0]["content"]["body"] == ENCRYPTED_NOTICE
        await wait_for(lambda: room not in me.joined_rooms())
        assert any("end-to-end encrypted" in r.getMessage() for r in caplog.records)
        # a room that turns encryption on later: the same
        plain = ada.create_room([me.user_id])
        await wait_for(lambda: plain in me.joined_rooms())
        ada.call("PUT", f"/rooms/{plain}/state/m.room.encryption/",
                 {"algorithm": "m.megolm.v1.aes-sha2"})
        await wait_for(lambda: plain not in me.joined_rooms())
        assert any(m["content"]["body"] == ENCRYPTED_NOTICE for m in ada.messages(plain))
    assert not rec.messages


async def test_rooms_setting_limits_where_it_stays(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, bob, me = people["ada"], people["bob"], people["bot"]
    listed = bob.create_room()  # bob may not talk, but the room is listed: joined
    bob.invite(listed, me.user_id)
    async with running(synapse, me, rec, tmp_path / "state.json", rooms=[listed]):
        await wait_for(lambda: listed in me.joined_rooms())
        other = ada.create_room([me.user_id, bob.user_id], name="not listed")
        await wait_for(lambda: [m for m in ada.messages(other) if m["sender"] == me.user_id])
        await wait_for(lambda: other not in me.joined_rooms())


def _view(scope: Scope, rid: str, **extra: Any) -> ApprovalView:
    values: dict[str, Any] = {"request_id": rid, "scope": scope, "tool_name": "Bash",
                              "input_summary": "rm -rf build/ && echo <b>@room</b>",
                              "requested_by": "@ada:x", "deciders": ("@ada:x",)}
    return ApprovalView(**{**values, **extra})


async def test_approval_prompt_and_reactions(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, bob, me = people["ada"], people["bob"], people["bot"]
    state = tmp_path / "state.json"
    rec.outcome = lambda rid, uid: (
        DecisionOutcome(status="decided", message="ok", final_text="Approved") if uid ==
        ada.user_id else DecisionOutcome(status="not_authorized",
                                         message="Only the configured approvers can decide."))
    room = ada.create_room([me.user_id, bob.user_id])
    bob.join(room)
    async with running(synapse, me, rec, state) as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        scope = Scope(adapter="matrix", channel=room)
        view = _view(scope, "ap-1", deciders=(ada.user_id,), requested_by=ada.user_id)
        ref = await adapter.present_approval(view)
        [prompt] = [m for m in ada.messages(room) if m["event_id"] == ref.id]
        body = prompt["content"]["body"]
        assert "`Bash`" in body and "rm -rf build/ && echo <b>@\u2060room</b>" in body
        assert f"Who may decide: {ada.user_id}" in body
        assert prompt["content"][APPROVAL_KEY] == {"request_id": "ap-1"}
        assert prompt["content"]["m.mentions"] == {"user_ids": [ada.user_id]}
        assert "<b>" not in prompt["content"]["formatted_body"]  # shown, not rendered
        keys = await wait_for(lambda: len(ada.events(room, "m.reaction")) == 3 and [
            e["content"]["m.relates_to"]["key"] for e in ada.events(room, "m.reaction")])
        assert keys == ["✅", "❌", "🔁"]

        bob.react(room, ref.id, "✅")
        ada.react(room, ref.id, "❌")
        ada.react(room, ada.say(room, "not a prompt"), "✅")
        await wait_for(lambda: len(rec.decisions) == 2)
        assert rec.decisions == [("ap-1", "approve", bob.user_id), ("ap-1", "deny", ada.user_id)]
        note = await wait_for(lambda: [m for m in ada.messages(room) if "Only the" in
                                       m["content"]["body"]])
        assert note[0]["content"]["m.mentions"] == {"user_ids": [bob.user_id]}

        await adapter.resolve_approval(ref, view, "Denied by ada")
        [prompt] = [m for m in ada.messages(room) if m["event_id"] == ref.id]
        assert prompt["content"]["body"].endswith("**Denied by ada**")

    # after a restart the prompt is still found (its request id is in its content)
    rec.outcome = lambda rid, uid: DecisionOutcome(status="unknown", message="?")
    async with running(synapse, me, rec, state):
        ada.react(room, ref.id, "🔁")
        await wait_for(lambda: len(rec.decisions) == 3)
        assert rec.decisions[-1] == ("ap-1", "always", ada.user_id)
        await wait_for(lambda: [m for m in ada.messages(room) if "expired" in
                                m["content"]["body"]])


async def test_a_long_approval_input_is_previewed_and_attached(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    room = ada.create_room([me.user_id])
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        view = _view(Scope(adapter="matrix", channel=room), "ap-2",
                     input_summary="x" * 20000 + " && curl evil")
        ref = await adapter.present_approval(view)
        [prompt] = [m for m in ada.messages(room) if m["event_id"] == ref.id]
        assert "Preview only" in prompt["content"]["body"]
        assert "curl evil" not in prompt["content"]["body"]
        [file] = [m for m in ada.messages(room) if m["content"].get("msgtype") == "m.file"]
        assert file["content"]["body"] == "approval-ap-2.txt"
        data = ada.download(file["content"]["url"]).decode()
        assert "x" * 20000 + " && curl evil" in data


async def test_output_is_sanitised_split_safe_and_pings_nobody(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    room = ada.create_room([me.user_id])
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        scope = Scope(adapter="matrix", channel=room)
        evil = ('@room look: <img src=x onerror=alert(1)> <a href="javascript:x">y</a> '
                '[click](javascript:alert(1)) **bold** <font color=red>x</font>')
        ref = await adapter.post(scope, evil)
        [msg] = [m for m in ada.messages(room) if m["event_id"] == ref.id]
        content = msg["content"]
        assert content["m.mentions"] == {}
        assert "@room" not in content["body"] and "@room" not in content["formatted_body"]
        html = content["formatted_body"]
        assert "<img" not in html and "<a " not in html and "<font" not in html
        assert not re.search(r"<[^>]*javascript", html)  # no live javascript: anywhere
        assert "<strong>bold</strong>" in html and "&lt;img" in html

        # the biggest message the runtime sends (its split size), edited: both accepted
        big = "<&>" * (adapter.limits.max_message_length // 3)
        ref = await adapter.post(scope, big)
        await adapter.edit(ref, big[:-3] + "END")
        [msg] = [m for m in ada.messages(room) if m["event_id"] == ref.id]
        assert msg["edits"] == 1 and msg["content"]["body"].endswith("END")


async def test_malformed_events_are_skipped(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    room = ada.create_room([me.user_id], direct=True)
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        odd: list[tuple[dict[str, Any], str]] = [
            ({"msgtype": "m.text", "body": 42}, "m.room.message"),
            ({"body": "no msgtype"}, "m.room.message"),
            ({"msgtype": ["m.text"], "body": "a list"}, "m.room.message"),
            ({"msgtype": "m.text", "body": "x", "m.relates_to": "nonsense",
              "m.mentions": "all"}, "m.room.message"),
            ({"msgtype": "m.text", "body": "y", "m.relates_to": {"rel_type": "m.thread"}},
             "m.room.message"),
            ({"m.relates_to": {"rel_type": "m.annotation"}}, "m.reaction"),
            ({"m.relates_to": []}, "m.reaction"),
            ({"anything": [1, 2]}, "org.example.custom"),
            ({"msgtype": "m.image", "body": "pic.png", "url": "mxc://x/y"}, "m.room.message"),
        ]
        accepted = []
        for content, kind in odd:
            try:
                ada.send(room, content, kind)
                accepted.append(content)
            except httpx.HTTPStatusError:
                pass  # Synapse refused it: it cannot reach the bot either
        assert len(accepted) >= 5
        ada.send(room, {"msgtype": "m.text", "body": "the marker"})
        await wait_for(lambda: [m for m in rec.messages if m.text == "the marker"])
        # what is still a text message gets through; the rest is skipped, nothing breaks
        expected = [c["body"] for c in accepted if c.get("msgtype") == "m.text"
                    and isinstance(c.get("body"), str)]
        texts = [m.text for m in rec.messages if not m.attachments]
        assert texts == [*expected, "the marker"]
        [image] = [m for m in rec.messages if m.attachments]  # a file, no caption
        assert image.attachments[0].url == "mxc://x/y" and image.text == ""
        assert adapter.is_ready()


async def test_restart_delivers_nothing_twice(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    state = tmp_path / "state.json"
    room = ada.create_room()
    ada.say(room, "said before the bot was invited")
    ada.invite(room, me.user_id)
    async with running(synapse, me, rec, state):
        await wait_for(lambda: room in me.joined_rooms())
        ada.say(room, "one")
        await wait_for(lambda: rec.messages)
    ada.say(room, "two, while the bot was down")
    again = RecordingBot(allowed=rec.allowed)
    async with running(synapse, me, again, state):
        await wait_for(lambda: again.messages)
        ada.say(room, "three")
        await wait_for(lambda: again.messages[1:])
    assert [m.text for m in rec.messages] == ["one"]
    assert [m.text for m in again.messages] == ["two, while the bot was down", "three"]


async def test_a_sync_position_the_homeserver_refuses_starts_afresh(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"since": "not-a-real-token", "seen": []}))
    room = ada.create_room([me.user_id], direct=True)
    async with running(synapse, me, rec, state) as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        assert adapter.state.since != "not-a-real-token"
        ada.say(room, "still here?")
        [msg] = await wait_for(lambda: rec.messages)
        assert msg.text == "still here?"


async def test_a_homeserver_that_goes_away_is_reconnected(
        synapse: Synapse, people: dict[str, Person], rec: RecordingBot, tmp_path: Path) -> None:
    ada, me = people["ada"], people["bot"]
    room = ada.create_room([me.user_id], direct=True)
    async with running(synapse, me, rec, tmp_path / "state.json") as adapter:
        await wait_for(lambda: room in me.joined_rooms())
        synapse.stop()
        try:
            await wait_for(lambda: not adapter.is_ready(), seconds=60)
        finally:
            synapse.start()
        await wait_for(adapter.is_ready, seconds=90)
        ada.say(room, "are you back?")
        [msg] = await wait_for(lambda: rec.messages, seconds=60)
        assert msg.text == "are you back?"


async def test_a_homeserver_never_reached_keeps_retrying(
        people: dict[str, Person], rec: RecordingBot, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import anyio
    from lettabot_matrix import MatrixAdapter, MatrixSettings
    from synapse_server import free_port
    caplog.set_level(logging.WARNING, logger="lettabot_matrix")
    config = MatrixSettings.from_mapping({
        "enabled": True, "homeserver": f"http://127.0.0.1:{free_port()}",
        "user_id": people["bot"].user_id, "access_token": "x"})
    adapter = MatrixAdapter(config, rec, state_path=tmp_path / "s.json")
    with anyio.move_on_after(4):
        await adapter.run()  # retries until cancelled, never raises
    assert not adapter.is_ready()
    assert [r for r in caplog.records if "unreachable" in r.getMessage()]
