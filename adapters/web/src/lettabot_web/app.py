"""The HTTP side of the web chat — its listeners: one page, an event stream per tab,
JSON actions. Routes act through the :class:`BotAPI`, the :class:`Hub` and the uploads; what
the page sends becomes an :class:`InboundMessage` in :mod:`lettabot_web.events` (pure).

Routes::

    GET  /                 the page (``?token=`` sets the auth cookie, then redirects)
    GET  /static/<file>    its script and style sheet
    WS   /api/live?tab=    a WebSocket per tab: ``hello``, a ``snapshot``, then live changes
    POST /api/send         {tab, text, id}: a message (or ``/reset``, ``/status``, ... commands)
    POST /api/decide       {request_id, decision}: an approval button
    POST /api/reset        {tab}: a new conversation for the tab
    POST /api/stop         {tab}: interrupt the tab's running turn
    POST /api/upload       {tab, name, type, data (base64)}: a file for the next message
    POST /api/feedback     {tab, item, rating}: 👍 ("good") / 👎 ("bad") on an answer
    GET  /api/conversations             the user's conversations (tab ids), newest first
    POST /api/conversations/rename      {tab, title}: name one
    POST /api/new          {tab}: a new conversation, in a new tab id (the page switches to it)
    GET  /healthz          liveness (no auth)

Live updates use a WebSocket, not Server-Sent Events: browsers allow only six HTTP/1.1
connections per host, so a seventh tab holding an event stream would hang.

Security: every route but ``/healthz`` wants the token (query on the page, then a cookie;
or ``Authorization: Bearer``), compared in constant time — configured, or generated into the
data dir (see :func:`lettabot_web.settings.stored_token`). Only ``web.auth = "none"`` (loopback
only, warned at every start) serves without one; the Host header must then be a loopback name
(no DNS rebinding). POSTs must be JSON and, like the WebSocket, come from the page's own origin
(no cross-site requests from other pages in the browser).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from lettabot.runtime.adapter import BotAPI, HistoryEntry
from lettabot_web.events import ADAPTER_NAME, inbound_from_send, message_id_of, scope_for
from lettabot_web.hub import Hub, ItemKind
from lettabot_web.settings import WebSettings, is_loopback
from lettabot_web.state import WebState
from lettabot_web.uploads import MAX_UPLOAD, Uploads

__all__ = ["ADAPTER_NAME", "COMMANDS", "build_app", "scope_for"]

log = logging.getLogger("lettabot.web")

COMMANDS = ("reset", "status", "stop", "memory", "rules", "usage", "budget", "help")
MAX_TEXT = 20_000
MAX_BODY = 4 * MAX_TEXT + 1024
"""Bytes of a request body read at most (a message of MAX_TEXT characters fits, escaped)."""
_TAB = re.compile(r"[A-Za-z0-9_-]{6,64}")
_MSG_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _static(name: str) -> str:
    return resources.files("lettabot_web").joinpath("static", name).read_text("utf-8")


def build_app(settings: WebSettings, hub: Hub, bot: BotAPI,
              uploads: Uploads | None = None, sent: Uploads | None = None,
              state: WebState | None = None) -> Starlette:
    """The ASGI app for one adapter instance; ``sent`` holds the files the bot sent,
    ``state`` the conversations and rated answers kept across restarts."""
    uploads = uploads if uploads is not None else Uploads()
    sent = sent if sent is not None else Uploads()
    state = state if state is not None else WebState(None)
    cookie = f"lettabot_web_{settings.port}"
    page = _static("index.html")
    assets = {name: _static(name) for name in _STATIC}

    def presented_token(request: HTTPConnection) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.cookies.get(cookie)

    def refuse(request: HTTPConnection) -> Response | None:
        """Why this request may not proceed, as a response; None when it may."""
        if settings.loopback and settings.token is None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0]
            if host and not is_loopback(host):
                return PlainTextResponse("unknown host", status_code=421)
        if not settings.token_ok(presented_token(request)):
            return PlainTextResponse(
                "lettabot web chat: a token is required. Open this page as /?token=<web.token>.",
                status_code=401,
            )
        return None

    def same_origin(request: HTTPConnection) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser cross-site request (browsers send Origin on POST)
        return urlsplit(origin).netloc == request.headers.get("host")

    def guarded(
        handler: Callable[[Request], Awaitable[Response]], *, post: bool = False, auth: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            denied = refuse(request) if auth else None
            if denied is None and post:
                if not same_origin(request):
                    denied = PlainTextResponse("cross-origin request refused", status_code=403)
                elif request.headers.get("content-type", "").split(";")[0] != "application/json":
                    denied = PlainTextResponse("send application/json", status_code=415)
            if denied is not None:
                response = denied
            else:
                try:
                    response = await handler(request)
                except _BadRequest as exc:
                    response = JSONResponse({"error": str(exc)}, status_code=exc.status)
                except Exception:
                    # the details stay in the log: the page gets a reference, no internals
                    ref = uuid.uuid4().hex[:8]
                    log.exception("web chat: %s failed (ref %s)", request.url.path, ref)
                    response = JSONResponse(
                        {"error": f"something went wrong (ref {ref}; see lettabot's log)"},
                        status_code=500)
            response.headers.update(_SECURITY_HEADERS)
            return response

        return endpoint

    async def body(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
        """The JSON body, refused (413) past ``limit`` before more of it is read."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise _BadRequest("request body too large", 413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BadRequest("request body too large", 413)
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            data = json.loads(raw)
        except ValueError:
            raise _BadRequest("body is not JSON") from None
        if not isinstance(data, dict):
            raise _BadRequest("body must be a JSON object")
        return data

    def tab_of(value: Any) -> str:
        if not isinstance(value, str) or not _TAB.fullmatch(value):
            raise _BadRequest("tab: expected 6-64 letters, digits, _ or -")
        return value

    # pages -------------------------------------------------------------------

    async def index(request: Request) -> Response:
        query_token = request.query_params.get("token")
        if query_token is not None and settings.token is not None:
            if not settings.token_ok(query_token):
                return PlainTextResponse("lettabot web chat: wrong token.", status_code=401)
            response: Response = RedirectResponse("/", status_code=303)
            response.set_cookie(cookie, query_token, httponly=True, samesite="strict", path="/")
            return response
        denied = refuse(request)
        return denied or HTMLResponse(page)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return PlainTextResponse("not found", status_code=404)
        return Response(assets[name], media_type=_STATIC[name])

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    # live events -------------------------------------------------------------

    async def live(websocket: WebSocket) -> None:
        tab = websocket.query_params.get("tab") or ""
        if refuse(websocket) is not None or not same_origin(websocket) or not _TAB.fullmatch(tab):
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        await websocket.send_text(
            _json({"type": "hello", "demo": settings.demo, "user": settings.user_name})
        )
        if hub.needs_restore(tab):  # after a restart: the conversation's stored messages
            with anyio.move_on_after(10):
                try:
                    entries = await bot.history(scope_for(tab))
                except Exception:
                    log.warning("web: could not restore the history of tab %s", tab,
                                exc_info=True)
                    entries = []
                hub.restore(tab, restored(tab, entries))
        with hub.subscribe(tab) as receive:
            async with anyio.create_task_group() as tg:

                async def until_closed() -> None:
                    try:
                        while True:  # the page sends nothing; this notices it going away
                            await websocket.receive_text()
                    except (WebSocketDisconnect, RuntimeError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(until_closed)
                try:
                    async for event in receive:
                        await websocket.send_text(_json(event))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    pass
                tg.cancel_scope.cancel()
        if websocket.client_state == WebSocketState.CONNECTED:  # we are the one closing
            with (
                anyio.CancelScope(shield=True),
                contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError),
            ):
                await websocket.close(code=1001)

    def restored(tab: str, entries: list[HistoryEntry]
                 ) -> list[tuple[ItemKind, str, str | None, dict[str, Any]]]:
        """A conversation's stored messages as the page shows them: each turn's last answer
        offers 👍/👎 again, under the id (and with the rating) it had, when known."""
        kinds: list[ItemKind] = ["user" if e.role == "user" else "bot" for e in entries]
        ends = [n for n, kind in enumerate(kinds)
                if kind == "bot" and (n + 1 == len(kinds) or kinds[n + 1] == "user")]
        found = dict(zip(ends, state.match(tab, [entries[n].text for n in ends]), strict=True))
        out: list[tuple[ItemKind, str, str | None, dict[str, Any]]] = []
        for n, entry in enumerate(entries):
            if n not in found:
                out.append((kinds[n], entry.text, None, {}))
                continue
            item_id, rating = found[n] or (None, "offered")
            out.append((kinds[n], entry.text, item_id, {"feedback": rating}))
        return out

    # actions -----------------------------------------------------------------

    async def reset(tab: str) -> None:
        result = await bot.run_command(scope_for(tab), settings.user_id, "reset")
        hub.clear(tab)
        hub.add(tab, "system", result.text or "New conversation.", reset=True)
        state.untitle(tab)

    async def send(request: Request) -> Response:
        data = await body(request)
        tab = tab_of(data.get("tab"))
        text = data.get("text")
        files = data.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise _BadRequest("files: a list of upload ids")
        attachments = uploads.attachments(tab, files[:10])
        if not isinstance(text, str) or not (text.strip() or attachments):
            raise _BadRequest("text: write a message")
        if len(text) > MAX_TEXT:
            raise _BadRequest(f"text: at most {MAX_TEXT} characters", 413)
        message_id = data.get("id")
        if not isinstance(message_id, str) or not _MSG_ID.fullmatch(message_id):
            message_id = uuid.uuid4().hex
        command, _, args = text.strip().partition(" ")
        if command.startswith("/") and command[1:].lower() in COMMANDS:
            name = command[1:].lower()
            if name == "reset":
                await reset(tab)
            else:
                hub.add(tab, "user", text)
                result = await bot.run_command(scope_for(tab), settings.user_id, name, args.strip())
                hub.add(tab, "system", result.text)
            return JSONResponse({"ok": True, "command": name}, status_code=202)
        shown = "\n".join([text, *(f"📎 {a.name}" for a in attachments)]).strip()
        hub.add(tab, "user", shown, message_id=message_id_of(tab, message_id))
        state.touch(settings.user_id, tab, shown)  # listed among the conversations
        await bot.handle_message(inbound_from_send(
            tab, text, message_id, attachments,
            user_id=settings.user_id, user_name=settings.user_name))
        return JSONResponse({"ok": True}, status_code=202)

    async def decide(request: Request) -> Response:
        data = await body(request)
        request_id, decision = data.get("request_id"), data.get("decision")
        if not isinstance(request_id, str) or not request_id:
            raise _BadRequest("request_id: missing")
        if decision not in ("approve", "deny", "always"):
            raise _BadRequest("decision: one of approve, deny, always")
        outcome = await bot.decide_approval(
            request_id, decision, settings.user_id, settings.user_name
        )
        where = hub.approval(request_id)
        if outcome.status == "decided" and outcome.final_text and where:
            hub.update(*where, status=outcome.final_text)
        return JSONResponse(outcome.model_dump())

    async def reset_endpoint(request: Request) -> Response:
        data = await body(request)
        await reset(tab_of(data.get("tab")))
        return JSONResponse({"ok": True})

    async def feedback_endpoint(request: Request) -> Response:
        data = await body(request)
        tab, item, rating = tab_of(data.get("tab")), data.get("item"), data.get("rating")
        if not isinstance(item, str) or not hub.has(tab, item):
            raise _BadRequest("item: not an answer of this tab")
        if rating not in ("good", "bad"):
            raise _BadRequest("rating: good or bad")
        if not await bot.record_feedback(scope_for(tab), item, settings.user_id, rating):
            return JSONResponse({"error": "not allowed"}, status_code=403)
        hub.update(tab, item, feedback=rating)
        shown = hub.get(tab, item)
        state.rate(tab, item, rating, shown.text if shown is not None else "")
        return JSONResponse({"ok": True})

    async def conversations_endpoint(request: Request) -> Response:
        return JSONResponse({"conversations": [
            {"tab": c["tab"], "title": c.get("title") or "New conversation",
             "updated": c.get("updated")}
            for c in state.conversations(settings.user_id)]})

    async def rename_endpoint(request: Request) -> Response:
        data = await body(request)
        tab, title = tab_of(data.get("tab")), data.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 500:
            raise _BadRequest("title: write a name")
        if not state.rename(settings.user_id, tab, title):
            raise _BadRequest("no such conversation", 404)
        return JSONResponse({"ok": True})

    async def new_endpoint(request: Request) -> Response:
        """A new conversation is a new tab id (a new scope, with its own workspace folder):
        the one the page leaves stays in the list, to be reopened."""
        data = await body(request)
        tab = tab_of(data.get("tab"))
        if not hub.snapshot(tab):
            hub.add(tab, "system", "New conversation (the agent's memory is kept). "
                    "Earlier ones are under ☰.", reset=True)
        return JSONResponse({"ok": True})

    async def upload_endpoint(request: Request) -> Response:
        data = await body(request, limit=MAX_UPLOAD * 4 // 3 + 4096)
        tab, name, kind = tab_of(data.get("tab")), data.get("name"), data.get("type")
        content = data.get("data")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise _BadRequest("name: the file's name")
        if not isinstance(content, str):
            raise _BadRequest("data: the file, base64")
        try:
            raw = base64.b64decode(content, validate=True)
        except ValueError:
            raise _BadRequest("data: not base64") from None
        if len(raw) > MAX_UPLOAD:
            raise _BadRequest(f"the file is over {MAX_UPLOAD // 1_000_000} MB", 413)
        kind = kind if isinstance(kind, str) and re.fullmatch(r"[\w.+-]+/[\w.+-]+", kind) \
            else "application/octet-stream"
        upload_id = uploads.add(tab, name.strip(), kind, raw)
        return JSONResponse({"id": upload_id, "name": name.strip(), "size": len(raw)})

    async def file_endpoint(request: Request) -> Response:
        """A file the bot sent to a tab: always a download, never rendered in the page."""
        found = sent.get(request.path_params["file_id"], tab_of(request.query_params.get("tab")))
        if found is None:
            return PlainTextResponse("no such file (files are kept while lettabot runs)",
                                     status_code=404)
        name, _, data = found
        quoted = urllib.parse.quote(name, safe="")
        return Response(data, media_type="application/octet-stream", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}"})

    async def stop_endpoint(request: Request) -> Response:
        data = await body(request)
        result = await bot.run_command(scope_for(tab_of(data.get("tab"))), settings.user_id,
                                       "stop")
        return JSONResponse({"text": result.text})

    return Starlette(
        routes=[
            Route("/", guarded(index, auth=False)),
            Route("/static/{name}", guarded(static)),
            Route("/healthz", health),
            WebSocketRoute("/api/live", live),
            Route("/api/send", guarded(send, post=True), methods=["POST"]),
            Route("/api/decide", guarded(decide, post=True), methods=["POST"]),
            Route("/api/reset", guarded(reset_endpoint, post=True), methods=["POST"]),
            Route("/api/stop", guarded(stop_endpoint, post=True), methods=["POST"]),
            Route("/api/upload", guarded(upload_endpoint, post=True), methods=["POST"]),
            Route("/api/file/{file_id}", guarded(file_endpoint)),
            Route("/api/feedback", guarded(feedback_endpoint, post=True), methods=["POST"]),
            Route("/api/conversations", guarded(conversations_endpoint)),
            Route("/api/conversations/rename", guarded(rename_endpoint, post=True),
                  methods=["POST"]),
            Route("/api/new", guarded(new_endpoint, post=True), methods=["POST"]),
        ],
    )


def _json(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))
