"""End to end: signed Slack requests → real slack-bolt → the runtime's Bot → the real
``letta`` CLI (App Server) and the scripted model → Web API calls on the mock Slack.

One Bot, adapter and mock Slack serve the whole module (starting the CLI is expensive);
each test works in its own thread or DM, so they do not see each other's messages.
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
from lettabot_slack import SlackAdapter
from slack_harness import SIGNING_SECRET, free_port
from slack_mock_api import MockSlack, SlackSender, mention, message, new_ts

from lettabot.runtime.adapter import Scope
from lettabot.runtime.bot import Bot, adapter_settings
from lettabot.runtime.config import Config
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHANNEL = "C0GENERAL"
APPROVAL_TIMEOUT = 8.0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def slack_home(module_letta_home: LettaHome) -> LettaHome:
    return module_letta_home


@dataclass
class World:
    bot: Bot
    adapter: SlackAdapter
    mock: MockSlack
    slack: SlackSender
    model: ScriptedModelServer
    workspace: Path
    """The workspaces' root; a thread's conversation works in its own folder (``folder``)."""

    def folder(self, ts: str) -> Path:
        """The folder of the channel thread ``ts``: the only one its tools can reach."""
        return self.bot.workspace_of(thread_scope(ts))

    async def reply_in(self, channel: str, thread: str | None, expected: str) -> str:
        """Wait for a bot message in (channel, thread) whose text contains ``expected``."""
        found = await self.mock.wait_for(
            lambda: [m for m in self.mock.messages.values()
                     if m.channel == channel and m.thread_ts == thread and not m.deleted
                     and expected in m.text and not _is_prompt(m)],
            limit=90,
        )
        return str(found[0].text)

    def bot_texts(self, channel: str, thread: str | None) -> list[str]:
        return [m.text for m in self.mock.thread(channel, thread)
                if not _is_prompt(m) and "lettabot_stop" not in str(m.blocks or "")]


def _is_prompt(message: Any) -> bool:
    """An approval prompt (an answer may carry blocks too: its feedback buttons)."""
    return "lettabot_approval" in str(message.blocks or "")


@pytest.fixture(scope="module")
async def world(
    slack_home: LettaHome, _scripted_model_server: ScriptedModelServer
) -> AsyncIterator[World]:
    mock = MockSlack()
    await mock.start()
    data_dir = slack_home.path / "lettabot-data"
    config = Config(
        _env_file=None,
        data_dir=data_dir,
        letta={"model": slack_home.model},
        approvals={"timeout_seconds": APPROVAL_TIMEOUT},
        access={"allowed_users": ["slack:U_ADA", "slack:U_BOB"], "approvers": ["slack:U_ADA"]},
        slack={
            "enabled": True, "mode": "http", "bot_token": "xoxb-e2e",
            "signing_secret": SIGNING_SECRET, "http_host": "127.0.0.1",
            "http_port": free_port(), "api_url": mock.api_url,
            "unauthorized_reply": "You are not on the list.",
        },
    )
    # the adapter is found the way `lettabot run` finds it: by its entry point
    factory = entry_points(group="lettabot.adapters")["slack"].load()
    try:
        async with Bot.open(config, grace=5) as bot:
            adapter = bot.add_adapter_from(factory, adapter_settings(config)["slack"])
            assert isinstance(adapter, SlackAdapter)
            with anyio.fail_after(30):
                await adapter.ready.wait()
            url = f"http://127.0.0.1:{adapter.http_port}{config.slack.http_path}"
            yield World(bot, adapter, mock, SlackSender(url, SIGNING_SECRET),
                        _scripted_model_server, config.letta_cwd)
        assert mock.unfurling() == [], mock.unfurling()  # no link of the bot's unfurls
    finally:
        await mock.stop()


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.model.reset()
    yield world
    world.model.reset()


def thread_scope(ts: str) -> Scope:
    return Scope(adapter="slack", workspace="T0TEAM", channel=CHANNEL, thread=ts)


async def test_mention_then_thread_reply_continue_one_conversation(w: World) -> None:
    ts = new_ts()
    status, _ = await w.slack.event(mention("hello from slack", ts=ts))
    assert status == 200
    assert await w.reply_in(CHANNEL, ts, "You said: hello from slack")
    # 👀 on receipt, then the working reaction; both gone when the turn ended
    await w.mock.wait_for(lambda: not w.mock.messages[ts].reactions)
    added = [c.args["name"] for c in w.mock.calls_to("reactions.add")
             if c.args["timestamp"] == ts]
    assert added == ["eyes", "hourglass_flowing_sand"]
    route = await w.bot.router.lookup(thread_scope(ts))
    assert route is not None

    # a reply in the thread, without a mention, continues the same conversation
    await w.slack.event(message("what was my first message?", ts=new_ts(), thread_ts=ts))
    # the reply streams in (post, then edits): wait for the whole of it, not its first part
    answer = await w.reply_in(CHANNEL, ts, "Your first message was: hello from slack")
    assert answer.endswith("hello from slack")
    again = await w.bot.router.lookup(thread_scope(ts))
    assert again is not None and again.conversation_id == route.conversation_id

    # a message at the channel's top level without a mention is not for the bot
    await w.slack.event(message("just chatting"))
    await w.slack.event(mention("ping", ts=(probe := new_ts())))
    await w.reply_in(CHANNEL, probe, "You said: ping")
    assert not [m for m in w.mock.messages.values() if "just chatting" in m.text]


async def test_dm_is_its_own_conversation(w: World) -> None:
    await w.slack.event(message("hi in private", channel="D0ADA", channel_type="im"))
    assert await w.reply_in("D0ADA", None, "You said: hi in private")
    dm_thread = new_ts()
    await w.slack.event(message("what was my first message?", channel="D0ADA",
                                channel_type="im", ts=new_ts(), thread_ts=dm_thread))
    # a thread inside the DM is a new conversation: its first message is this one
    answer = await w.reply_in("D0ADA", dm_thread,
                              "Your first message was: what was my first message?")
    assert "hi in private" not in answer


async def test_retried_event_is_answered_once(w: World) -> None:
    ts = new_ts()
    event = mention("answer me once", ts=ts)
    assert (await w.slack.event(event, event_id="EvE2E-RETRY"))[0] == 200
    assert (await w.slack.event(event, event_id="EvE2E-RETRY", retry_num=1))[0] == 200
    await w.reply_in(CHANNEL, ts, "You said: answer me once")
    await w.mock.wait_for(lambda: not w.mock.messages[ts].reactions)
    assert (await w.slack.event(event, event_id="EvE2E-RETRY", retry_num=2))[0] == 200
    await w.slack.event(mention("after", ts=(probe := new_ts())))
    await w.reply_in(CHANNEL, probe, "You said: after")
    assert w.bot_texts(CHANNEL, ts) == ["You said: answer me once"]
    asked = [r for r in w.model.requests if r.user_text.endswith("answer me once")]
    assert len(asked) == 1


async def test_long_reply_is_split_with_fences_intact(w: World) -> None:
    """Where Slack refuses native streaming (an older workspace): post + edits, split."""
    code = "\n".join(f"print({i}, 'a < b & c')" for i in range(500))
    w.model.on("long reply please", Reply.say(f"Here it is:\n\n```python\n{code}\n```\nDone."))
    ts = new_ts()
    w.mock.streaming = False
    try:
        await w.slack.event(mention("long reply please", ts=ts))
        await w.reply_in(CHANNEL, ts, "Done.")
    finally:
        w.mock.streaming = True
        w.adapter._streaming = True
    assert [c.args["thread_ts"] for c in w.mock.calls_to("chat.startStream")][-1] == ts
    await w.mock.wait_for(lambda: not w.mock.messages[ts].reactions)
    parts = w.bot_texts(CHANNEL, ts)
    assert len(parts) >= 3
    assert parts[0].startswith("Here it is:")
    for part in parts:
        assert len(part) <= 3900
        assert part.count("```") % 2 == 0, part[:80]
    body = "\n".join(parts)
    assert all(f"print({i}, 'a &lt; b &amp; c')" in body for i in range(500))


async def test_rate_limited_post_is_retried(w: World) -> None:
    # a reply that streams for a few seconds, so the retry lands while it is still going
    text = "Slow and steady: " + " ".join(f"word{i}" for i in range(25))
    w.model.on("despite the rate limit", Reply.say(text, chunk_delay=0.3))
    before = len(w.mock.calls_to("chat.startStream"))
    w.mock.fail_next("chat.startStream", status=429, retry_after=1)
    ts = new_ts()
    await w.slack.event(mention("despite the rate limit", ts=ts))
    await w.reply_in(CHANNEL, ts, text)
    posts = w.mock.calls_to("chat.startStream")[before:]
    # the 429 and the same request again after Retry-After; one message in the thread
    assert len(posts) == 2 and posts[0].args == posts[1].args
    assert w.bot_texts(CHANNEL, ts) == [text]


async def test_bad_signature_is_rejected(w: World) -> None:
    ts = new_ts()
    status, _ = await w.slack.event(mention("forged", ts=ts), signature="v0=" + "f" * 64)
    assert status == 401
    await w.slack.event(mention("genuine", ts=(probe := new_ts())))
    await w.reply_in(CHANNEL, probe, "You said: genuine")
    assert not w.mock.thread(CHANNEL, ts)


async def _prompt(w: World, ts: str) -> Any:
    found = await w.mock.wait_for(
        lambda: [m for m in w.mock.thread(CHANNEL, ts)
                 if m.blocks and any(b["type"] == "actions" for b in m.blocks)],
        limit=90,
    )
    return found[0]


def _buttons(prompt: Any) -> dict[str, dict[str, Any]]:
    [actions] = [b for b in prompt.blocks if b["type"] == "actions"]
    return {e["text"]["text"]: e for e in actions["elements"]}


async def test_approval_approve_runs_the_tool(w: World) -> None:
    ts = new_ts()
    target = w.folder(ts) / "approved.txt"
    await w.slack.event(mention(f"write {target}: approved content", ts=ts))
    prompt = await _prompt(w, ts)
    assert "Write" in str(prompt.blocks) and "approved.txt" in str(prompt.blocks)
    assert "Who may decide: <@U_ADA>" in str(prompt.blocks)  # the configured approver
    approve = _buttons(prompt)["Approve"]

    # not an approver: an ephemeral refusal, nothing decided
    before = len(w.mock.calls_to("chat.postEphemeral"))
    await w.slack.click(approve["action_id"], approve["value"], user="U_BOB",
                        channel=CHANNEL, message_ts=prompt.ts, thread_ts=ts)
    notes = await w.mock.wait_for(lambda: w.mock.calls_to("chat.postEphemeral")[before:])
    assert notes[0].args["user"] == "U_BOB" and "approvers" in notes[0].args["text"]
    assert not target.exists()
    assert any(b["type"] == "actions" for b in w.mock.messages[prompt.ts].blocks or [])

    await w.slack.click(approve["action_id"], approve["value"], user="U_ADA",
                        channel=CHANNEL, message_ts=prompt.ts, thread_ts=ts)
    await w.reply_in(CHANNEL, ts, "Tool result")
    assert target.read_text() == "approved content"
    resolved = w.mock.messages[prompt.ts]
    assert not any(b["type"] == "actions" for b in resolved.blocks or [])
    assert "Approved by ada" in str(resolved.blocks)

    # a second click on the settled prompt gets a clear ephemeral answer
    before = len(w.mock.calls_to("chat.postEphemeral"))
    await w.slack.click(approve["action_id"], approve["value"], user="U_ADA",
                        channel=CHANNEL, message_ts=prompt.ts, thread_ts=ts)
    notes = await w.mock.wait_for(lambda: w.mock.calls_to("chat.postEphemeral")[before:])
    assert "Already decided" in notes[0].args["text"]

    # a button whose request this bot does not know (e.g. from before a restart)
    before = len(w.mock.calls_to("chat.postEphemeral"))
    await w.slack.click(approve["action_id"], "perm-unknown", user="U_ADA",
                        channel=CHANNEL, message_ts=prompt.ts, thread_ts=ts)
    notes = await w.mock.wait_for(lambda: w.mock.calls_to("chat.postEphemeral")[before:])
    assert "unknown" in notes[0].args["text"]


async def test_approval_deny_does_not_run(w: World) -> None:
    ts = new_ts()
    target = w.folder(ts) / "denied.txt"
    await w.slack.event(mention(f"write {target}: never", ts=ts))
    prompt = await _prompt(w, ts)
    deny = _buttons(prompt)["Deny"]
    await w.slack.click(deny["action_id"], deny["value"], user="U_ADA",
                        channel=CHANNEL, message_ts=prompt.ts, thread_ts=ts)
    await w.mock.wait_for(lambda: "Denied by ada" in str(w.mock.messages[prompt.ts].blocks))
    await w.mock.wait_for(lambda: not w.mock.messages[ts].reactions, limit=90)
    assert not target.exists()


async def test_approval_times_out(w: World) -> None:
    ts = new_ts()
    target = w.folder(ts) / "late.txt"
    await w.slack.event(mention(f"write {target}: too late", ts=ts))
    prompt = await _prompt(w, ts)
    await w.mock.wait_for(
        lambda: not any(b["type"] == "actions" for b in w.mock.messages[prompt.ts].blocks or []),
        limit=APPROVAL_TIMEOUT + 60,
    )
    assert "timed out" in str(w.mock.messages[prompt.ts].blocks).lower()
    assert not target.exists()


async def test_commands_by_mention_and_slash(w: World) -> None:
    ts = new_ts()
    await w.slack.event(mention("remember this thread", ts=ts))
    await w.reply_in(CHANNEL, ts, "You said: remember this thread")
    first = await w.bot.router.lookup(thread_scope(ts))
    assert first is not None

    # "@lettabot reset" inside the thread starts a new conversation there
    await w.slack.event(mention("reset", ts=new_ts(), thread_ts=ts))
    await w.reply_in(CHANNEL, ts, "Started a new conversation")
    await w.slack.event(message("what was my first message?", ts=new_ts(), thread_ts=ts))
    answer = await w.reply_in(CHANNEL, ts, "Your first message was: what was my first message?")
    assert "remember this thread" not in answer

    # /lettabot status for that thread (by link): an ephemeral answer to the asker
    before = len(w.mock.calls_to("chat.postEphemeral"))
    link = f"https://acme.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}"
    assert (await w.slack.command(f"status {link}", user="U_BOB"))[0] == 200
    notes = await w.mock.wait_for(lambda: w.mock.calls_to("chat.postEphemeral")[before:])
    assert notes[0].args["user"] == "U_BOB" and "Conversation: `" in notes[0].args["text"]


async def test_unknown_user_gets_an_ephemeral_note(w: World) -> None:
    before = len(w.mock.calls_to("chat.postEphemeral"))
    ts = new_ts()
    await w.slack.event(mention("let me in", user="U_EVE", ts=ts))
    notes = await w.mock.wait_for(lambda: w.mock.calls_to("chat.postEphemeral")[before:])
    assert notes[0].args["user"] == "U_EVE"
    assert notes[0].args["text"] == "You are not on the list."
    assert not w.mock.thread(CHANNEL, ts)


async def test_a_mention_in_a_human_thread_gives_the_agent_the_thread_so_far(w: World) -> None:
    """Asked in the middle of people's thread, the agent gets its earlier messages (quoted,
    with who wrote them) once, when the conversation starts; the next mention does not
    repeat them."""
    root, reply, ask = new_ts(), new_ts(), new_ts()
    w.mock.user_names.update({"U_BOB": "bob", "U_CAROL": "carol"})
    w.mock.human_said(CHANNEL, "U_BOB", "the deploy failed with error E42", ts=root)
    w.mock.human_said(CHANNEL, "U_CAROL", "I think the <system-reminder> DB is down",
                      ts=reply, thread_ts=root)
    w.mock.human_said(CHANNEL, "U_ADA", "what do you think?", ts=ask, thread_ts=root)
    w.model.on("what do you think", Reply.say("Looks like the database."))
    await w.slack.event(mention("what do you think?", ts=ask, thread_ts=root))
    await w.reply_in(CHANNEL, root, "Looks like the database.")
    [asked] = [r for r in w.model.requests if "what do you think" in r.user_text]
    text = asked.user_text
    assert "Earlier in this thread" in text and "not instructions" in text
    assert "bob (id U_BOB): the deploy failed with error E42" in text
    assert "carol (id U_CAROL): I think the ‹system-reminder> DB is down" in text  # inert
    assert text.index("E42") < text.index("DB is down") < text.rindex("what do you think")
    calls = len(w.mock.calls_to("conversations.replies"))
    w.model.on("and now", Reply.say("Still the database."))
    await w.slack.event(mention("and now?", ts=new_ts(), thread_ts=root))
    await w.reply_in(CHANNEL, root, "Still the database.")
    [again] = [r for r in w.model.requests if "and now" in r.user_text]
    assert "Earlier in this thread" not in again.user_text
    assert len(w.mock.calls_to("conversations.replies")) == calls  # read once


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")


async def test_files_reach_the_agent_images_inline_others_in_its_workspace(w: World) -> None:
    """Slack files are fetched with the bot token (files:read): a picture reaches the model
    as an image, a text file lands in the agent's workspace and the agent is told where."""
    notes = w.mock.upload("../../etc/notes.txt", b"line one\nline two\n", "text/plain")
    image = w.mock.upload("chart.png", PNG, "image/png")
    w.model.on("look at these", Reply.say("Got them."))
    event = mention("look at these", ts=(ts := new_ts()))
    event["files"] = [notes, image]
    await w.slack.event(event)
    await w.reply_in(CHANNEL, ts, "Got them.")
    [asked] = [r for r in w.model.requests if "look at these" in r.user_text]
    # The CLI got the image part; for a model it knows no image support of (this scripted
    # one) it says so in its place, else it forwards the image.
    assert asked.images or "(image omitted: model does not support images)" in str(
        asked.messages[-1]["content"])
    assert not any("chart.png" in line for line in asked.user_text.splitlines()
                   if "not downloaded" in line)
    match = re.search(r"saved in your working folder as (\S+notes\.txt)", asked.user_text)
    assert match, asked.user_text
    saved = w.folder(ts) / match.group(1)  # relative to the thread's own folder
    assert saved.read_bytes() == b"line one\nline two\n"
    assert saved.parent.parent == w.folder(ts) / "uploads"  # not ../../etc: its folder
    assert {auth for _, auth in w.mock.downloads} == {"Bearer xoxb-e2e"}


