"""Operating a bot: /metrics counts what happened, /readyz says what is wrong, JSON logs
carry the turn, the startup summary says what runs where (real CLI, scripted model)."""

from __future__ import annotations

import json
import logging

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lettabot.runtime.bot import Bot
from lettabot.runtime.health import serve_health
from lettabot.runtime.logs import log_context
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker

pytestmark = pytest.mark.anyio


def _samples(bot: Bot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the bot's /metrics text, parsed as Prometheus would."""
    out = {}
    for family in text_string_to_metric_families(bot.metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _get(port: int, path: str) -> tuple[int, str]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(10):
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_count_turns_messages_and_approvals_by_outcome(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("metrics")
    scope = chat.scope("C1", "metrics")
    await chat.push("hello metrics", scope=scope, user="U1")
    await chat.wait_done(scope)
    target = bot.workspace_of(scope) / "metrics-approved.txt"
    await chat.push(f"run: echo m > {target}", scope=scope, user="U1")
    prompt = await chat.wait_prompt(scope)
    pending = _samples(bot)[("lettabot_approvals_pending", ())]
    await chat.click(prompt.request_id, "approve", user="U1")
    await chat.wait_done(scope, count=2)
    assert target.read_text() == "m\n"  # the approved command ran
    samples = _samples(bot)
    assert pending == 1 and samples[("lettabot_approvals_pending", ())] == 0
    assert samples[("lettabot_turns_total", (("outcome", "completed"),))] == 2
    assert samples[("lettabot_turn_duration_seconds_count", (("outcome", "completed"),))] == 2
    assert samples[("lettabot_messages_total",
                    (("adapter", "metrics"), ("result", "accepted")))] == 2
    assert samples[("lettabot_approvals_decided_total",
                    (("by", "person"), ("outcome", "approved")))] == 1
    assert samples[("lettabot_queue_depth", ())] == 0
    [(key, up)] = [(k, v) for k, v in samples.items() if k[0] == "lettabot_app_server_up"]
    assert up == 1 and dict(key[1]) == {"server": "0", "kind": "local"}
    rss = [v for k, v in samples.items() if k[0] == "lettabot_app_server_rss_bytes"]
    assert rss and rss[0] > 10_000_000  # node + the CLI: tens of MB at least
    bot.platform_error("metrics", 429)
    bot.platform_error("metrics", "channel_not_found")
    samples = _samples(bot)
    assert samples[("lettabot_platform_rate_limited_total", (("adapter", "metrics"),))] == 1
    assert samples[("lettabot_platform_api_errors_total",
                    (("adapter", "metrics"), ("status", "channel_not_found")))] == 1


async def test_readyz_is_ok_only_while_the_store_answers_and_adapters_are_connected(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("ready")
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_health, bot, "127.0.0.1", 0)
        status, body = await _get(port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["store"] == "ok"
        assert json.loads(body)["checks"]["adapter:ready"] == "ok"
        chat.connected = False
        status, body = await _get(port, "/readyz")
        assert status == 503 and json.loads(body)["checks"]["adapter:ready"] == "not connected"
        chat.connected = True

        async def broken_ping() -> None:
            raise RuntimeError("connection refused")

        real_ping = bot.store.ping
        bot.store.ping = broken_ping  # type: ignore[method-assign]
        try:
            status, body = await _get(port, "/readyz")
        finally:
            bot.store.ping = real_ping  # type: ignore[method-assign]
        assert status == 503 and "connection refused" in json.loads(body)["checks"]["store"]
        status, body = await _get(port, "/healthz")  # liveness is not readiness
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = await _get(port, "/metrics")
        assert status == 200 and "lettabot_turns_running" in body
        status, _ = await _get(port, "/nope")
        assert status == 404
        tg.cancel_scope.cancel()


async def test_json_logs_carry_the_turns_scope_conversation_and_id(
    make_bot: BotMaker, json_logs: list[dict[str, object]],
) -> None:
    _, chat = await make_bot("jsonlogs")
    scope = chat.scope("C1", "json-logs")
    await chat.push("hello json", scope=scope, user="U1")
    await chat.wait_done(scope)
    logging.getLogger("lettabot.test").info("outside a turn")
    with log_context(scope="s", turn="t"):
        logging.getLogger("lettabot.test").warning("inside")
    records = json_logs
    inside = [r for r in records if r["message"] == "inside"]
    assert inside and inside[0]["scope"] == "s" and inside[0]["turn"] == "t"
    outside = [r for r in records if r["message"] == "outside a turn"]
    assert outside and "scope" not in outside[0]
    turn_lines = [r for r in records if r.get("scope") == scope.key]
    assert turn_lines, records  # "turn completed in 0.4 s", with its scope
    assert all(r["turn"].startswith("jsonlogs:") for r in turn_lines)
    assert any(r.get("conversation", "").startswith("local-conv-") for r in turn_lines)
