"""Slack event payloads → InboundMessage: scopes, mentions, and what is ignored."""

from __future__ import annotations

from lettabot_slack.events import Filters, Identity, Ignored, inbound_from_event, slash_scope
from slack_mock_api import BOT_ID, BOT_USER, TEAM, event_body, mention, message

from lettabot.runtime.adapter import InboundMessage, Scope

ME = Identity(user_id=BOT_USER, bot_id=BOT_ID)


def normalise(event: dict[str, object], filters: Filters | None = None) -> InboundMessage | Ignored:
    return inbound_from_event(event_body(event), ME, filters or Filters())


def test_mention_text_is_cleaned_for_the_agent() -> None:
    msg = normalise(mention("look at <https://x.io/a|this> &amp; <https://y.io> &lt;3"))
    assert isinstance(msg, InboundMessage)
    assert msg.text == "look at this (https://x.io/a) & https://y.io <3"


def test_mention_inside_a_thread_joins_that_thread() -> None:
    msg = normalise(mention("reset", ts="1700.2", thread_ts="1700.1"))
    assert isinstance(msg, InboundMessage)
    assert msg.scope == Scope(adapter="slack", workspace=TEAM, channel="C0GENERAL", thread="1700.1")
    assert msg.text == "reset" and msg.mentioned


def test_channel_lists() -> None:
    only = Filters(allowed_channels=frozenset({"C0OK"}))
    assert isinstance(normalise(mention("x", channel="C0OK"), only), InboundMessage)
    assert isinstance(normalise(mention("x", channel="C0NOPE"), only), Ignored)
    deny = Filters(denied_channels=frozenset({"C0NOPE"}))
    assert isinstance(normalise(mention("x", channel="C0NOPE"), deny), Ignored)
    # DMs are not channels: the user allowlist (runtime) guards them
    assert isinstance(normalise(message("x", channel="D0ADA", channel_type="im"), only),
                      InboundMessage)


def test_ignored_events() -> None:
    for event in (
        message("own", user="", bot_id=BOT_ID, subtype="bot_message"),
        message("", subtype="message_deleted"),
        message("", subtype="channel_join"),
        message("x", subtype="message_changed"),
    ):
        assert isinstance(normalise(event), Ignored), event


def test_files_become_attachments() -> None:
    files = [{"name": "a.png", "url_private": "https://files.slack.com/a.png",
              "mimetype": "image/png", "size": 10}]
    msg = normalise(message("see file", channel="D0ADA", channel_type="im",
                            subtype="file_share", files=files))
    assert isinstance(msg, InboundMessage)
    assert msg.attachments[0].name == "a.png" and msg.attachments[0].content_type == "image/png"


def test_slash_scope_from_a_thread_link() -> None:
    body = {"channel_id": "C0GENERAL", "team_id": TEAM}
    link = "<https://acme.slack.com/archives/C0GENERAL/p1700000000000200?thread_ts=1700000000.000100&cid=C0GENERAL>"
    scope, rest = slash_scope(body, f"reset {link}")
    assert rest == "reset"
    assert scope.thread == "1700000000.000100" and scope.channel == "C0GENERAL"
    scope, rest = slash_scope(body, "status")
    assert scope.thread is None and rest == "status"
