from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from lettabot import sdk

TRANSPORTS = ["subprocess"]
if importlib.util.find_spec("lettabot.sdk._internal.transport.app_server"):
    TRANSPORTS.append("app_server")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per transport (it becomes the SDK's default)."""
    sdk.set_default_transport(request.param)
    yield request.param
    sdk.set_default_transport(None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_idle_app_servers() -> Iterator[None]:
    """Each test's environment (HOME) gets its own App Server: stop the ones left idle."""
    yield
    from lettabot.sdk._internal.app_server.pool import stop_idle

    stop_idle()
