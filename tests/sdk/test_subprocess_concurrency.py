"""Many ``subprocess``-transport sessions started at once (issue #26, item 0).

CLI 0.34.12 numbers a new local conversation from a counter it reads from disk when
it starts, and writes ``~/.letta/settings.json`` by truncating it in place; so CLI
processes starting together hand out the same ``local-conv-<n>`` and read one another's
half-written settings (and then write their defaults over them). These tests start
many sessions at once, in one process and in several, and check that every session got
a conversation of its own, every reply is its own, and the settings survived.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from typing import Any

import anyio
import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SESSIONS = 40


def _settings(home: LettaHome) -> dict[str, Any]:
    path = home.path / ".letta" / "settings.json"
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def _seed_settings(home: LettaHome) -> dict[str, Any]:
    """Settings a user would have (a key the CLI knows and one it does not), saved."""
    path = home.path / ".letta" / "settings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["lettabotTestMarker"] = {"kept": True, "n": 7}
    data.setdefault("tokenStreaming", False)
    path.write_text(json.dumps(data, indent=2))
    return data


def _assert_settings_kept(home: LettaHome, before: dict[str, Any]) -> None:
    after = _settings(home)  # still parses
    lost = {k: v for k, v in before.items() if after.get(k) != v}
    assert not lost, f"settings.json lost or changed {sorted(lost)}"


async def _start_and_ask(agent_id: str, word: str) -> tuple[str, str]:
    async with sdk.create_session(agent_id, transport="subprocess") as session:
        result = await session.run_turn(word)
        conversation = session.conversation_id
    assert conversation
    return conversation, result.result or ""


async def test_sessions_started_at_once_get_their_own_conversations(
    letta_home: LettaHome,
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    before = _seed_settings(letta_home)
    results: dict[int, tuple[str, str]] = {}

    async def one(i: int) -> None:
        results[i] = await _start_and_ask(agent_id, f"hello from session {i}")

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for i in range(SESSIONS):
                tg.start_soon(one, i)

    conversations = [results[i][0] for i in range(SESSIONS)]
    shared = {c for c in conversations if conversations.count(c) > 1}
    assert not shared, f"{len(shared)} conversations shared by several sessions: {shared}"
    for i in range(SESSIONS):
        assert results[i][1] == f"You said: hello from session {i}"
    _assert_settings_kept(letta_home, before)
    # Each conversation holds its own message and no other session's.
    for i in (0, SESSIONS // 2, SESSIONS - 1):
        async with sdk.resume_session(conversations[i], transport="subprocess") as session:
            text = repr(await session.list_messages(order="asc"))
        assert f"hello from session {i}" in text
        others = [j for j in range(SESSIONS) if j != i and f"hello from session {j}'" in text]
        assert not others, f"conversation {conversations[i]} holds messages of sessions {others}"


_CHILD = textwrap.dedent(
    """
    import json, sys
    import anyio
    from lettabot import sdk

    async def main(agent_id, tag, n):
        out = {}
        async def one(i):
            word = f"hello from {tag} {i}"
            async with sdk.create_session(agent_id, transport="subprocess") as session:
                result = await session.run_turn(word)
                out[word] = [session.conversation_id, result.result]
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        print(json.dumps(out))

    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


async def test_processes_started_at_once_get_their_own_conversations(
    letta_home: LettaHome,
) -> None:
    """A bot and another program on one machine: the guarantee holds across processes."""
    agent_id = await sdk.create_agent(model=letta_home.model)
    before = _seed_settings(letta_home)
    per_child, children = 12, 3
    env = {**os.environ, **letta_home.env}
    outputs: dict[str, list[str]] = {}

    async def child(c: int) -> None:
        done = await anyio.run_process(
            [sys.executable, "-c", _CHILD, agent_id, f"child{c}", str(per_child)],
            cwd=str(letta_home.workdir), env=env, check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        outputs.update(json.loads(done.stdout.decode().strip().splitlines()[-1]))

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for c in range(children):
                tg.start_soon(child, c)
    assert len(outputs) == per_child * children
    conversations = [c for c, _ in outputs.values()]
    shared = {c for c in conversations if conversations.count(c) > 1}
    assert not shared, f"{len(shared)} conversations shared by several sessions: {shared}"
    for word, (_, reply) in outputs.items():
        assert reply == f"You said: {word}"
    _assert_settings_kept(letta_home, before)

