"""Faults a cluster must survive, on real ``lettabot run`` replicas (Slack in HTTP mode)
that reach PostgreSQL through a TCP proxy the test can cut (the shared server stays up for
the other tests): a replica frozen (SIGSTOP) longer than ``takeover_seconds`` and woken
again, and the database gone for longer than ``takeover_seconds``.

- A frozen-then-woken replica posts nothing of the turn another replica took over, does
  not finish (delete) the job the taker runs (the thread's next message waits for it),
  and does not exit: it registers its worker again and runs jobs.
- After the database was away, no replica exits (its heartbeat, its LISTEN connection and
  its job fetches fail meanwhile), no job is taken over from a live replica, and every
  message is answered once.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from slack_harness import SIGNING_SECRET, free_port
from slack_mock_api import MockSlack, SlackSender, mention, message, new_ts
from slack_replicas import TOKEN, Replica, replica_settings, toml

from lettabot.runtime.cluster.inbox import libpq_url
from lettabot.testing.app_server import ExternalAppServer, external_app_server
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from lettabot.testing.scripted_model import ChatRequest, Reply, ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(600)]

TAKEN_OVER = "another one is answering it now"
CHANNEL = "C0FAULTS"


class DatabaseProxy:
    """127.0.0.1:<port> → PostgreSQL on 127.0.0.1:5432, one thread pair per connection.
    :meth:`cut` drops every connection and refuses new ones (closed on accept) until
    :meth:`restore`: to the replicas, the database went away."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.down = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        self.down = True
        with self._lock:
            sockets = list(self._open)
        for s in sockets:
            self._drop(s)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("lettabot_faults") as url:
        yield url


@pytest.fixture(scope="module")
def proxy() -> Iterator[DatabaseProxy]:
    proxy = DatabaseProxy()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def shared_server(module_letta_home: LettaHome) -> Iterator[ExternalAppServer]:
    with external_app_server(TOKEN, module_letta_home.workdir) as server:
        yield server


@dataclass
class World:
    mock: MockSlack
    replicas: list[Replica]
    dsn: str
    """The database, directly (not through the proxy)."""
    delivered: list[str] = field(default_factory=list)

    async def deliver(self, event: dict[str, object], to: list[Replica] | None = None,
                      within: float = 60) -> None:
        """To the replicas in turn until one answers 200 (Slack retries a delivery that
        failed or timed out)."""
        targets = to or self.replicas
        event_id = f"Ev{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + within
        attempt = 0
        while time.monotonic() < deadline:
            replica = targets[attempt % len(targets)]
            sender = SlackSender(replica.events_url, SIGNING_SECRET)
            try:
                with anyio.fail_after(10):
                    status, _ = await sender.event(event, event_id=event_id,
                                                   retry_num=attempt or None)
                if status == 200:
                    self.delivered.append(replica.name)
                    return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            attempt += 1
            await anyio.sleep(0.5)
        raise AssertionError(f"no replica took {event}")

    def bot_texts(self, root: str) -> list[str]:
        return [m.text for m in self.mock.thread(CHANNEL, root) if m.user == "UBOT"]

    def everything_posted(self) -> list[str]:
        """Every text the bot ever sent (posts and edits), in order."""
        texts = []
        for call in self.mock.calls:
            text = call.args.get("text") or call.args.get("markdown_text")
            if isinstance(text, str):
                texts.append(text)
        return texts

    async def job(self, needle: str) -> asyncpg.Record | None:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchrow(
                "SELECT id, status, worker_id FROM procrastinate_jobs "
                "WHERE args->>'message' LIKE $1", f"%{needle}%")
        finally:
            await conn.close()


def running(replica: Replica, needle: str) -> bool:
    return bool(re.search(rf"procrastinate\.worker\.{replica.name}: Starting job "
                          rf".*{re.escape(needle)}", replica.log.read_text()))


async def until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.2)


