"""Test doubles for Slack: a local Web API server and a signer of inbound requests.

:class:`MockSlack` answers the Web API methods the adapter uses on 127.0.0.1 (point an
``AsyncWebClient``'s ``base_url`` at :attr:`MockSlack.api_url`), records every call,
keeps the messages it was sent (with their edits and reactions), can answer the next call
of a method with 429 + ``Retry-After``, and serves a Socket Mode WebSocket.

:class:`SlackSender` sends Slack-shaped, properly signed HTTP requests to the adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import anyio
from aiohttp import web

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T0TEAM"


POSTING_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update",
                             "chat.startStream", "files.completeUploadExternal"})
"""Web API methods that put the bot's text in Slack."""


def _off(value: Any) -> bool:
    return value is False or str(value).lower() in ("0", "false")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None
    reactions: set[str] = field(default_factory=set)
    edits: int = 0
    deleted: bool = False
    user: str = BOT_USER
    """Who posted it (the bot, unless added by :meth:`MockSlack.human_said`)."""
    streaming: bool = False
    """Started with chat.startStream and not stopped yet."""
    stream_started: float = 0.0
    files: list[tuple[str, bytes]] = field(default_factory=list)
    """(name, bytes) of the files shared with it (files.completeUploadExternal)."""


class MockSlack:
    """A fake Slack Web API (and Socket Mode endpoint) on 127.0.0.1."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.user_names: dict[str, str] = {"U_ADA": "ada", "U_BOB": "bob", "U_EVE": "eve"}
        self._failures: dict[str, list[tuple[int, int]]] = {}
        self.slow: dict[tuple[str, str], float] = {}
        """(method, value of its ``user`` argument) → seconds to wait before answering."""
        self._ts = itertools.count(1)
        self._changed = anyio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.socket_acks: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_ready = anyio.Event()
        self.files: dict[str, tuple[bytes, str]] = {}
        self.downloads: list[tuple[str, str]] = []
        """(file path, the Authorization header sent) per file download."""
        self.bot_token = "xoxb-e2e"
        self.streaming = True
        """Whether chat.startStream works (False: answers ``not_allowed``, as a workspace
        without the feature)."""
        self.stream_seconds = 300.0
        """After this long a stream answers ``message_not_in_streaming_state``."""
        self.stream_appends: int | None = None
        """After this many appends (of text) a stream answers the same (None: no limit)."""
        self.statuses: dict[tuple[str, str], list[str]] = {}
        """(channel, thread_ts) → every assistant.threads.setStatus status, in order."""
        self.suggested: dict[tuple[str, str], dict[str, Any]] = {}
        self.titles: dict[tuple[str, str], str] = {}
        self._uploads: dict[str, bytes] = {}

    # lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_get("/files-pri/{file}/{name}", self._file)
        app.router.add_post("/upload/{file}", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # scripting -------------------------------------------------------------------

    def upload(self, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        """A file someone shared: the ``files`` entry of their message event."""
        file_id = f"{TEAM}-F{len(self.files) + 1:04d}"
        self.files[file_id] = (data, mimetype)
        return {"id": file_id, "name": name, "mimetype": mimetype, "size": len(data),
                "url_private": f"http://127.0.0.1:{self.port}/files-pri/{file_id}/"
                               f"{quote(name, safe='')}"}

    async def _file(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.downloads.append((request.match_info["file"], auth))
        if auth != f"Bearer {self.bot_token}":  # as Slack: the login page, not the file
            return web.Response(status=200, text="<html>Sign in</html>",
                                content_type="text/html")
        data, mimetype = self.files[request.match_info["file"]]
        return web.Response(body=data, content_type=mimetype)

    async def _upload(self, request: web.Request) -> web.Response:
        """Step 2 of files_upload_v2: the bytes, posted to the URL step 1 gave."""
        file_id = request.match_info["file"]
        if file_id not in self._uploads:
            return web.Response(status=404, text="unknown upload")
        self._uploads[file_id] = await request.read()
        return web.Response(status=200, text="OK - " + str(len(self._uploads[file_id])))

    def fail_next(self, method: str, status: int = 429, retry_after: int = 0) -> None:
        """Answer the next call of ``method`` with ``status`` (and ``Retry-After``)."""
        self._failures.setdefault(method, []).append((status, retry_after))

    def human_said(self, channel: str, user: str, text: str, *, ts: str,
                   thread_ts: str | None = None) -> None:
        """A message people posted (what ``conversations.replies`` returns with the bot's)."""
        self.messages[ts] = Message(channel, ts, text, thread_ts, user=user)

    # queries -------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def unfurling(self) -> list[Call]:
        """Calls that put the bot's text in Slack without ``unfurl_links`` and
        ``unfurl_media`` off: Slack would fetch their links, with no click."""
        return [c for c in self.calls if c.method in POSTING_METHODS
                and not (_off(c.args.get("unfurl_links")) and _off(c.args.get("unfurl_media")))]

    def thread(self, channel: str, thread_ts: str | None) -> list[Message]:
        """The bot's live messages in a thread, oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.channel == channel and m.thread_ts == thread_ts and not m.deleted
        ]

    async def wait_for(self, check: Callable[[], Any], limit: float = 60) -> Any:
        """Wait until ``check()`` is truthy (re-checked after every API call)."""
        with anyio.fail_after(limit):
            while True:
                result = check()
                if result:
                    return result
                await self._changed.wait()

    # the Web API -----------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.content_type == "application/json":
            args.update(await request.json())
        elif request.method == "POST":
            args.update(await request.post())
        for key in ("blocks", "attachments", "files", "prompts", "loading_messages"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token and "token" in args:
            token = str(args.pop("token"))
        self.calls.append(Call(method, args, token))
        delay = self.slow.get((method, str(args.get("user", ""))))
        if delay:
            await asyncio.sleep(delay)
        try:
            failures = self._failures.get(method)
            if failures:
                status, retry_after = failures.pop(0)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=status,
                    headers={"Retry-After": str(retry_after)},
                )
            return web.json_response(self._answer(method, args))
        finally:
            self._changed.set()
            self._changed = anyio.Event()

    def _next_ts(self) -> str:
        return f"1700001000.{next(self._ts):06d}"

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team": "Acme", "user": "lettabot", "team_id": TEAM,
                    "user_id": BOT_USER, "bot_id": BOT_ID, "url": "https://acme.slack.com/"}
        if method == "chat.postMessage":
            ts = self._next_ts()
            channel = str(args["channel"])
            self.messages[ts] = Message(
                channel, ts, str(args.get("text", "")), args.get("thread_ts"), args.get("blocks")
            )
            return {"ok": True, "channel": channel, "ts": ts,
                    "message": {"text": args.get("text", ""), "ts": ts, "user": BOT_USER}}
        if method == "chat.update":
            msg = self.messages.get(str(args["ts"]))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.text = str(args.get("text", msg.text))
            if "blocks" in args:
                msg.blocks = args["blocks"]
            msg.edits += 1
            return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": msg.text}
        if method == "chat.delete":
            msg = self.messages.get(str(args["ts"]))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.deleted = True
            return {"ok": True, "channel": msg.channel, "ts": msg.ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method in ("reactions.add", "reactions.remove"):
            msg = self.messages.setdefault(
                str(args["timestamp"]), Message(str(args["channel"]), str(args["timestamp"]), "")
            )
            name = str(args["name"])
            if method == "reactions.add":
                if name in msg.reactions:
                    return {"ok": False, "error": "already_reacted"}
                msg.reactions.add(name)
            else:
                if name not in msg.reactions:
                    return {"ok": False, "error": "no_reaction"}
                msg.reactions.discard(name)
            return {"ok": True}
        if method == "users.info":
            user = str(args["user"])
            name = self.user_names.get(user, user.lower())
            return {"ok": True, "user": {"id": user, "name": name,
                                         "profile": {"display_name": name, "real_name": name}}}
        if method == "conversations.replies":
            channel, root = str(args["channel"]), str(args["ts"])
            found = sorted((m for m in self.messages.values() if m.channel == channel
                            and not m.deleted and (m.ts == root or m.thread_ts == root)),
                           key=lambda m: m.ts)
            limit = int(args.get("limit") or 1000)
            if not found:
                return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "has_more": len(found) > limit, "messages": [
                {"type": "message", "ts": m.ts, "thread_ts": m.thread_ts or m.ts,
                 "text": m.text, "user": m.user,
                 **({"bot_id": BOT_ID} if m.user == BOT_USER else {})}
                for m in found[:limit]]}  # oldest first, as Slack pages them
        if method == "files.getUploadURLExternal":
            file_id = f"F{len(self._uploads) + 1:05d}UP"
            self._uploads[file_id] = b""
            self.files[file_id] = (b"", "application/octet-stream")
            return {"ok": True, "file_id": file_id,
                    "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
                    "_name": str(args.get("filename", ""))}
        if method == "files.completeUploadExternal":
            shared = args["files"] if isinstance(args["files"], list) else json.loads(
                str(args["files"]))
            ts = self._next_ts()
            msg = Message(str(args.get("channel_id") or ""), ts,
                          str(args.get("initial_comment") or ""), args.get("thread_ts"))
            for f in shared:
                if f["id"] not in self._uploads:
                    return {"ok": False, "error": "file_not_found"}
                msg.files.append((str(f.get("title") or f["id"]), self._uploads[f["id"]]))
            self.messages[ts] = msg
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")}
                                          for f in shared]}
        if method == "chat.startStream":
            if not self.streaming:
                return {"ok": False, "error": "not_allowed"}
            if not args.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            ts = self._next_ts()
            self.messages[ts] = Message(str(args["channel"]), ts,
                                        str(args.get("markdown_text") or ""),
                                        str(args["thread_ts"]), streaming=True,
                                        stream_started=time.monotonic())
            return {"ok": True, "channel": args["channel"], "ts": ts}
        if method in ("chat.appendStream", "chat.stopStream"):
            msg = self.messages.get(str(args["ts"]))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            appending = bool(args.get("markdown_text"))
            over = (self.stream_appends is not None and appending
                    and msg.edits >= self.stream_appends)
            if not msg.streaming or over or \
                    time.monotonic() - msg.stream_started > self.stream_seconds:
                msg.streaming = False
                return {"ok": False, "error": "message_not_in_streaming_state"}
            msg.text += str(args.get("markdown_text") or "")
            msg.edits += appending
            if method == "chat.stopStream":
                msg.streaming = False
                if args.get("blocks"):
                    msg.blocks = args["blocks"]
            return {"ok": True, "channel": msg.channel, "ts": msg.ts}
        if method == "assistant.threads.setStatus":
            key = (str(args["channel_id"]), str(args["thread_ts"]))
            self.statuses.setdefault(key, []).append(str(args.get("status") or ""))
            return {"ok": True}
        if method == "assistant.threads.setSuggestedPrompts":
            key = (str(args["channel_id"]), str(args.get("thread_ts") or ""))
            prompts = args["prompts"]
            self.suggested[key] = {"title": args.get("title"), "prompts":
                                   prompts if isinstance(prompts, list) else json.loads(prompts)}
            return {"ok": True}
        if method == "assistant.threads.setTitle":
            self.titles[(str(args["channel_id"]), str(args["thread_ts"]))] = str(args["title"])
            return {"ok": True}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"}
        return {"ok": False, "error": "unknown_method"}

    # Socket Mode ---------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A1"}})
        self._socket_ready.set()
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(frame.data))
                self._changed.set()
                self._changed = anyio.Event()
        return ws

    async def socket_send(self, payload: dict[str, Any], kind: str = "events_api") -> str:
        """Deliver an envelope over the Socket Mode connection; returns its envelope id."""
        await self._socket_ready.wait()
        envelope_id = uuid.uuid4().hex
        await self._sockets[-1].send_json(
            {"envelope_id": envelope_id, "type": kind, "payload": payload,
             "accepts_response_payload": kind != "events_api", "retry_attempt": 0}
        )
        return envelope_id


# inbound traffic ---------------------------------------------------------------------

_ids = itertools.count(1)


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An ``event_callback`` envelope as Slack posts it."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


def new_ts() -> str:
    return f"{int(time.time())}.{next(_ids):06d}"


def mention(text: str, *, user: str = "U_ADA", channel: str = "C0GENERAL",
            ts: str | None = None, thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}",
             "ts": ts or new_ts(), "channel": channel, "team": TEAM, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(text: str, *, user: str = "U_ADA", channel: str = "C0GENERAL",
            channel_type: str = "channel", ts: str | None = None,
            thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {"type": "message", "user": user, "text": text, "ts": ts or new_ts(),
             "channel": channel, "channel_type": channel_type, "team": TEAM, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


class SlackSender:
    """Posts signed requests to the adapter's HTTP endpoint, as Slack does."""

    def __init__(self, url: str, signing_secret: str) -> None:
        self.url = url
        self.secret = signing_secret

    def sign(self, body: str, timestamp: int) -> str:
        base = f"v0:{timestamp}:{body}".encode()
        return "v0=" + hmac.new(self.secret.encode(), base, hashlib.sha256).hexdigest()

    async def post(self, body: str, content_type: str, *, retry_num: int | None = None,
                   timestamp: int | None = None, signature: str | None = None) -> tuple[int, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature or self.sign(body, ts),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with aiohttp.ClientSession() as session, session.post(
            self.url, data=body.encode(), headers=headers
        ) as resp:
            return resp.status, await resp.text()

    async def event(self, event: dict[str, Any], *, event_id: str | None = None,
                    retry_num: int | None = None, **kw: Any) -> tuple[int, str]:
        body = json.dumps(event_body(event, event_id=event_id))
        return await self.post(body, "application/json", retry_num=retry_num, **kw)

    async def click(self, action_id: str, request_id: str, *, user: str, channel: str,
                    message_ts: str, thread_ts: str | None) -> tuple[int, str]:
        """A ``block_actions`` payload: ``user`` clicked a button on message ``message_ts``."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0APP",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False, "thread_ts": thread_ts},
            "trigger_id": "123.456.abc",
            "team": {"id": TEAM, "domain": "acme"},
            "channel": {"id": channel, "name": "general"},
            "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts,
                        "user": BOT_USER, "bot_id": BOT_ID, "text": "Approval needed"},
            "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
            "actions": [{"action_id": action_id, "block_id": "lettabot_approval",
                         "text": {"type": "plain_text", "text": "Approve"},
                         "value": request_id, "type": "button", "action_ts": new_ts()}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def command(self, text: str, *, user: str = "U_ADA",
                      channel: str = "C0GENERAL") -> tuple[int, str]:
        """A ``/lettabot`` slash command."""
        body = urlencode({
            "token": "legacy-verification-token", "team_id": TEAM, "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user, "user_name": user.lower(), "command": "/lettabot", "text": text,
            "api_app_id": "A0APP", "response_url": "https://hooks.slack.invalid/commands/1",
            "trigger_id": "123.456.def",
        })
        return await self.post(body, "application/x-www-form-urlencoded")