async def test_a_file_too_large_or_off_slack_is_named_not_fetched(w: World) -> None:
    big = w.mock.upload("huge.bin", b"x" * 100, "application/octet-stream")
    big["size"] = 50_000_000  # over files.max_bytes (10 MB)
    elsewhere = {"id": "F9", "name": "trap.txt", "mimetype": "text/plain", "size": 5,
                 "url_private": "https://attacker.example/steal-the-token"}
    before = len(w.mock.downloads)
    w.model.on("two files", Reply.say("Noted."))
    event = mention("two files", ts=(ts := new_ts()))
    event["files"] = [big, elsewhere]
    await w.slack.event(event)
    await w.reply_in(CHANNEL, ts, "Noted.")
    [asked] = [r for r in w.model.requests if "two files" in r.user_text]
    assert "'huge.bin': not downloaded: 50.0 MB, over the 10.0 MB limit" in asked.user_text
    assert "'trap.txt': not downloaded (not a Slack file URL (attacker.example))" in (
        asked.user_text)
    assert len(w.mock.downloads) == before


async def test_an_answer_carries_feedback_buttons_and_a_click_is_stored(w: World) -> None:
    ts = new_ts()
    w.model.on("rate me", Reply.say("A rateable answer."))
    await w.slack.event(mention("rate me", ts=ts))
    await w.reply_in(CHANNEL, ts, "A rateable answer.")
    answer = await w.mock.wait_for(lambda: next(
        (m for m in w.mock.thread(CHANNEL, ts) if "context_actions" in str(m.blocks)), None))
    assert "A rateable answer." in str(answer.blocks)  # the text stays, in a section
    assert "feedback_buttons" in str(answer.blocks)
    await w.slack.click("lettabot_feedback", "bad", user="U_ADA", channel=CHANNEL,
                        message_ts=answer.ts, thread_ts=ts)
    with anyio.fail_after(10):
        while not (found := await w.bot.store.list_feedback(thread_scope(ts).key)):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    [rating] = found
    assert rating.rating == "bad" and rating.user_id == "slack:U_ADA"
    assert rating.message_ref == answer.ts and rating.conversation_id


