"""Socket Mode (the default): the adapter opens the connection through
``apps.connections.open`` with the app token, receives envelopes, and acks each one."""

from __future__ import annotations

import anyio
import pytest
from lettabot_slack import SlackAdapter
from slack_harness import RecordingBot, settings
from slack_mock_api import MockSlack, event_body, mention

pytestmark = pytest.mark.anyio


async def test_socket_mode_delivers_and_acks(mock_slack: MockSlack) -> None:
    bot = RecordingBot()
    config = settings(mock_slack, mode="socket", app_token="xapp-1-test", signing_secret=None)
    adapter = SlackAdapter(config, bot)
    async with anyio.create_task_group() as tg:
        tg.start_soon(adapter.run)
        with anyio.fail_after(20):
            await adapter.ready.wait()
        envelope = await mock_slack.socket_send(event_body(mention("over the socket")))
        with anyio.fail_after(20):
            while not bot.messages:
                await bot.changed.wait()
        await mock_slack.wait_for(
            lambda: any(a.get("envelope_id") == envelope for a in mock_slack.socket_acks), 20
        )
        tg.cancel_scope.cancel()
    [opened] = mock_slack.calls_to("apps.connections.open")
    assert opened.token == "xapp-1-test"
    assert bot.messages[0].text == "over the socket"
    assert bot.messages[0].mentioned
