"""Several replicas on one PostgreSQL store (``[cluster]``), in one process: the real CLI,
the scripted model, a real PostgreSQL. Every message is answered once, in order within its
scope, none crossed, whichever replica received it; a click on one replica decides a turn
running on another.

The replicas share one App Server (``servers.urls``) on one Letta home: several App Servers
on one local backend do not see each other's agents (each keeps them in memory), and a
self-hosted Letta server is not run here (see docs/scaling.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import TracingConfig
from lettabot.runtime.tracing import configure_tracing, shutdown_tracing
from lettabot.testing.app_server import external_app_server
from lettabot.testing.chat import Posted, TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from lettabot.testing.scripted_model import ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio

@pytest.fixture(scope="module")
def cluster_db() -> Iterator[str]:
    with fresh_database("lettabot_cluster") as url:
        yield url


@dataclass
class Cluster:
    bots: list[Bot]
    chats: list[TestChat]
    posts: list[Posted]

    def texts(self, key: str) -> list[str]:
        return [p.text for p in self.posts if p.scope.key == key]


@pytest.fixture(scope="module")
async def cluster(module_home: LettaHome, cluster_db: str) -> AsyncIterator[Cluster]:
    posts: list[Posted] = []
    async with AsyncExitStack() as stack:
        server = stack.enter_context(external_app_server("cluster-token", module_home.workdir))
        bots, chats = [], []
        for n in range(3):  # one after the other: the first creates the agent, all share it
            config = make_config(module_home, module_home.path / f"data-{n}",
                                 store={"url": cluster_db},
                                 servers={"count": 0, "urls": [{"url": server.url,
                                                                "token": "cluster-token"}]},
                                 cluster={"enabled": True, "replica": f"r{n}",
                                          "heartbeat_seconds": 1, "takeover_seconds": 5})
            bot = await stack.enter_async_context(Bot.open(config, grace=5, prewarm=False))
            chat = TestChat(bot, name="test")
            chat.posts = posts  # one platform: every replica posts into the same threads
            bot.add_adapter(chat)
            bots.append(bot)
            chats.append(chat)
        for bot in bots:
            assert bot.cluster is not None
            with anyio.fail_after(20):
                await bot.cluster.bus.ready.wait()
        yield Cluster(bots, chats, posts)


async def test_messages_round_robin_to_replicas_are_answered_once_in_order(
    cluster: Cluster,
) -> None:
    scopes = [cluster.chats[0].scope("C1", f"rr-{i}") for i in range(8)]
    n = 0
    for round_ in range(4):
        for i, scope in enumerate(scopes):
            chat = cluster.chats[n % 3]  # delivered to whichever replica the platform picks
            n += 1
            await chat.push(f"m{round_}-s{i}", scope=scope, message_id=f"rr-{i}-{round_}")
    expected = {s.key: [f"You said: m{r}-s{i}" for r in range(4)]
                for i, s in enumerate(scopes)}

    def all_answered() -> bool | None:
        return all(len(cluster.texts(k)) >= 4 for k in expected) or None

    await cluster.chats[0].wait_for(all_answered, within=180)
    await anyio.sleep(1)  # nothing more comes
    for key, want in expected.items():
        assert cluster.texts(key) == want, key  # once each, in order, none crossed
    ran_on = {c.name + str(i) for i, c in enumerate(cluster.chats)
              if any(d for d in c.done_count.values())}
    assert len(ran_on) >= 2  # the work was shared


async def test_a_redelivered_message_to_another_replica_is_answered_once(
    cluster: Cluster,
) -> None:
    scope = cluster.chats[0].scope("C1", "dedupe")
    first = await cluster.chats[0].push("only once please", scope=scope, event_id="Ev-c1")
    await cluster.chats[1].redeliver(first)  # Slack retried it to another replica
    await cluster.chats[2].redeliver(first)
    await cluster.chats[0].wait_for(lambda: cluster.texts(scope.key) or None, within=90)
    await anyio.sleep(2)
    assert cluster.texts(scope.key) == ["You said: only once please"]


async def test_a_turn_joins_its_messages_trace_through_the_inbox(cluster: Cluster) -> None:
    """[tracing]: the message's context travels in the inbox job, so its turn (on whichever
    replica) is in the message's trace, and its wait starts when it was accepted."""
    exporter = InMemorySpanExporter()
    configure_tracing(TracingConfig(enabled=True), exporter=exporter)
    try:
        scope = cluster.chats[1].scope("C1", "traced")
        await cluster.chats[1].push("traced through the inbox", scope=scope)
        await cluster.chats[0].wait_for(lambda: cluster.texts(scope.key) or None, within=90)

        def turn() -> ReadableSpan | None:
            return next((s for s in exporter.get_finished_spans() if s.name == "lettabot.turn"
                         and (s.attributes or {}).get("lettabot.scope") == scope.key), None)

        span = await cluster.chats[0].wait_for(turn, within=10)
        spans = exporter.get_finished_spans()
        (message,) = [s for s in spans if s.name == "lettabot.message"
                      and (s.attributes or {}).get("lettabot.scope") == scope.key]
        (queued,) = [s for s in spans if s.name == "lettabot.queued"
                     and (s.attributes or {}).get("lettabot.scope") == scope.key]
        assert span.context.trace_id == message.context.trace_id
        assert span.parent is not None and span.parent.span_id == message.context.span_id
        assert message.start_time is not None and queued.start_time is not None
        assert message.start_time <= queued.start_time <= (message.end_time or 0)
    finally:
        shutdown_tracing()


