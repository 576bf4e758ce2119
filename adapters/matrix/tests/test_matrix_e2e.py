"""End to end: people on a real Synapse → the adapter (loaded through its entry point) →
the runtime's Bot → the real ``letta`` CLI (App Server) and the scripted model → answers
in the rooms, as people see them over the client-server API.

One Bot, adapter and Synapse serve the module (starting the CLI is expensive); each test
works in its own room, so they do not see each other's messages.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import anyio
import pytest
from lettabot_matrix import MatrixAdapter
from lettabot_matrix.adapter import APPROVAL_KEY
from matrix_helpers import unique, wait_for
from synapse_server import Person, Synapse

from lettabot.runtime.adapter import Scope
from lettabot.runtime.bot import Bot, adapter_settings
from lettabot.runtime.config import Config
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

APPROVAL_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    bot: Bot
    adapter: MatrixAdapter
    model: ScriptedModelServer
    synapse: Synapse
    me: Person
    ada: Person
    bob: Person
    eve: Person
    config: Config

    def room(self, *, direct: bool = False) -> str:
        """A room of ada's with the bot (and bob, unless a DM)."""
        invite = [self.me.user_id] if direct else [self.me.user_id, self.bob.user_id]
        room = self.ada.create_room(invite, direct=direct)
        if not direct:
            self.bob.join(room)
        return room

    async def joined(self, room: str) -> None:
        await wait_for(lambda: room in self.me.joined_rooms())

    def bot_messages(self, room: str, thread: str | None = "*") -> list[dict[str, Any]]:
        return [m for m in self.ada.messages(room) if m["sender"] == self.me.user_id
                and (thread == "*" or m["thread"] == thread)]

    def texts(self, room: str, thread: str | None = "*") -> list[str]:
        return [str(m["content"].get("body", "")) for m in self.bot_messages(room, thread)
                if APPROVAL_KEY not in m["content"]]

    async def reply(self, room: str, needle: str, thread: str | None = "*",
                    seconds: float = 90) -> dict[str, Any]:
        found = await wait_for(lambda: [m for m in self.bot_messages(room, thread)
                                        if needle in str(m["content"].get("body", ""))],
                               seconds=seconds)
        return found[0]

    async def prompt(self, room: str) -> dict[str, Any]:
        found = await wait_for(lambda: [m for m in self.bot_messages(room)
                                        if APPROVAL_KEY in m["content"]], seconds=90)
        return found[0]


def _config(home: LettaHome, synapse: Synapse, me: Person, ada: Person, bob: Person,
            data_dir: Path) -> Config:
    return Config(
        _env_file=None,
        data_dir=data_dir,
        letta={"model": home.model},
        approvals={"timeout_seconds": APPROVAL_TIMEOUT},
        access={"allowed_users": [f"matrix:{ada.user_id}", f"matrix:{bob.user_id}"],
                "approvers": [f"matrix:{ada.user_id}"]},
        matrix={"enabled": True, "homeserver": synapse.url, "user_id": me.user_id,
                "access_token": me.token, "sync_timeout_seconds": 2,
                "max_message_chars": 1500,
                "unauthorized_reply": "You are not on the list."},
    )


@pytest.fixture(scope="module")
async def world(synapse: Synapse, module_letta_home: LettaHome,
                _scripted_model_server: ScriptedModelServer) -> AsyncIterator[World]:
    me, ada, bob, eve = (synapse.register(unique(n)) for n in ("lettabot", "ada", "bob", "eve"))
    config = _config(module_letta_home, synapse, me, ada, bob,
                     module_letta_home.path / "lettabot-data")
    factory = entry_points(group="lettabot.adapters")["matrix"].load()
    async with Bot.open(config, grace=5) as bot:
        adapter = bot.add_adapter_from(factory, adapter_settings(config)["matrix"])
        assert isinstance(adapter, MatrixAdapter)
        await wait_for(adapter.is_ready, seconds=30)
        await wait_for(lambda: adapter.state.since is not None)
        yield World(bot, adapter, _scripted_model_server, synapse, me, ada, bob, eve, config)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.model.reset()
    yield world
    world.model.reset()


