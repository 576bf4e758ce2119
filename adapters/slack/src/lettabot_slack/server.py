"""Inbound transports: Socket Mode (a WebSocket Slack opens for us) or an HTTP endpoint.

HTTP: an aiohttp server on ``http_host:http_port``. Each POST is screened first
(:mod:`lettabot_slack.screen`: signature, timestamp within 5 minutes, a body of a shape Slack
sends — else 4xx, never the body in the log), then handed to Bolt; what no listener of ours
handles is acknowledged with 200.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from lettabot_slack.screen import screen

if TYPE_CHECKING:
    from lettabot_slack.adapter import SlackAdapter

__all__ = ["serve_http", "serve_socket"]

log = logging.getLogger("lettabot.slack")


async def serve_http(adapter: SlackAdapter) -> None:
    """Serve the Events API endpoint until cancelled."""
    settings = adapter.settings

    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()  # over client_max_size: aiohttp answers 413 itself
        rejection = screen(body, request.headers, secret)
        if rejection is not None:
            log.warning("slack: refused a request from %s: %s (HTTP %d)", request.remote,
                        rejection.reason, rejection.status)
            return web.Response(status=rejection.status, text=rejection.reason,
                                headers={"X-Slack-No-Retry": "1"})
        try:
            bolt_response = await adapter.app.async_dispatch(await to_bolt_request(request))
        except Exception as exc:  # never the body: it may hold anything
            log.error("slack: could not handle a request (%s: %s)", type(exc).__name__, exc)
            return web.Response(status=500, text="internal error")
        if bolt_response.status == 404:  # nothing of ours handles it: seen, not an error
            return web.Response(status=200)
        return await to_aiohttp_response(bolt_response)

    web_app = web.Application(client_max_size=1024 * 1024)
    web_app.router.add_post(settings.http_path, handle)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        addresses = runner.addresses
        adapter.http_port = int(addresses[0][1]) if addresses else settings.http_port
        log.info(
            "slack: HTTP events on http://%s:%s%s",
            settings.http_host,
            adapter.http_port,
            settings.http_path,
        )
        adapter.ready.set()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve_socket(adapter: SlackAdapter) -> None:
    """Hold a Socket Mode connection until cancelled (slack_sdk reconnects on its own)."""
    token = adapter.settings.app_token
    if token is None:
        raise RuntimeError("slack.app_token is required in socket mode")
    handler = AsyncSocketModeHandler(
        adapter.app, token.get_secret_value(), web_client=adapter.client
    )
    adapter.socket_client = handler.client
    try:
        await handler.connect_async()
        log.info("slack: connected (Socket Mode)")
        adapter.ready.set()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await handler.close_async()
