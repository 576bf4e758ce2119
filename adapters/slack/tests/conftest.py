"""Fixtures for the Slack adapter's tests: the mock Web API and a running adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_mock_api import MockSlack


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def mock_slack() -> AsyncIterator[MockSlack]:
    mock = MockSlack()
    await mock.start()
    try:
        yield mock
        # whatever the test did: nothing the bot posted, edited or shared unfurls
        assert mock.unfurling() == [], mock.unfurling()
    finally:
        await mock.stop()
