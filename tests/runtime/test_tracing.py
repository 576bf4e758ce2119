"""``[tracing]``: a message's life as OpenTelemetry spans, through the real CLI's App Server
and the scripted model (spans read from the SDK's in-memory exporter, and from a local
OTLP/HTTP receiver for the configured exporter)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lettabot.runtime.adapter import AdapterLimits, MessageRef, RateLimited, Scope
from lettabot.runtime.bot import Bot
from lettabot.runtime.config import ConfigError, TracingConfig, load_config
from lettabot.runtime.render import ReplyStream
from lettabot.runtime.tracing import configure_tracing, shutdown_tracing
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker, make_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(TracingConfig(enabled=True), exporter=exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


def _hashed(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()[:16]


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def _turn_spans(exporter: InMemorySpanExporter, scope: Scope) -> list[ReadableSpan]:
    """The finished spans of the trace whose turn ran in ``scope`` (once the turn ended)."""
    with anyio.fail_after(20):
        while True:
            done = exporter.get_finished_spans()
            turns = [s for s in _named(done, "lettabot.turn")
                     if s.attributes and s.attributes.get("lettabot.scope") == scope.key]
            if turns:
                trace_id = turns[0].context.trace_id
                return [s for s in done if s.context.trace_id == trace_id]
            await anyio.sleep(0.05)


async def test_a_message_with_an_approved_tool_call_is_one_trace(
    make_bot: BotMaker, spans: InMemorySpanExporter, json_logs: list[dict[str, object]],
) -> None:
    bot, chat = await make_bot("traced")
    scope = chat.scope("C1", "traced")
    await chat.push("run: echo traced > traced.txt", scope=scope, user="U1", user_name="Ada")
    prompt = await chat.wait_prompt(scope)
    await anyio.sleep(0.3)  # the approval wait is a span of its own: give it a length
    await chat.click(prompt.request_id, "approve", user="U1", user_name="Ada")
    await chat.wait_done(scope)
    trace = await _turn_spans(spans, scope)

    (message,) = _named(trace, "lettabot.message")
    (queued,) = _named(trace, "lettabot.queued")
    (turn,) = _named(trace, "lettabot.turn")
    (tool,) = _named(trace, "lettabot.tool_call")
    (approval,) = _named(trace, "lettabot.approval")
    steps = _named(trace, "lettabot.model_step")
    posts = _named(trace, "lettabot.post")
    assert message.parent is None  # the root: the message as it arrived
    assert queued.parent is not None and queued.parent.span_id == message.context.span_id
    assert turn.parent is not None and turn.parent.span_id == message.context.span_id
    for child in (tool, *steps, *posts):
        assert child.parent is not None and child.parent.span_id == turn.context.span_id
    assert approval.parent is not None and approval.parent.span_id == tool.context.span_id
    assert len(steps) >= 2  # the call, then the answer after its result
    assert posts

    assert message.attributes is not None and turn.attributes is not None
    assert message.attributes["lettabot.outcome"] == "accepted"
    assert message.attributes["lettabot.user"] == _hashed("traced:U1")
    assert turn.attributes["lettabot.outcome"] == "completed"
    assert turn.attributes["lettabot.conversation_id"] == (
        (await bot.store.get_route(scope.key)).conversation_id)  # type: ignore[union-attr]
    assert str(turn.attributes["lettabot.agent_id"]).startswith("agent-")
    assert tool.attributes is not None and tool.attributes["lettabot.tool"] == "Bash"
    assert approval.attributes is not None
    assert approval.attributes["lettabot.decision"] == "allow"
    assert approval.attributes["lettabot.decided_by"] == _hashed("traced:U1")
    assert approval.end_time is not None and approval.start_time is not None
    assert approval.end_time - approval.start_time >= 250_000_000  # it lasted the wait
    everything = [v for s in trace for v in (s.attributes or {}).values()]
    assert "U1" not in everything and "traced:U1" not in everything  # ids hashed

    turn_trace = format(turn.context.trace_id, "032x")
    ended = [r for r in json_logs if str(r["message"]).startswith("turn completed")
             and r.get("scope") == scope.key]
    assert ended and ended[-1]["trace_id"] == turn_trace


async def test_a_rate_limited_post_is_one_span_with_its_retries(
    spans: InMemorySpanExporter,
) -> None:
    class Limited(TestChat):
        attempts = 0

        async def post(self, scope: Scope, text: str) -> MessageRef:
            self.attempts += 1
            if self.attempts == 1:
                raise RateLimited(0.1, "ratelimited")
            return await super().post(scope, text)

    chat = Limited(limits=AdapterLimits(can_edit=False))
    await ReplyStream(chat, chat.scope("C9", "limited")).finish("an answer")
    (post,) = _named(spans.get_finished_spans(), "lettabot.post")
    (retry,) = post.events
    assert retry.name == "retry" and retry.attributes is not None
    assert retry.attributes["lettabot.rate_limited"] is True
    assert retry.attributes["lettabot.delay_s"] == 0.1


class _Receiver(BaseHTTPRequestHandler):
    """A local OTLP/HTTP endpoint: keeps each export request and its headers."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
async def traced_bot(module_home: LettaHome, module_store: object,
                     receiver: str) -> AsyncIterator[tuple[Bot, TestChat]]:
    config = make_config(module_home, module_home.path / "data", tracing={
        "enabled": True, "endpoint": receiver, "service_name": "team-bot",
        "headers": {"x-api-key": "trace-secret"}})
    async with Bot.open(config, store=module_store, grace=5) as bot:  # type: ignore[arg-type]
        chat = TestChat(bot, name="otlp")
        bot.add_adapter(chat)
        yield bot, chat


async def test_the_configured_exporter_sends_the_trace_over_otlp(
    traced_bot: tuple[Bot, TestChat], receiver: str,
) -> None:
    bot, chat = traced_bot
    scope = chat.scope("C2", "otlp")
    await chat.push("hello over otlp", scope=scope, user="U7")
    await chat.wait_done(scope)
    await bot.conversations.close()
    await anyio.to_thread.run_sync(shutdown_tracing)  # what Bot.open's exit does: flush
    names: set[str] = set()
    services: set[str] = set()
    for headers, body in _Receiver.received:
        assert headers["x-api-key"] == "trace-secret"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services.update(a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                names.update(s.name for s in scope_spans.spans)
    assert services == {"team-bot"}
    assert {"lettabot.message", "lettabot.queued", "lettabot.turn", "lettabot.model_step",
            "lettabot.post"} <= names


async def test_spans_are_no_ops_unless_configured(
    module_bot: tuple[Bot, TestChat], json_logs: list[dict[str, object]],
) -> None:
    _, chat = module_bot
    scope = chat.scope("C3", "untraced")
    await chat.push("not traced", scope=scope)
    await chat.wait_done(scope)
    assert any(r.get("scope") == scope.key for r in json_logs)
    assert all("trace_id" not in r for r in json_logs)


def test_check_config_names_a_bad_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "lettabot.toml"
    path.write_text('[tracing]\nenabled = true\nendpoint = "collector:4318"\n')
    with pytest.raises(ConfigError, match=r"tracing\.endpoint: is not an http\(s\) URL"):
        load_config(path)
    path.write_text('[tracing]\nenabled = true\nsample_ratio = 2\n')
    with pytest.raises(ConfigError, match=r"tracing\.sample_ratio"):
        load_config(path)