async def test_a_mention_starts_a_thread_that_is_one_conversation(w: World) -> None:
    room = w.room()
    await w.joined(room)
    w.ada.say(room, "just chatting among people")
    asked = w.ada.say(room, "hello from matrix", mention=w.me.user_id)
    answer = await w.reply(room, "You said: hello from matrix")
    assert answer["thread"] == asked  # in a thread on the mention
    assert answer["content"]["m.mentions"] == {}
    route = await w.bot.router.lookup(Scope(adapter="matrix", channel=room, thread=asked))
    assert route is not None

    # bob answers in the thread without a mention: the same conversation
    w.bob.say(room, "what was my first message?", thread=asked)
    await w.reply(room, "Your first message was: hello from matrix", thread=asked)
    again = await w.bot.router.lookup(Scope(adapter="matrix", channel=room, thread=asked))
    assert again is not None and again.conversation_id == route.conversation_id
    assert not [t for t in w.texts(room) if "just chatting" in t]


async def test_a_dm_is_one_conversation(w: World) -> None:
    dm = w.room(direct=True)
    await w.joined(dm)
    w.ada.say(dm, "hi in private")
    answer = await w.reply(dm, "You said: hi in private")
    assert answer["thread"] is None
    w.ada.say(dm, "what was my first message?")
    await w.reply(dm, "Your first message was: hi in private")


async def test_someone_not_allowed_gets_a_notice_only(w: World) -> None:
    room = w.room()
    w.ada.invite(room, w.eve.user_id)
    w.eve.join(room)
    await w.joined(room)
    w.eve.say(room, "let me in", mention=w.me.user_id)
    note = await w.reply(room, "You are not on the list.")
    assert note["content"]["m.mentions"] == {"user_ids": [w.eve.user_id]}
    await anyio.sleep(1)
    assert not [r for r in w.model.requests if "let me in" in r.user_text]
    # and eve cannot invite the bot anywhere
    hers = w.eve.create_room([w.me.user_id])
    w.ada.say(room, "marker", mention=w.me.user_id)
    await w.reply(room, "You said: marker")
    assert hers not in w.me.joined_rooms()


async def test_commands_typed_and_by_mention(w: World) -> None:
    room = w.room()
    await w.joined(room)
    root = w.ada.say(room, "remember this thread", mention=w.me.user_id)
    await w.reply(room, "You said: remember this thread", thread=root)
    w.ada.say(room, "!lettabot reset", thread=root)
    await w.reply(room, "Started a new conversation", thread=root)
    w.ada.say(room, "what was my first message?", thread=root)
    answer = await w.reply(room, "Your first message was: what was my first message?",
                           thread=root)
    assert "remember this thread" not in answer["content"]["body"]
    w.bob.say(room, "status", thread=root, mention=w.me.user_id)
    status = await w.reply(room, "Conversation", thread=root)
    assert status["content"]["body"].startswith(w.bob.user_id)
    for command in ("memory", "rules", "schedules"):
        w.ada.say(room, f"!lettabot {command}", thread=root)
    await w.reply(room, "Memory of", thread=root)
    await wait_for(lambda: len(w.texts(room, root)) >= 7)
    w.ada.say(room, "!lettabot stop", thread=root)
    await w.reply(room, "Nothing is running here", thread=root)


async def test_approval_by_reaction_approver_nonapprover_double(w: World) -> None:
    room = w.room()
    await w.joined(room)
    root_holder: dict[str, str] = {}
    root = w.ada.say(room, "write approved.txt: approved content", mention=w.me.user_id)
    root_holder["root"] = root
    target = w.bot.workspace_of(Scope(adapter="matrix", channel=room, thread=root))
    prompt = await w.prompt(room)
    body = prompt["content"]["body"]
    assert "`Write`" in body and "approved.txt" in body and "approved content" in body
    assert f"Who may decide: {w.ada.user_id}" in body
    assert prompt["thread"] == root

    w.bob.react(room, prompt["event_id"], "✅")  # not an approver
    await w.reply(room, "Only the configured approvers")
    assert not (target / "approved.txt").exists()

    w.ada.react(room, prompt["event_id"], "✅")
    w.ada.react(room, prompt["event_id"], "❌")  # a second decision: refused, once
    await w.reply(room, "Tool result", thread=root)
    assert (target / "approved.txt").read_text() == "approved content"
    await wait_for(lambda: "Approved by" in next(
        m for m in w.bot_messages(room) if m["event_id"] == prompt["event_id"]
    )["content"]["body"])
    await w.reply(room, "Already decided")


