"""Fixtures: a local fake Discord (REST + gateway on 127.0.0.1) and its world."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from discord_helpers import RecordingBot, World
from lettabot_discord.testing import FakeDiscord


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    try:
        with server.patch_discord():
            yield server
        # whatever the test did: no message went out or was edited with link previews on
        assert server.unsuppressed() == [], server.unsuppressed()
    finally:
        await server.stop()


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    guild = fake.guild()
    return World(
        fake=fake,
        guild=guild,
        channel=fake.channel(guild, "general"),
        other=fake.channel(guild, "random"),
        ada=fake.user("ada"),
        bob=fake.user("bob"),
    )


@pytest.fixture
def bot() -> RecordingBot:
    return RecordingBot()