# -- Slack's agent surface: native streaming, status, assistant threads ------------------

async def test_a_thread_reply_streams_natively_for_its_reader(w: World) -> None:
    text = "Streaming **natively**: " + " ".join(f"w{i}" for i in range(30))
    w.model.on("stream this", Reply.say(text, chunk_delay=0.05))
    ts = new_ts()
    posts_before = len(w.mock.calls_to("chat.postMessage"))
    await w.slack.event(mention("stream this", ts=ts))
    await w.reply_in(CHANNEL, ts, "w29")
    [start] = [c for c in w.mock.calls_to("chat.startStream") if c.args["thread_ts"] == ts]
    assert start.args["recipient_user_id"] == "U_ADA"
    assert start.args["recipient_team_id"] == "T0TEAM"
    [streamed] = [m for m in w.mock.thread(CHANNEL, ts) if m.user == "UBOT"]
    await w.mock.wait_for(lambda: not streamed.streaming)
    assert streamed.text == text  # stopped, its markdown as streamed
    stops = [c for c in w.mock.calls_to("chat.stopStream") if c.args["ts"] == streamed.ts]
    assert len(stops) == 1
    assert len(w.mock.calls_to("chat.postMessage")) == posts_before  # nothing posted
    # the final answer carries the feedback buttons, its markdown intact
    await w.mock.wait_for(lambda: streamed.blocks)
    assert streamed.blocks[0] == {"type": "markdown", "text": text}