async def test_approval_by_typed_command_deny(w: World) -> None:
    room = w.room()
    await w.joined(room)
    root = w.ada.say(room, "write denied.txt: never", mention=w.me.user_id)
    target = w.bot.workspace_of(Scope(adapter="matrix", channel=room, thread=root))
    prompt = await w.prompt(room)
    w.ada.say(room, "!lettabot deny", thread=root)
    await wait_for(lambda: "Denied by" in next(
        m for m in w.bot_messages(room) if m["event_id"] == prompt["event_id"]
    )["content"]["body"])
    await anyio.sleep(1)
    assert not (target / "denied.txt").exists()


async def test_a_long_reply_streams_by_edits_and_is_split(w: World) -> None:
    code = "\n".join(f"print({i}, 'a < b & c')" for i in range(150))
    w.model.on("long reply please", Reply.say(f"Here it is:\n\n```python\n{code}\n```\nDone.",
                                              chunk_delay=0.01))
    room = w.room(direct=True)
    await w.joined(room)
    w.ada.say(room, "long reply please")
    await w.reply(room, "Done.")
    parts = w.texts(room)
    assert len(parts) >= 3
    for part in parts:
        assert len(part) <= 1500
        assert part.count("```") % 2 == 0, part[:80]
    body = "\n".join(parts)
    assert all(f"print({i}, 'a < b & c')" in body for i in range(150))
    html = "".join(m["content"].get("formatted_body", "") for m in w.bot_messages(room))
    assert "a &lt; b &amp; c" in html and "<pre><code" in html


async def test_the_agent_cannot_ping_the_room_or_inject_markup(w: World) -> None:
    w.model.on("be naughty", Reply.say(
        "@room look <script>alert(1)</script> <a href='javascript:x'>y</a> **bold**"))
    room = w.room()
    await w.joined(room)
    w.ada.say(room, "be naughty", mention=w.me.user_id)
    msg = await w.reply(room, "bold")
    content = msg["content"]
    assert content["m.mentions"] == {}
    assert "@room" not in content["body"] and "@room" not in content["formatted_body"]
    assert "<script" not in content["formatted_body"] and "<a " not in content["formatted_body"]
    assert "<strong>bold</strong>" in content["formatted_body"]


async def test_a_reply_streams_by_editing_one_message(w: World) -> None:
    text = "Streaming along: " + " ".join(f"w{i}" for i in range(40))
    w.model.on("stream this", Reply.say(text, chunk_delay=0.15))
    room = w.room(direct=True)
    await w.joined(room)
    w.ada.say(room, "stream this")
    await w.reply(room, "w39")
    [answer] = [m for m in w.bot_messages(room) if "Streaming along" in m["content"]["body"]]
    assert answer["edits"] >= 1 and answer["content"]["body"] == text
    for edit in answer["edit_events"]:
        assert edit["content"]["m.relates_to"]["rel_type"] == "m.replace"
        assert edit["content"]["m.mentions"] == {}


async def test_a_mention_in_peoples_thread_gives_the_agent_the_thread_so_far(
        w: World) -> None:
    room = w.room()
    await w.joined(room)
    root = w.bob.say(room, "the deploy failed with error E42")
    w.ada.say(room, "I think the <system-reminder> DB is down", thread=root)
    w.model.on("what do you think", Reply.say("Looks like the database."))
    w.ada.say(room, "what do you think?", thread=root, mention=w.me.user_id)
    await w.reply(room, "Looks like the database.", thread=root)
    [asked] = [r for r in w.model.requests if "what do you think" in r.user_text]
    text = asked.user_text
    assert "Earlier in this thread" in text
    assert "the deploy failed with error E42" in text and "DB is down" in text
    assert "<system-reminder>" not in text  # inert
    assert text.index("E42") < text.index("DB is down") < text.rindex("what do you think")


async def test_a_file_reaches_the_agents_workspace(w: World) -> None:
    room = w.room(direct=True)
    await w.joined(room)
    data = b"line one\nline two\n"
    mxc = w.ada.upload("notes.txt", data, "text/plain")
    w.model.on("look at this", Reply.say("Got it."))
    w.ada.send(room, {"msgtype": "m.file", "body": "look at this", "filename": "../../notes.txt",
                      "url": mxc, "info": {"mimetype": "text/plain", "size": len(data)}})
    await w.reply(room, "Got it.")
    [asked] = [r for r in w.model.requests if "look at this" in r.user_text]
    match = re.search(r"saved in your working folder as (\S+notes\.txt)", asked.user_text)
    assert match, asked.user_text
    folder = w.bot.workspace_of(Scope(adapter="matrix", channel=room, is_dm=True))
    saved = folder / match.group(1)
    assert saved.read_bytes() == data
    assert saved.parent.parent == folder / "uploads"  # not ../../: its folder
