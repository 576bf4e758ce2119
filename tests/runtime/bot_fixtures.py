"""Shared fixtures for the runtime's end-to-end tests: one Letta home, store and Bot per
module (the real CLI's App Server + the scripted model), and the in-process test chat."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_home(
    tmp_path_factory: pytest.TempPathFactory,
    _letta_home_template: Path,
    _node_compile_cache: Path,
    _scripted_model_server: ScriptedModelServer,
) -> Iterator[LettaHome]:
    home = LettaHome.copy_of(
        _letta_home_template, tmp_path_factory.mktemp("bot") / "letta-home",
        model=f"openai-compatible/{_scripted_model_server.models[0]}",
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in home.env.items():
            mp.setenv(key, value)
        if "NODE_COMPILE_CACHE" not in os.environ:
            mp.setenv("NODE_COMPILE_CACHE", str(_node_compile_cache))
        mp.chdir(home.workdir)
        yield home


def make_config(home: LettaHome, data_dir: Path, **sections: Any) -> Config:
    """A config for ``home`` (its model), state in ``data_dir``; ``sections`` override."""
    letta = {"model": home.model, **sections.pop("letta", {})}
    approvals = {"timeout_seconds": 20, **sections.pop("approvals", {})}
    return Config(_env_file=None, data_dir=data_dir, letta=letta,  # type: ignore[call-arg]
                  approvals=approvals, **sections)


@pytest.fixture(scope="module")
async def module_bot(module_home: LettaHome) -> AsyncIterator[tuple[Bot, TestChat]]:
    config = make_config(module_home, module_home.path / "lettabot-data")
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        yield bot, chat