def alive(replica: Replica) -> bool:
    return replica.process is not None and replica.process.poll() is None


@pytest.fixture(scope="module")
async def world(module_letta_home: LettaHome, pg_url: str, proxy: DatabaseProxy,
                shared_server: ExternalAppServer,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    mock = MockSlack()
    mock.streaming = False  # post + edits: every text the bot sends is a call we can read
    await mock.start()
    root = tmp_path_factory.mktemp("fault-replicas")
    through_proxy = re.sub(r"@127\.0\.0\.1:5432/", f"@127.0.0.1:{proxy.port}/", pg_url)
    assert through_proxy != pg_url
    replicas = []
    for n in range(2):
        folder = root / f"f{n}"
        folder.mkdir()
        replica = Replica(f"f{n}", folder / "lettabot.toml", free_port(), free_port(),
                          folder / "lettabot.log")
        settings = replica_settings(replica, folder, model=module_letta_home.model,
                                    store_url=through_proxy, server_url=shared_server.url,
                                    slack_api=mock.api_url)
        settings["cluster"] = {"enabled": True, "replica": replica.name,
                               "heartbeat_seconds": 1, "takeover_seconds": 4}
        replica.config.write_text(toml(settings))
        replicas.append(replica)
    try:
        for replica in replicas:  # one after the other: the first creates the agent
            replica.start()
            await replica.ready()
        yield World(mock, replicas, libpq_url(pg_url))
    finally:
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
            replica.stop()
        await mock.stop()


@pytest.mark.parametrize("stale", ["answered", "streaming"])
async def test_a_frozen_replica_wakes_without_a_stale_answer_or_an_exit(
    world: World, scripted_model: ScriptedModelServer, stale: str,
) -> None:
    """The replica running a turn is frozen (SIGSTOP) as the model gets its request; the
    other takes the job over and answers it (slowly); the frozen one is woken meanwhile,
    its model's answer complete in its socket, or still streaming. Nothing of it is
    posted, the job the taker runs stays the taker's (the thread's next message waits for
    it), and the woken replica stays up and runs jobs again."""
    m1, m2 = f"freeze-{stale}-m1", f"freeze-{stale}-m2"
    frozen: list[Replica] = []

    def first(request: ChatRequest) -> Reply:
        owner = next(r for r in world.replicas if running(r, m1))
        assert owner.process is not None
        owner.process.send_signal(signal.SIGSTOP)
        frozen.append(owner)
        if stale == "answered":
            return Reply.say(f"STALE answer to {m1}", delay=1.0)
        return Reply.say(f"STALE answer to {m1}. " * 12, delay=0.5, chunk_delay=0.6)

    scripted_model.on(m1, first, times=1)
    scripted_model.on(m1, Reply.say(f"FRESH answer to {m1}", delay=8.0))
    scripted_model.on(m2, Reply.say(f"answer to {m2}"))
    scripted_model.on(re.compile(rf"^{stale}-after-wake-\d+$"),
                      lambda r: Reply.say(f"You said: {r.user_text}"))
    root = new_ts()
    await world.deliver(mention(m1, ts=root, channel=CHANNEL))
    await until(lambda: frozen, 60, "the turn to reach the model")
    sleeper = frozen[0]
    taker = next(r for r in world.replicas if r is not sleeper)
    try:
        await world.deliver(message(m2, ts=new_ts(), thread_ts=root,
                                    channel=CHANNEL), to=[taker])
        # the job is taken over (takeover_seconds = 4) and runs on the taker
        await until(lambda: TAKEN_OVER in " ".join(world.bot_texts(root)), 30,
                    "the takeover notice")
        job = await world.job(m1)
        assert job is not None and job["status"] == "doing"
    finally:
        assert sleeper.process is not None
        sleeper.process.send_signal(signal.SIGCONT)
    await anyio.sleep(4)  # the woken replica has read its answer and finished its turn
    job = await world.job(m1)
    assert job is not None and job["status"] == "doing", job  # still the taker's
    assert not any(t.startswith("answer to") for t in world.bot_texts(root))  # m2 waits
    await until(lambda: any(f"answer to {m2}" in t for t in world.bot_texts(root)), 60,
                "the second message's answer")
    await anyio.sleep(2)
    texts = world.bot_texts(root)
    assert not any("STALE" in t for t in world.everything_posted()), texts
    answers = [t for t in texts if t.startswith(("FRESH", "STALE", "answer to"))]
    assert answers == [f"FRESH answer to {m1}", f"answer to {m2}"], texts
    assert alive(sleeper), sleeper.log.read_text()[-3000:]
    # the woken replica runs jobs again (its worker registered anew)
    before = sleeper.log.read_text().count("Starting job")
    for i in range(15):
        await world.deliver(mention(f"{stale}-after-wake-{i}", ts=new_ts(), channel=CHANNEL),
                            to=[sleeper])
        await anyio.sleep(1.5)
        if sleeper.log.read_text().count("Starting job") > before:
            break
    assert sleeper.log.read_text().count("Starting job") > before, \
        sleeper.log.read_text()[-3000:]
    assert alive(sleeper) and alive(taker)


async def test_replicas_outlive_the_database_going_away(
    world: World, scripted_model: ScriptedModelServer, proxy: DatabaseProxy,
) -> None:
    """PostgreSQL goes away for 12 s (takeover_seconds = 4) while a turn runs: no replica
    exits, no job is taken over from a replica that lived through it, the turn in flight
    is answered once, a message sent during the outage is answered once after it (the
    platform's retries got 500 until then), and the replicas keep working."""
    cut_at: list[float] = []

    def cut(request: ChatRequest) -> Reply:
        proxy.cut()
        cut_at.append(time.monotonic())
        return Reply.say("You said: outage-m1", delay=2.0)

    scripted_model.on("outage-m1", cut, times=1)
    scripted_model.on(re.compile(r"^outage-m\d+$"),
                      lambda r: Reply.say(f"You said: {r.user_text}"))
    for replica in world.replicas:
        assert alive(replica), replica.log.read_text()[-3000:]
    root1, root2 = new_ts(), new_ts()
    try:
        await world.deliver(mention("outage-m1", ts=root1, channel=CHANNEL))
        await until(lambda: cut_at, 60, "the turn to reach the model")

        async def during() -> None:
            await world.deliver(mention("outage-m2", ts=root2, channel=CHANNEL), within=90)

        async with anyio.create_task_group() as tg:
            tg.start_soon(during)
            await anyio.sleep(max(0.0, cut_at[0] + 12 - time.monotonic()))
            proxy.restore()
    finally:
        proxy.restore()
    await until(lambda: any("outage-m2" in t for t in world.bot_texts(root2)), 90,
                "the answer to the message sent during the outage")
    await until(lambda: any("outage-m1" in t for t in world.bot_texts(root1)), 30,
                "the answer to the turn in flight")
    await anyio.sleep(8)  # a wrong takeover, or an exit, would show by now
    for replica in world.replicas:
        assert alive(replica), replica.log.read_text()[-3000:]
    assert world.bot_texts(root1) == ["You said: outage-m1"], world.bot_texts(root1)
    assert world.bot_texts(root2) == ["You said: outage-m2"], world.bot_texts(root2)
    for n, replica in enumerate(world.replicas):  # each still takes and runs messages
        root = new_ts()
        await world.deliver(mention(f"outage-m{3 + n}", ts=root, channel=CHANNEL),
                            to=[replica])
        want = [f"You said: outage-m{3 + n}"]
        await until(lambda root=root, want=want: world.bot_texts(root) == want, 60,
                    "an answer after the outage")
    for _ in range(30):  # every job finished (just after its answer)
        job = await world.job("outage-m")
        if job is None:
            break
        await anyio.sleep(0.5)
    assert job is None, job
