"""Fixtures: one real Synapse for the whole session (see ``synapse_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from synapse_server import Synapse


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