async def test_a_click_on_another_replica_decides_the_turn(
    cluster: Cluster, scripted_model: ScriptedModelServer, module_home: LettaHome,
) -> None:
    target = module_home.workdir / f"cluster-{uuid.uuid4().hex[:6]}.txt"
    scope = cluster.chats[0].scope("C1", "approve-across")
    await cluster.chats[0].push(f"run: echo across > {target}", scope=scope, user="U1")

    def owner() -> list[int] | None:  # a list: replica 0 is falsy
        for i, chat in enumerate(cluster.chats):
            if any(p.view.scope == scope for p in chat.prompts):
                return [i]
        return None

    [running_on] = await cluster.chats[0].wait_for(owner, within=90)
    prompt = next(p for p in cluster.chats[running_on].prompts if p.view.scope == scope)
    other = cluster.chats[(running_on + 1) % 3]
    refused = await other.click(prompt.request_id, "approve", user="U2")
    assert refused.status == "not_authorized"  # judged by the replica running the turn
    decided = await other.click(prompt.request_id, "approve", user="U1")
    assert decided.status == "decided"
    await cluster.chats[0].wait_for(lambda: target.exists() or None, within=60)
    assert target.read_text() == "across\n"


async def test_stop_on_another_replica_stops_the_turn(
    cluster: Cluster, scripted_model: ScriptedModelServer,
) -> None:
    from lettabot.testing.scripted_model import Reply

    scripted_model.on("a long answer please", Reply.say("long " * 200, chunk_delay=0.1))
    scope = cluster.chats[0].scope("C1", "stop-across")
    await cluster.chats[0].push("a long answer please", scope=scope, user="U1")

    def running_on() -> list[int] | None:  # a list: replica 0 is falsy
        for i, bot in enumerate(cluster.bots):
            if bot.scheduler.running_user(scope) is not None:
                return [i]
        return None

    [owner] = await cluster.chats[0].wait_for(running_on, within=60)
    other = cluster.chats[(owner + 1) % 3]
    refused = await other.command("stop", scope=scope, user="U2")
    assert "Only the person who asked" in refused.text
    stopped = await other.command("stop", scope=scope, user="U1")
    assert stopped.text == "Stopping the running turn."
    await cluster.chats[0].wait_for(
        lambda: any("(stopped)" in t for t in cluster.texts(scope.key)) or None, within=60)


async def test_one_process_on_postgresql_answers_once_in_order(
    module_home: LettaHome, cluster_db: str,
) -> None:
    """The single-process default with PostgreSQL instead of SQLite: the same guarantees."""
    config = make_config(module_home, module_home.path / "data-single",
                         store={"url": cluster_db})
    async with Bot.open(config, grace=5, prewarm=False) as bot:
        chat = TestChat(bot, name="single")
        bot.add_adapter(chat)
        scopes = [chat.scope("C1", f"single-{i}") for i in range(10)]
        async with anyio.create_task_group() as tg:
            for i, scope in enumerate(scopes):
                async def thread(i: int = i, scope: object = scope) -> None:
                    for m in range(4):
                        first = await chat.push(f"p{i}-{m}", scope=scope,  # type: ignore[arg-type]
                                                event_id=f"Ev-single-{i}-{m}")
                        if m == 0:
                            await chat.redeliver(first)  # a platform retry: answered once
                tg.start_soon(thread)
        for i, scope in enumerate(scopes):
            await chat.wait_done(scope, 4, within=120)
            assert chat.texts(scope) == [f"You said: p{i}-{m}" for m in range(4)]


