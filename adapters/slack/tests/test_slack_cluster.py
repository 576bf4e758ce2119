"""Three ``lettabot run`` processes behind one Slack app (HTTP mode), on one PostgreSQL
store: 50 threads × 4 messages delivered round-robin to the replicas' endpoints (with
retries, as Slack does); one replica is SIGKILLed mid-run and started again.

Every message is answered, in order within its thread, none crossed; only a message whose
turn was running on the killed replica may be answered twice, and its thread is told that
another replica took it over. The replicas share one App Server (``servers.urls``) on one
Letta home: see docs/scaling.md for why, and for a self-hosted Letta server instead.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import anyio
import pytest
from slack_harness import SIGNING_SECRET, free_port
from slack_mock_api import MockSlack, SlackSender, mention, message, new_ts
from slack_replicas import TOKEN, Replica, replica_settings, toml

from lettabot.testing.app_server import ExternalAppServer, external_app_server
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(900)]

THREADS, ROUNDS = int(os.environ.get("CLUSTER_THREADS", 50)), 4
CHANNELS = [f"C0CH{n}" for n in range(5)]  # Slack paces posts per channel: spread them
TAKEN_OVER = "another one is answering it now"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("lettabot_replicas") as url:
        yield url


@pytest.fixture(scope="module")
def shared_server(module_letta_home: LettaHome) -> Iterator[ExternalAppServer]:
    with external_app_server(TOKEN, module_letta_home.workdir) as server:
        yield server


@dataclass
class World:
    mock: MockSlack
    replicas: list[Replica]
    delivered: list[tuple[str, str]] = field(default_factory=list)

    async def deliver(self, event: dict[str, object], start: int) -> None:
        """To the replicas in turn from ``start``, until one answers 200 (as Slack retries
        a delivery that failed or timed out)."""
        event_id = f"Ev{uuid.uuid4().hex[:12]}"
        for attempt in range(12):
            replica = self.replicas[(start + attempt) % len(self.replicas)]
            sender = SlackSender(replica.events_url, SIGNING_SECRET)
            try:
                with anyio.fail_after(10):
                    status, _ = await sender.event(event, event_id=event_id,
                                                   retry_num=attempt or None)
                if status == 200:
                    self.delivered.append((replica.name, event_id))
                    return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                print(f"delivery to {replica.name} failed: {exc!r}", flush=True)
            await anyio.sleep(0.5)
        raise AssertionError(f"no replica took {event}")


@pytest.fixture(scope="module")
async def world(module_letta_home: LettaHome, pg_url: str, shared_server: ExternalAppServer,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    mock = MockSlack()
    mock.streaming = False  # post + edits: every reply is a chat.postMessage we can count
    await mock.start()
    root = tmp_path_factory.mktemp("replicas")
    replicas = []
    for n in range(3):
        folder = root / f"r{n}"
        folder.mkdir()
        replica = Replica(f"r{n}", folder / "lettabot.toml", free_port(), free_port(),
                          folder / "lettabot.log")
        settings = replica_settings(replica, folder, model=module_letta_home.model,
                                    store_url=pg_url, server_url=shared_server.url,
                                    slack_api=mock.api_url)
        settings["access"] = {"allowed_users": ["slack:U_ADA", "slack:U_BOB"],
                              "approvers": ["slack:U_ADA"]}
        settings["cluster"] = {"enabled": True, "replica": replica.name,
                               "heartbeat_seconds": 1, "takeover_seconds": 4}
        replica.config.write_text(toml(settings))
        replicas.append(replica)
    try:
        for replica in replicas:  # one after the other: the first creates the agent
            replica.start()
            await replica.ready()
        yield World(mock, replicas)
    finally:
        for replica in replicas:
            replica.stop()
        await mock.stop()


async def test_three_replicas_answer_every_message_once_in_order_through_a_kill(
    world: World, scripted_model: ScriptedModelServer,
) -> None:
    scripted_model.on(re.compile(r"^t\d+-m\d+$"),
                   lambda r: Reply.say(f"You said: {r.user_text}", chunk_delay=0.02))
    roots = [new_ts() for _ in range(THREADS)]
    killed = anyio.Event()

    async def thread(i: int) -> None:
        root, channel = roots[i], CHANNELS[i % len(CHANNELS)]
        await world.deliver(mention(f"t{i}-m0", ts=root, channel=channel), start=i)
        for m in range(1, ROUNDS):
            await anyio.sleep(0.2)
            await world.deliver(message(f"t{i}-m{m}", ts=new_ts(), thread_ts=root,
                                        channel=channel), start=i + m)

    def answered() -> int:
        return sum(1 for msg in world.mock.messages.values()
                   if msg.user == "UBOT" and msg.text.startswith("You said: t"))

    async def chaos() -> None:
        await world.mock.wait_for(lambda: answered() >= THREADS, limit=180)
        world.replicas[1].kill()  # mid-run: some of its turns are in flight
        killed.set()
        await anyio.sleep(8)  # its jobs are taken over meanwhile
        world.replicas[1].start()
        await world.replicas[1].ready()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        for i in range(THREADS):
            tg.start_soon(thread, i)
    assert killed.is_set()

    def complete() -> bool:
        print(f"\r{answered()} answers", end="", flush=True)
        for root in roots:
            texts = [m.text for m in world.mock.thread(CHANNELS[roots.index(root) % 5], root)
                     if m.user == "UBOT"]
            if sum(t.startswith("You said: t") for t in texts) < ROUNDS:
                return False
        return True

    try:
        await world.mock.wait_for(complete, limit=240)
    except TimeoutError:
        for i, root in enumerate(roots):
            print(i, [m.text[:40] for m in world.mock.messages.values()
                      if m.thread_ts == root or m.ts == root])
        raise
    await anyio.sleep(3)  # nothing more arrives

    twice = 0
    for i, root in enumerate(roots):
        texts = [m.text for m in world.mock.thread(CHANNELS[i % 5], root) if m.user == "UBOT"]
        answers = [t for t in texts if t.startswith("You said: ")]
        want = [f"You said: t{i}-m{m}" for m in range(ROUNDS)]
        assert all(a.startswith(f"You said: t{i}-") for a in answers), texts  # none crossed
        distinct = list(dict.fromkeys(answers))
        assert distinct == want, texts  # every message, in order
        if len(answers) > len(want):  # only a taken-over turn, and the thread was told
            twice += len(answers) - len(want)
            assert any(TAKEN_OVER in t for t in texts), texts
        else:
            assert answers == want, texts
    served = {name for name, _ in world.delivered}
    assert served == {"r0", "r1", "r2"}
    print(f"\n{len(world.delivered)} deliveries, {twice} answers repeated after the kill")


async def test_a_click_on_another_replica_approves_the_turn(
    world: World, module_letta_home: LettaHome,
) -> None:
    """The approval card was posted by the replica running the turn; the click is sent to
    another replica's endpoint, which hands it over (LISTEN/NOTIFY)."""
    target = module_letta_home.workdir / f"across-{uuid.uuid4().hex[:6]}.txt"
    root = new_ts()
    await world.deliver(mention(f"run: echo across > {target}", ts=root,
                                channel=CHANNELS[0]), start=0)
    card = await world.mock.wait_for(lambda: next(
        (m for m in world.mock.thread(CHANNELS[0], root)
         if "lettabot_approval" in str(m.blocks or "")), None), limit=90)
    request_id = next(e["value"] for b in card.blocks if b["type"] == "actions"
                      for e in b["elements"] if e["action_id"] == "lettabot_approve")
    owner = next(r for r in world.replicas
                 if re.search(rf"procrastinate\.worker\.{r.name}: Starting job "
                              rf".*{re.escape(target.name)}", r.log.read_text()))
    other = next(r for r in world.replicas if r is not owner)
    sender = SlackSender(other.events_url, SIGNING_SECRET)
    status, _ = await sender.click("lettabot_approve", request_id, user="U_ADA",
                                   channel=CHANNELS[0], message_ts=card.ts, thread_ts=root)
    assert status == 200
    await world.mock.wait_for(lambda: "Approved by" in card.text, limit=30)
    await world.mock.wait_for(lambda: target.exists(), limit=60)
    assert target.read_text() == "across\n"
