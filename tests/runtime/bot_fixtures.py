"""Shared fixtures for the runtime's end-to-end tests: one Letta home, store and App
Server per module (the real CLI + the scripted model), bots on it, and the test chat."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config
from lettabot.runtime.logs import JSONFormatter, configure_logging
from lettabot.runtime.store import Store, open_store
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome

__all__ = [
    "BotMaker", "anyio_backend", "json_logs", "make_bot", "make_config", "module_bot",
    "module_home", "module_store",
]

BotMaker = Callable[..., Awaitable[tuple[Bot, TestChat]]]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_home(module_letta_home: LettaHome) -> LettaHome:
    return module_letta_home


def make_config(home: LettaHome, data_dir: Path, **sections: Any) -> Config:
    """A config for ``home`` (its model), state in ``data_dir``; ``sections`` override."""
    letta = {"model": home.model, **sections.pop("letta", {})}
    approvals = {"timeout_seconds": 30, **sections.pop("approvals", {})}
    # the tests' default: whoever starts a turn approves it (configured, as it must be)
    access = {"self_approve": True, **sections.pop("access", {})}
    return Config(_env_file=None, data_dir=data_dir, letta=letta,
                  approvals=approvals, access=access, **sections)


@pytest.fixture(scope="module")
async def module_store(module_home: LettaHome) -> AsyncIterator[Store]:
    async with open_store(str(module_home.path / "lettabot.db")) as store:
        yield store


@pytest.fixture(scope="module")
async def make_bot(module_home: LettaHome, module_store: Store) -> AsyncIterator[BotMaker]:
    """Open more bots on the module's store (so the same agent) and App Server; each gets
    a TestChat named ``name``. All are closed at the end of the module."""
    async with AsyncExitStack() as stack:
        async def make(name: str = "test", **sections: Any) -> tuple[Bot, TestChat]:
            config = make_config(module_home, module_home.path / "data", **sections)
            bot = await stack.enter_async_context(Bot.open(config, store=module_store, grace=5))
            chat = TestChat(bot, name=name)
            bot.add_adapter(chat)
            return bot, chat

        yield make


@pytest.fixture(scope="module")
async def module_bot(make_bot: BotMaker) -> tuple[Bot, TestChat]:
    """The module's default bot: no access limits, the turn's starter approves."""
    return await make_bot()


@pytest.fixture
def json_logs() -> Iterator[list[dict[str, object]]]:
    """The JSON log lines lettabot writes (``log_format = "json"``), parsed."""
    configure_logging("INFO", "json")
    root = logging.getLogger()
    [ours] = [h for h in root.handlers if getattr(h, "_lettabot", False)]
    lines: list[dict[str, object]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(self.format(record)))

    capture = Capture()
    capture.setFormatter(JSONFormatter())
    for f in ours.filters:
        capture.addFilter(f)
    root.addHandler(capture)
    try:
        yield lines
    finally:
        root.removeHandler(capture)
        root.removeHandler(ours)