async def test_a_forged_notify_decides_nothing(
    cluster: Cluster, scripted_model: ScriptedModelServer, module_home: LettaHome,
    cluster_db: str,
) -> None:
    """Any role that may connect may ``NOTIFY lettabot_bus``: a plausible payload without
    the replicas' signature is dropped; even a signed "decided" only makes the replica read
    the store, which still says pending. A real click on another replica still decides."""
    import json
    import time

    import asyncpg  # type: ignore[import-untyped]

    from lettabot.runtime.cluster.bus import Bus
    from lettabot.runtime.cluster.inbox import libpq_url
    from lettabot.runtime.store import ApprovalStatus

    target = module_home.workdir / f"forged-{uuid.uuid4().hex[:6]}.txt"
    scope = cluster.chats[0].scope("C1", "forged-notify")
    await cluster.chats[0].push(f"run: echo forged > {target}", scope=scope, user="U1")

    def owner() -> list[int] | None:
        for i, chat in enumerate(cluster.chats):
            if any(p.view.scope == scope for p in chat.prompts):
                return [i]
        return None

    [running_on] = await cluster.chats[0].wait_for(owner, within=90)
    rid = next(p for p in cluster.chats[running_on].prompts
               if p.view.scope == scope).request_id
    bot = cluster.bots[running_on]
    assert bot.cluster is not None
    rejected = bot.cluster.bus.rejected
    click = {"request_id": rid, "decision": "approve", "user_id": "U1", "user_name": "U1"}
    forged = [
        json.dumps({"kind": "decide", "corr": "c1", "from": "r9", "data": click}),
        json.dumps({"kind": "decided", "corr": "c2", "from": "r9", "data": click}),
        "0" * 64 + "." + json.dumps({"kind": "decided", "corr": "c3", "from": "r9",
                                     "data": click, "ts": time.time(), "nonce": "n1"}),
    ]
    conn = await asyncpg.connect(libpq_url(cluster_db))
    try:
        for payload in forged:
            await conn.execute("SELECT pg_notify('lettabot_bus', $1)", payload)
    finally:
        await conn.close()
    await cluster.chats[0].wait_for(lambda: bot.cluster.bus.rejected >= rejected + 3 or None,  # type: ignore[union-attr]
                                    within=10)
    # A message signed with the real key still cannot invent a decision: the store decides.
    signer = Bus(libpq_url(cluster_db), "r9", key=bot.cluster.bus._key)
    try:
        reply = await signer.request("decided", {"request_id": rid, "user_name": "U1"},
                                     within=2)
    finally:
        await signer.close()
    assert reply is None
    await anyio.sleep(1)
    approval = await bot.store.get_approval(rid)
    assert approval is not None and approval.status is ApprovalStatus.PENDING
    assert not target.exists()
    decided = await cluster.chats[(running_on + 1) % 3].click(rid, "approve", user="U1")
    assert decided.status == "decided"
    await cluster.chats[0].wait_for(lambda: target.exists() or None, within=60)
    approval = await bot.store.get_approval(rid)
    assert approval is not None and approval.decided_by == "test:U1"


async def test_bus_messages_are_signed_and_a_replay_is_dropped(cluster_db: str) -> None:
    """Two bus ends agree on the key in the store; a captured message sent again is
    dropped (its nonce was heard), and so is one older than the window."""
    import asyncpg  # type: ignore[import-untyped]

    from lettabot.runtime.cluster.bus import CHANNEL, Bus
    from lettabot.runtime.cluster.inbox import libpq_url

    dsn = libpq_url(cluster_db)
    heard: list[dict[str, object]] = []

    async def ping(data: dict[str, object]) -> dict[str, object] | None:
        heard.append(data)
        return {"pong": data["n"]}

    a, b = Bus(dsn, "a"), Bus(dsn, "b")
    a.on("ping", ping)
    captured: list[str] = []
    spy = await asyncpg.connect(dsn)
    await spy.add_listener(CHANNEL, lambda *args: captured.append(args[-1]))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            tg.start_soon(b.run)
            with anyio.fail_after(10):
                await a.ready.wait()
                await b.ready.wait()
            assert a._key is not None and a._key == b._key  # one key, from the store
            assert await b.request("ping", {"n": 1}) == {"pong": 1}
            assert len(heard) == 1
            request = next(p for p in captured if '"ping"' in p)
            rejected = a.rejected
            await spy.execute("SELECT pg_notify($1, $2)", CHANNEL, request)  # a replay
            for _ in range(100):
                if a.rejected > rejected:
                    break
                await anyio.sleep(0.05)
            assert a.rejected == rejected + 1 and len(heard) == 1
            tg.cancel_scope.cancel()
    finally:
        await spy.close()
        await a.close()
        await b.close()
