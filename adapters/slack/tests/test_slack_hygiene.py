"""Event hygiene on the HTTP endpoint, tried as an attacker and as Slack's retries would:
bad input is 4xx before anything parses it (never a 500 with a traceback), a rejected body
never reaches the log, and events the bot does not handle are acknowledged with 200 so
Slack neither retries them nor disables the subscription."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_harness import RecordingBot, running_adapter
from slack_mock_api import MockSlack, SlackSender, event_body, mention

pytestmark = pytest.mark.anyio

MARKER = "BODY-MARKER-7f3a"


async def _raw(sender: SlackSender, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.post(
        sender.url, data=body, headers=headers
    ) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


def _signed(sender: SlackSender, body: bytes, content_type: str,
            ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sender.sign(body.decode("utf-8", "replace"), int(ts))
            if ts.isdigit() else "v0=00"}


async def test_bad_input_is_4xx_never_500_and_its_body_is_never_logged(
    mock_slack: MockSlack, caplog: pytest.LogCaptureFixture,
) -> None:
    bot = RecordingBot()
    caplog.set_level(logging.DEBUG)
    good = json.dumps(event_body(mention(f"hello {MARKER}"))).encode()
    async with running_adapter(mock_slack, bot) as (_, slack):
        cases: list[tuple[str, bytes, dict[str, str]]] = [
            ("no headers", good, {"Content-Type": "application/json"}),
            ("junk timestamp", good, {"Content-Type": "application/json",
                                      "X-Slack-Request-Timestamp": "soon",
                                      "X-Slack-Signature": "v0=abc"}),
            ("huge timestamp", good, {"Content-Type": "application/json",
                                      "X-Slack-Request-Timestamp": "9" * 40,
                                      "X-Slack-Signature": "v0=abc"}),
            ("signature not hex", good, {"Content-Type": "application/json",
                                         "X-Slack-Request-Timestamp": str(int(time.time())),
                                         "X-Slack-Signature": "v0=\u00e9\u00e9"}),
            ("forged", good, {**_signed(slack, good, "application/json"),
                              "X-Slack-Signature": "v0=" + "0" * 64}),
        ]
        signed_bad = [
            ("not UTF-8", b"\xff\xfe" + MARKER.encode(), "application/json"),
            ("not JSON", MARKER.encode() + b"{", "application/json"),
            ("JSON not an object", json.dumps([MARKER]).encode(), "application/json"),
            ("JSON string", json.dumps(MARKER).encode(), "application/json"),
            ("form without payload", urlencode({"x": MARKER}).encode(),
             "application/x-www-form-urlencoded"),
            ("payload not JSON", urlencode({"payload": MARKER + "{"}).encode(),
             "application/x-www-form-urlencoded"),
            ("payload not an object", urlencode({"payload": json.dumps([MARKER])}).encode(),
             "application/x-www-form-urlencoded"),
            ("form not UTF-8", b"payload=%FF%FE" + MARKER.encode(),
             "application/x-www-form-urlencoded"),
            ("other content type", MARKER.encode(), "text/plain"),
            ("event_callback without event", json.dumps(
                {"type": "event_callback", "event_id": "Ev1", "note": MARKER}).encode(),
             "application/json"),
            ("event not an object", json.dumps(
                {"type": "event_callback", "event_id": "Ev2", "event": MARKER}).encode(),
             "application/json"),
        ]
        cases += [(name, body, _signed(slack, body, kind)) for name, body, kind in signed_bad]
        for name, body, headers in cases:
            status, response = await _raw(slack, body, headers)
            assert 400 <= status < 500, (name, status)
            assert response.get("X-Slack-No-Retry") == "1", name  # a retry would fail again
        status, _ = await slack.event(mention("still fine"))
        assert status == 200
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any(MARKER in r.getMessage() for r in caplog.records)
    assert [m.text for m in bot.messages] == ["still fine"]


async def test_events_the_bot_does_not_handle_are_acknowledged_with_200(
    mock_slack: MockSlack, caplog: pytest.LogCaptureFixture,
) -> None:
    bot = RecordingBot()
    caplog.set_level(logging.INFO)
    async with running_adapter(mock_slack, bot) as (_, slack):
        for event in ({"type": "reaction_added", "user": "U1", "reaction": MARKER},
                      {"type": "channel_created", "channel": {"id": "C9", "name": MARKER}},
                      {"type": "app_home_opened", "user": "U1", "tab": "home"}):
            status, _ = await slack.event(event)
            assert status == 200, event["type"]
        payload = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"},
                   "actions": [{"action_id": f"someone_elses_{MARKER}", "value": "x"}]}
        status, _ = await slack.post(urlencode({"payload": json.dumps(payload)}),
                                     "application/x-www-form-urlencoded")
        assert status == 200
        shortcut = {"type": "shortcut", "callback_id": "nope", "user": {"id": "U1"},
                    "team": {"id": "T1"}, "trigger_id": "1"}
        status, _ = await slack.post(urlencode({"payload": json.dumps(shortcut)}),
                                     "application/x-www-form-urlencoded")
        assert status == 200
    assert not bot.messages
    assert not any(MARKER in r.getMessage() for r in caplog.records)


async def test_the_reported_malformed_kinds_are_4xx_and_quiet(
    mock_slack: MockSlack, caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #24.6: each of these answered 500 (a traceback quoting the body in the log)."""
    bot = RecordingBot()
    caplog.set_level(logging.DEBUG)
    deep = "[" * 5000 + json.dumps(MARKER) + "]" * 5000
    clicks = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"},
              "actions": []}
    signed_bad = [
        ("deeply nested", '{"type": "event_callback", "event": ' + deep + "}",
         "application/json"),
        ("nested, in a payload", urlencode({"payload": '{"a": ' + deep + "}"}),
         "application/x-www-form-urlencoded"),
        ("user of the wrong type", json.dumps(event_body({**mention(MARKER), "user": [1]})),
         "application/json"),
        ("team of the wrong type", json.dumps({**event_body(mention(MARKER)), "team_id": 7,
                                               "authorizations": MARKER}), "application/json"),
        ("event_time not a number", json.dumps({**event_body(mention(MARKER)),
                                                "event_time": MARKER}), "application/json"),
        ("block_actions without actions", urlencode({"payload": json.dumps(clicks)}),
         "application/x-www-form-urlencoded"),
        ("a command form with an event", urlencode({"command": "/lettabot", "event": MARKER}),
         "application/x-www-form-urlencoded"),
    ]
    async with running_adapter(mock_slack, bot) as (_, slack):
        for name, body, kind in signed_bad:
            status, response = await _raw(slack, body.encode(), _signed(slack, body.encode(),
                                                                        kind))
            assert 400 <= status < 500, (name, status)
            assert response.get("X-Slack-No-Retry") == "1", name
        # out of range: a number, so the event is taken, without a time
        for event_time in (10**30, -(10**30), 1e308, -1):
            status, _ = await slack.post(json.dumps(
                {**event_body(mention(f"at {event_time}")), "event_time": event_time}),
                "application/json")
            assert status == 200, event_time
        status, _ = await slack.event(mention("still fine"))
        assert status == 200
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any(MARKER in r.getMessage() for r in caplog.records)
    assert [m.text for m in bot.messages][-1] == "still fine"
    assert all(m.received_at is None for m in bot.messages[:-1])


async def test_a_runtime_failure_on_a_valid_event_is_still_a_500_slack_retries(
    mock_slack: MockSlack, caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingBot(RecordingBot):
        async def handle_message(self, message: Any) -> None:
            raise RuntimeError("store unavailable")

    async with running_adapter(mock_slack, FailingBot()) as (_, slack):
        status, _ = await slack.event(mention("hello"))
    assert status == 500
    assert any("store unavailable" in r.getMessage() for r in caplog.records)