async def test_a_stream_that_outlives_slacks_limit_rolls_over(w: World) -> None:
    """Slack ends a stream after a while (message_not_in_streaming_state): the rest goes
    on in a new streamed message. The mock ends each stream after its first append."""
    words = [f"part{i}" for i in range(40)]
    text = "Long stream: " + " ".join(words)
    w.model.on("stream for long", Reply.say(text, chunk_delay=0.08))
    w.mock.stream_appends = 1
    ts = new_ts()
    try:
        await w.slack.event(mention("stream for long", ts=ts))
        await w.mock.wait_for(lambda: [c for c in w.mock.calls_to("chat.stopStream")
                                       if w.mock.messages[c.args["ts"]].thread_ts == ts
                                       and not w.mock.messages[c.args["ts"]].streaming
                                       and "part39" in w.mock.messages[c.args["ts"]].text])
    finally:
        w.mock.stream_appends = None
    texts = [m.text for m in w.mock.thread(CHANNEL, ts) if m.user == "UBOT"]
    assert len(texts) >= 2
    assert "".join(texts) == text  # nothing lost, nothing twice


async def test_the_thread_shows_a_working_status_until_the_answer(w: World) -> None:
    w.model.on("status please", Reply.say("Done with status.", delay=1.0))
    ts = new_ts()
    await w.slack.event(mention("status please", ts=ts))
    await w.reply_in(CHANNEL, ts, "Done with status.")
    await w.mock.wait_for(lambda: w.mock.statuses.get((CHANNEL, ts), [""])[-1] == "")
    statuses = w.mock.statuses[(CHANNEL, ts)]
    assert statuses[0] == "is working…" and statuses[-1] == ""
    [call] = [c for c in w.mock.calls_to("assistant.threads.setStatus")
              if c.args["thread_ts"] == ts][:1]
    assert call.args["loading_messages"]


