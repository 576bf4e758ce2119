"""Property: no signed request, however malformed, gets a 5xx from the HTTP endpoint.

Random JSON shapes, types, nesting and encodings — events (``event_callback``,
``url_verification``, anything), interactivity forms (``payload=``), slash commands, retry
headers — all correctly signed, go through the real aiohttp server and slack-bolt to the real
listeners. Every answer must be 2xx or 4xx; afterwards the adapter still serves, and a valid
event is still answered. (A runtime that fails a valid event may still answer 5xx: that is
what makes Slack retry it. The :class:`RecordingBot` here never fails.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lettabot_slack import blocks
from slack_harness import SIGNING_SECRET, RecordingBot, running_adapter
from slack_mock_api import BOT_USER, TEAM, MockSlack, SlackSender, event_body, mention, message

# Keys Bolt or lettabot read somewhere: random dictionaries use them, so wrong types land
# where something looks.
KEYS = ["type", "subtype", "event", "event_id", "event_time", "team_id", "team", "user",
        "user_id", "channel", "channel_id", "channel_type", "ts", "thread_ts", "event_ts",
        "text", "bot_id", "files", "authorizations", "enterprise", "enterprise_id",
        "is_enterprise_install", "is_ext_shared_channel", "user_team", "actions",
        "action_id", "value", "block_id", "container", "message", "message_ts",
        "previous_message", "view", "callback_id", "app_installed_team_id", "command",
        "response_url", "response_urls", "challenge", "assistant_thread", "item", "id",
        "name", "url_private", "size", "mimetype", "function_data", "inputs",
        "function_execution_id", "bot_access_token", "channel_name", "trigger_id",
        "context_team_id", "context_enterprise_id", "api_app_id", "token", "ssl_check"]

TYPES = ["event_callback", "url_verification", "app_rate_limited", "block_actions",
         "interactive_message", "view_submission", "view_closed", "shortcut",
         "message_action", "block_suggestion", "dialog_submission", "dialog_suggestion",
         "dialog_cancellation", "workflow_step_edit", "app_mention", "message",
         "assistant_thread_started", "assistant_thread_context_changed", "function_executed",
         "app_home_opened", "reaction_added", "file_share", "bot_message", "message_changed"]

ACTION_IDS = [*blocks.ACTIONS, blocks.FEEDBACK_ACTION, blocks.STOP_ACTION, "someone_elses"]

text = st.text(max_size=12)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats() | text | st.sampled_from(TYPES + ACTION_IDS + KEYS))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | text, inner, max_size=5),
    max_leaves=25,
)


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"event": value}
    return value


deep = st.builds(_nested, st.integers(1, 3000), json_values)


def click(action_id: str) -> dict[str, Any]:
    ts = "1700000000.000100"
    return {
        "type": "block_actions",
        "user": {"id": "U_ADA", "username": "ada", "team_id": TEAM},
        "api_app_id": "A0APP", "token": "legacy-verification-token", "trigger_id": "1.2.x",
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0GENERAL",
                      "is_ephemeral": False, "thread_ts": ts},
        "team": {"id": TEAM, "domain": "acme"},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "message": {"type": "message", "ts": ts, "thread_ts": ts, "user": BOT_USER,
                    "text": "Approval needed"},
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        "actions": [{"action_id": action_id, "block_id": "b", "value": "slack:T:C:1.2",
                     "type": "button", "text": {"type": "plain_text", "text": "Approve"}}],
    }


def templates() -> list[dict[str, Any]]:
    return [
        event_body(mention("hi")),
        event_body(message("hi", channel="D0DM", channel_type="im", thread_ts="1.2")),
        event_body(message("hi", subtype="file_share",
                           files=[{"name": "a.txt", "url_private": "https://files.slack.com/a"}])),
        event_body({"type": "assistant_thread_started", "assistant_thread": {
            "user_id": "U_ADA", "channel_id": "D0DM", "thread_ts": "1.2"}}),
        {"type": "url_verification", "token": "t", "challenge": "abc"},
        {"type": "app_rate_limited", "team_id": TEAM, "minute_rate_limited": 1},
        *(click(a) for a in ACTION_IDS),
        {"type": "view_submission", "team": {"id": TEAM}, "user": {"id": "U_ADA"},
         "view": {"id": "V1", "callback_id": "cb", "type": "modal", "team_id": TEAM}},
        {"type": "shortcut", "callback_id": "cb", "user": {"id": "U_ADA"},
         "team": {"id": TEAM}, "trigger_id": "1"},
    ]


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """``template`` with a few values replaced by random JSON, deleted, or deeply nested."""
    doc = json.loads(json.dumps(template))
    for _ in range(draw(st.integers(0, 4))):
        # walk down a random path of the existing structure to a (container, key)
        parent: Any = doc
        key: Any = None
        while True:
            children = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
            if not children:
                break
            key = draw(st.sampled_from(children))
            child = parent[key]
            if not isinstance(child, (dict, list)) or not child or draw(st.booleans()):
                break
            parent = child
        if key is None:
            continue
        how = draw(st.sampled_from(["replace", "delete", "deep", "new key"]))
        if how == "delete":
            del parent[key]
        elif how == "deep":
            parent[key] = draw(deep)
        elif how == "new key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(json_values)
        else:
            parent[key] = draw(json_values)
    return doc


@dataclass
class Request:
    body: bytes
    content_type: str
    headers: dict[str, str]


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (RecursionError, ValueError):  # deeper than json can write: write it by hand
        return "[" * 5000 + "]" * 5000


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
retry_headers = st.fixed_dictionaries({}, optional={
    "X-Slack-Retry-Num": header_text | st.integers(-5, 10**12).map(str),
    "X-Slack-Retry-Reason": header_text | st.sampled_from(["http_timeout", "http_error"]),
})
json_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                              "Application/JSON", "application/json; charset=utf-16"])
form_types = st.sampled_from(["application/x-www-form-urlencoded",
                              "application/x-www-form-urlencoded; charset=UTF-8"])
encodings = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"])


def _encode(text_: str, encoding: str) -> bytes:
    return text_.encode(encoding, "replace")


@st.composite
def requests(draw: st.DrawFn) -> Request:
    kind = draw(st.sampled_from(["json", "json", "json", "payload", "payload", "command",
                                 "form", "bytes"]))
    doc = draw(st.sampled_from(templates()).flatmap(mutated) | json_values | deep)
    if kind == "json":
        body = _encode(_dumps(doc), draw(encodings))
        content_type = draw(json_types)
    elif kind == "payload":
        fields: list[tuple[str, str]] = [("payload", _dumps(doc))]
        fields += draw(st.lists(st.tuples(st.sampled_from(KEYS) | text, text), max_size=3))
        body = _encode(urlencode(fields), draw(encodings))
        content_type = draw(form_types)
    elif kind == "command":
        fields = [("command", draw(st.sampled_from(["/lettabot", "/other"]) | text)),
                  ("text", draw(text | st.sampled_from(["reset", "status https://x/archives/"
                                                        "C1/p1700000000000100"]))),
                  ("channel_id", draw(st.sampled_from(["C0GENERAL", "D0DM", ""]) | text)),
                  ("user_id", draw(st.sampled_from(["U_ADA"]) | text)),
                  ("team_id", TEAM)]
        fields += draw(st.lists(st.tuples(st.sampled_from(KEYS) | text, text), max_size=3))
        body = _encode(urlencode(draw(st.permutations(fields))), draw(encodings))
        content_type = draw(form_types)
    elif kind == "form":
        body = _encode(urlencode(draw(st.lists(st.tuples(st.sampled_from(KEYS) | text,
                                                         text), max_size=4))),
                       draw(encodings))
        content_type = draw(form_types)
    else:
        body = draw(st.binary(max_size=64))
        content_type = draw(json_types | form_types | st.sampled_from(["text/plain", ""]))
    return Request(body, content_type, draw(retry_headers))


@dataclass
class Live:
    portal: BlockingPortal
    sender: SlackSender
    bot: RecordingBot

    def send(self, request: Request) -> int:
        ts = str(int(time.time()))
        base = b"v0:" + ts.encode() + b":" + request.body
        headers = {**request.headers, "Content-Type": request.content_type,
                   "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": "v0=" + hmac.new(SIGNING_SECRET.encode(), base,
                                                         hashlib.sha256).hexdigest()}

        async def post() -> int:
            async with aiohttp.ClientSession() as session, session.post(
                self.sender.url, data=request.body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                await resp.read()
                return resp.status

        return self.portal.call(post)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with start_blocking_portal("asyncio") as portal:
        mock = portal.call(_started_mock)
        bot = portal.call(_bot)
        with portal.wrap_async_context_manager(running_adapter(mock, bot)) as (_, sender):
            yield Live(portal, sender, bot)
        portal.call(mock.stop)


async def _started_mock() -> MockSlack:
    mock = MockSlack()
    await mock.start()
    return mock


async def _bot() -> RecordingBot:
    return RecordingBot()


def test_no_signed_request_gets_a_5xx_and_the_adapter_keeps_serving(live: Live) -> None:
    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=requests())
    def garbage_is_never_a_5xx(request: Request) -> None:
        status = live.send(request)
        assert 200 <= status < 500, (status, request)

    garbage_is_never_a_5xx()

    status = live.send(Request(json.dumps(event_body(mention("after the garbage"))).encode(),
                               "application/json", {}))
    assert status == 200

    async def delivered() -> None:
        with anyio.fail_after(10):
            while "after the garbage" not in [m.text for m in live.bot.messages]:
                await live.bot.changed.wait()

    live.portal.call(delivered)
