"""pytest fixtures: a scripted model server and an isolated, connected Letta home.

``scripted_model``  the session's :class:`ScriptedModelServer`, its rules cleared per test.
``letta_home``      a fresh copy of a connected CLI home; ``HOME`` and
                    ``LETTA_LOCAL_BACKEND_DIR`` point at it for the test's duration,
                    and the working directory is its ``work`` folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettabot.testing.letta_home import LettaHome, prepare_template
from lettabot.testing.scripted_model import ScriptedModelServer


@pytest.fixture(scope="session")
def _scripted_model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def scripted_model(_scripted_model_server: ScriptedModelServer) -> Iterator[ScriptedModelServer]:
    _scripted_model_server.reset()
    yield _scripted_model_server
    _scripted_model_server.reset()


@pytest.fixture(scope="session")
def _letta_home_template(
    tmp_path_factory: pytest.TempPathFactory, _scripted_model_server: ScriptedModelServer
) -> Path:
    return prepare_template(
        tmp_path_factory.mktemp("letta-template"), _scripted_model_server.base_url
    )


@pytest.fixture(scope="session")
def _node_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node-compile-cache")


@pytest.fixture
def letta_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripted_model: ScriptedModelServer,
    _letta_home_template: Path,
    _node_compile_cache: Path,
) -> LettaHome:
    home = LettaHome.copy_of(
        _letta_home_template,
        tmp_path / "letta-home",
        model=f"openai-compatible/{scripted_model.models[0]}",
    )
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    if "NODE_COMPILE_CACHE" not in os.environ:
        monkeypatch.setenv("NODE_COMPILE_CACHE", str(_node_compile_cache))
    monkeypatch.chdir(home.workdir)
    return home
