"""pytest fixtures: a scripted model server and an isolated, connected Letta home.

``scripted_model``  the session's :class:`ScriptedModelServer`, its rules cleared per test.
``letta_home``      a fresh copy of a connected CLI home; ``HOME`` and
                    ``LETTA_LOCAL_BACKEND_DIR`` point at it for the test's duration,
                    and the working directory is its ``work`` folder.
``module_letta_home`` the same for a whole module (share an App Server or a Bot).
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
    with ScriptedModelServer(models=("scripted", "scripted-large")) as server:
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


def _new_home(template: Path, dest: Path, model: ScriptedModelServer) -> LettaHome:
    return LettaHome.copy_of(template, dest, model=f"openai-compatible/{model.models[0]}")


def _activate(home: LettaHome, mp: pytest.MonkeyPatch, compile_cache: Path) -> None:
    """Point the CLI at ``home`` (HOME, backend dir) and work in its ``work`` folder."""
    for key, value in home.env.items():
        mp.setenv(key, value)
    if "NODE_COMPILE_CACHE" not in os.environ:
        mp.setenv("NODE_COMPILE_CACHE", str(compile_cache))
    mp.chdir(home.workdir)


@pytest.fixture
def letta_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripted_model: ScriptedModelServer,
    _letta_home_template: Path,
    _node_compile_cache: Path,
) -> LettaHome:
    home = _new_home(_letta_home_template, tmp_path / "letta-home", scripted_model)
    _activate(home, monkeypatch, _node_compile_cache)
    return home


@pytest.fixture(scope="module")
def module_letta_home(
    tmp_path_factory: pytest.TempPathFactory,
    _letta_home_template: Path,
    _node_compile_cache: Path,
    _scripted_model_server: ScriptedModelServer,
) -> Iterator[LettaHome]:
    """One home for a whole test module, so its tests can share one App Server or Bot."""
    home = _new_home(
        _letta_home_template,
        tmp_path_factory.mktemp("module") / "letta-home",
        _scripted_model_server,
    )
    with pytest.MonkeyPatch.context() as mp:
        _activate(home, mp, _node_compile_cache)
        yield home