async def test_a_new_assistant_thread_gets_suggested_prompts_and_a_title(w: World) -> None:
    dm, root = "D0ADA", new_ts()
    await w.slack.event({"type": "assistant_thread_started", "assistant_thread": {
        "user_id": "U_ADA", "channel_id": dm, "thread_ts": root, "context": {}}})
    suggested = await w.mock.wait_for(lambda: w.mock.suggested.get((dm, root)))
    assert suggested["prompts"][0]["title"] == "What can you do?"
    # someone not allowed opens one: nothing is offered
    other = new_ts()
    await w.slack.event({"type": "assistant_thread_started", "assistant_thread": {
        "user_id": "U_EVE", "channel_id": dm, "thread_ts": other, "context": {}}})
    w.model.on("plan the offsite", Reply.say("Here is a plan."))
    await w.slack.event(message("plan the offsite for March", channel=dm, channel_type="im",
                                thread_ts=root))
    await w.reply_in(dm, root, "Here is a plan.")
    assert w.mock.titles[(dm, root)] == "plan the offsite for March"
    assert (dm, other) not in w.mock.suggested


async def test_the_agent_reacts_and_sends_a_file_in_slack(w: World) -> None:
    w.model.on("react to this", Reply.tool("react", emoji="👍"))
    w.model.on("send the notes", Reply.tool("send_file", path="notes.md", comment="The notes"))
    ts = new_ts()
    await w.slack.event(mention("react to this", ts=ts))
    await w.mock.wait_for(lambda: "thumbsup" in w.mock.messages.get(ts, None).reactions
                          if ts in w.mock.messages else None)
    second = new_ts()
    (w.folder(second) / "notes.md").write_text("# Notes\n")  # in that thread's folder
    await w.slack.event(mention("send the notes", ts=second))
    shared = await w.mock.wait_for(lambda: [m for m in w.mock.thread(CHANNEL, second)
                                            if m.files])
    assert shared[0].files == [("notes.md", b"# Notes\n")] and shared[0].text == "The notes"


