"""Inbound transports: Socket Mode (a WebSocket Slack opens for us) or an HTTP endpoint.

HTTP: an aiohttp server on ``http_host:http_port``. Each POST is screened first
(:mod:`lettabot_slack.screen`: signature, timestamp within 5 minutes, a body of a shape Slack
sends — else 4xx, never the body in the log), then handed to Bolt; what no listener of ours
handles is acknowledged with 200.

What the screen lets through and Bolt or a listener still cannot read (an exception, or
Bolt's 500 for one) is answered 400 with ``X-Slack-No-Retry`` — the same bytes would fail
again — and logged as the exception's type and where it was raised, never its message (it
may quote the body). Only :class:`RetryLater` — the runtime (or Slack's API) failed on a
request we could read — is answered 500, so that Slack sends the event again.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from lettabot_slack.screen import screen
from lettabot_slack.settings import SlackConfig

__all__ = ["RetryLater", "on_bolt_error", "serve_http", "serve_socket"]

log = logging.getLogger("lettabot.slack")


class RetryLater(Exception):
    """A listener read the request but could not finish it for a reason of ours (the
    runtime or Slack's API failed): answered 500, so Slack retries."""


@dataclass
class _Handling:
    error: BaseException | None = None


_handling: ContextVar[_Handling | None] = ContextVar("lettabot_slack_handling", default=None)


def where(exc: BaseException) -> str:
    """``TypeError at events.py:123``: what failed and where, without the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    at = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return type(exc).__name__ + at


async def on_bolt_error(error: Exception) -> None:
    """Bolt's error handler (listeners and middleware): the request's handler decides the
    answer; Bolt's default handler would log the error's message, which may quote the body."""
    handling = _handling.get()
    if handling is not None:
        handling.error = handling.error or error
        return
    # Socket Mode: no HTTP answer to choose; just say what failed
    cause = error.__cause__ if isinstance(error, RetryLater) else None
    log.warning("slack: could not handle an event (%s%s)", where(error),
                f"; {where(cause)}: {cause}" if cause is not None else "")


async def serve_http(app: AsyncApp, settings: SlackConfig,
                     listening: Callable[[int], None]) -> None:
    """Serve the Events API endpoint until cancelled; ``listening(port)`` once bound."""

    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()  # over client_max_size: aiohttp answers 413 itself
        rejection = screen(body, request.headers, secret)
        if rejection is not None:
            log.warning("slack: refused a request from %s: %s (HTTP %d)", request.remote,
                        rejection.reason, rejection.status)
            return web.Response(status=rejection.status, text=rejection.reason,
                                headers={"X-Slack-No-Retry": "1"})
        handling = _Handling()
        token = _handling.set(handling)
        try:
            bolt_response = await app.async_dispatch(await to_bolt_request(request))
        except Exception as exc:
            handling.error = handling.error or exc
            bolt_response = None
        finally:
            _handling.reset(token)
        failed = handling.error
        if isinstance(failed, RetryLater):  # never the body: it may hold anything
            cause = failed.__cause__ or failed
            log.error("slack: could not handle a request (%s: %s); Slack will retry it",
                      where(cause), cause)
            return web.Response(status=500, text="internal error")
        if bolt_response is None or bolt_response.status >= 500 or failed is not None:
            what = where(failed) if failed is not None else f"HTTP {bolt_response.status}" \
                if bolt_response is not None else "no answer"
            log.warning("slack: refused a request from %s that could not be read (%s) "
                        "(HTTP 400)", request.remote, what)
            return web.Response(status=400, text="malformed request",
                                headers={"X-Slack-No-Retry": "1"})
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
        port = int(addresses[0][1]) if addresses else settings.http_port
        log.info("slack: HTTP events on http://%s:%s%s", settings.http_host, port,
                 settings.http_path)
        listening(port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve_socket(app: AsyncApp, settings: SlackConfig, client: AsyncWebClient,
                       connecting: Callable[[Any], None], connected: Callable[[], None]) -> None:
    """Hold a Socket Mode connection until cancelled (slack_sdk reconnects on its own):
    ``connecting(socket_client)`` before it connects, ``connected()`` once it is up."""
    token = settings.app_token
    if token is None:
        raise RuntimeError("slack.app_token is required in socket mode")
    handler = AsyncSocketModeHandler(app, token.get_secret_value(), web_client=client)
    connecting(handler.client)
    try:
        await handler.connect_async()
        log.info("slack: connected (Socket Mode)")
        connected()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await handler.close_async()