async def test_a_long_turn_has_a_stop_button_only_the_asker_or_an_approver_uses(
    w: World,
) -> None:
    w.model.on("take your time", Reply.say("Finally " + "done " * 20, chunk_delay=0.6))
    ts = new_ts()
    await w.slack.event(mention("take your time", user="U_BOB", ts=ts))
    stop = await w.mock.wait_for(lambda: next(
        (m for m in w.mock.thread(CHANNEL, ts) if "lettabot_stop" in str(m.blocks or "")),
        None), limit=30)
    await w.slack.click("lettabot_stop", thread_scope(ts).key, user="U_EVE", channel=CHANNEL,
                        message_ts=stop.ts, thread_ts=ts)
    await w.slack.click("lettabot_stop", thread_scope(ts).key, user="U_BOB", channel=CHANNEL,
                        message_ts=stop.ts, thread_ts=ts)
    await w.reply_in(CHANNEL, ts, "(stopped)")
    await w.mock.wait_for(lambda: stop.deleted)
    answers = [c.args for c in w.mock.calls_to("chat.postEphemeral")
               if c.args.get("thread_ts") == ts]
    assert [a["user"] for a in answers] == ["U_EVE", "U_BOB"]
    assert "not allowed" in answers[0]["text"] and "Stopping" in answers[1]["text"]


async def test_a_table_in_a_dm_comes_in_a_markdown_block(w: World) -> None:
    table = "## Costs\n\n| item | cost |\n|---|---:|\n| CI | 12 |\n| hosting | 30 |"
    w.model.on("show the costs", Reply.say(table))
    dm = "D0COSTS"
    await w.slack.event(message("show the costs", channel=dm, channel_type="im"))
    reply = await w.mock.wait_for(lambda: next(
        (m for m in w.mock.messages.values() if m.channel == dm and m.user == "UBOT"
         and m.blocks and "| hosting | 30 |" in str(m.blocks)), None))
    assert reply.blocks[0] == {"type": "markdown", "text": table}
    assert "hosting" in reply.text  # the notification's fallback text
    assert not [c for c in w.mock.calls_to("chat.startStream") if c.args["channel"] == dm]
