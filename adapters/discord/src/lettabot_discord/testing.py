"""A local fake Discord for tests: REST (``/api/v10``) and a gateway WebSocket on 127.0.0.1.

discord.py runs unchanged against it: point ``discord.http.Route.BASE`` at
:attr:`FakeDiscord.api_base` and ``DiscordWebSocket.DEFAULT_GATEWAY`` at
:attr:`FakeDiscord.gateway_url` (:meth:`FakeDiscord.patch_discord` does both). Tests then
act as users — :meth:`say`, :meth:`click`, :meth:`slash` send gateway events shaped as
Discord documents them — and read what the bot did from :attr:`messages` (every message
with its edits), :attr:`calls` (every REST call) and :attr:`responses` (interaction
callbacks). :meth:`fail` makes chosen REST calls answer with an error.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket

__all__ = ["SUPPRESS_EMBEDS", "Call", "FakeDiscord"]

Json = dict[str, Any]
T = TypeVar("T")
_EPHEMERAL = 1 << 6
SUPPRESS_EMBEDS = 1 << 2
"""The message flag that turns link previews off."""
_ALL_PERMISSIONS = str((1 << 50) - 1)


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    body: Any
    status: int = 200


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only for exactly "application/json" (no charset)
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeDiscord:
    """One bot user, guilds with text channels and threads, users, DMs, interactions."""

    calls: list[Call] = field(default_factory=list)
    messages: dict[int, Json] = field(default_factory=dict)
    """Every message by id, as it is now (edits applied), in the order they were made."""
    edits: dict[int, list[str]] = field(default_factory=dict)
    """Each message's contents after every edit, in order."""
    responses: list[Json] = field(default_factory=list)
    """Interaction callbacks: ``{"interaction": id, "type": n, "data": {...}}``."""
    commands: dict[str, list[Json]] = field(default_factory=dict)
    """Application commands synced: ``"global"`` or the guild id → commands."""
    identify: list[Json] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self.app_id = self.new_id()
        self.bot = self._user("lettabot", bot=True, user_id=self.app_id)
        self.guilds: dict[int, Json] = {}
        self.channels: dict[int, Json] = {}
        self._failures: list[_Failure] = []
        self.deleted: set[int] = set()
        """Ids of messages the bot deleted (no longer in :meth:`bot_messages`)."""
        self.sent_files: list[tuple[int, str, bytes]] = []
        """(channel id, file name, bytes) of each file the bot sent."""
        self.reactions: dict[int, list[str]] = {}
        """Message id → the emoji the bot added, in order."""
        self.attachments: dict[str, tuple[bytes, str]] = {}
        """Attachment id → (bytes, content type), served at ``/attachments/<id>/<name>``."""
        self._delays: list[tuple[str, re.Pattern[str], float]] = []
        self._clicked: dict[str, int] = {}  # interaction id -> the message clicked on
        self._tokens: dict[str, str] = {}  # interaction token -> interaction id
        self._sockets: list[web.WebSocketResponse] = []
        self._shard_of: dict[int, tuple[int, int]] = {}  # id(socket) -> [shard id, count]
        self._seq = 0
        self._changed = anyio.Event()
        self._connected = anyio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # world ---------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def _user(self, name: str, *, bot: bool = False, user_id: int | None = None) -> Json:
        return {
            "id": str(user_id or self.new_id()),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
        }

    def user(self, name: str, *, bot: bool = False) -> Json:
        return self._user(name, bot=bot)

    def guild(self, name: str = "team", *, shard: tuple[int, int] | None = None) -> Json:
        """A guild the bot is in; ``shard`` (id, count): one on that shard."""
        gid = self.new_id()
        if shard is not None:
            shard_id, count = shard
            gid = ((gid >> 22) + (shard_id - (gid >> 22)) % count) << 22 | (gid & 0x3FFFFF)
        guild = {
            "id": str(gid),
            "name": name,
            "icon": None,
            "owner_id": str(self.new_id()),
            "roles": [self._role(gid)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [],
            "threads": [],
            "members": [self._member(self.bot)],
            "member_count": 1,
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "system_channel_flags": 0,
        }
        self.guilds[gid] = guild
        return guild

    @staticmethod
    def _role(guild_id: int) -> Json:
        return {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": _ALL_PERMISSIONS,
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    @staticmethod
    def _member(user: Json) -> Json:
        return {
            "user": user,
            "roles": [],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }

    def channel(self, guild: Json, name: str = "general") -> Json:
        channel = {
            "id": str(self.new_id()),
            "type": 0,
            "guild_id": guild["id"],
            "name": name,
            "position": len(guild["channels"]),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        guild["channels"].append(channel)
        self.channels[int(channel["id"])] = channel
        return channel

    def thread(
        self, parent: Json, name: str, *, owner: Json | None = None, bot_member: bool = False
    ) -> Json:
        """A public thread (e.g. one a person opened before the bot was asked anything)."""
        owner = owner or self.bot
        tid = self.new_id()
        thread: Json = {
            "id": str(tid),
            "type": 11,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": owner["id"],
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "locked": False,
            },
        }
        if bot_member or owner["id"] == self.bot["id"]:
            thread["member"] = {
                "id": str(tid),
                "user_id": self.bot["id"],
                "join_timestamp": _now(),
                "flags": 0,
            }
        self.channels[tid] = thread
        self.guilds[int(parent["guild_id"])]["threads"].append(thread)
        return thread

    def dm_channel(self, user: Json) -> Json:
        channel: Json = {
            "id": str(self.new_id()),
            "type": 1,
            "recipients": [user],
            "last_message_id": None,
        }
        self.channels[int(channel["id"])] = channel
        return channel

    # server --------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _attachment(self, request: web.Request) -> web.Response:
        """The CDN: an attachment's bytes (no token needed, as on Discord)."""
        found = self.attachments.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and gateway at this server for the duration."""
        old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # waiting ---------------------------------------------------------------------

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, probe: Callable[[], T | None], seconds: float = 20) -> T:
        """Wait until ``probe()`` returns something truthy (re-checked on every change)."""
        with anyio.fail_after(seconds):
            while True:
                value = probe()
                if value:
                    return value
                changed = self._changed
                with anyio.move_on_after(0.5):
                    await changed.wait()

    async def connected(self, seconds: float = 20) -> None:
        """Wait until the bot identified on the gateway and got READY and its guilds."""
        with anyio.fail_after(seconds):
            await self._connected.wait()

    def bot_messages(self, channel: Json | int | str) -> list[Json]:
        cid = str(channel["id"] if isinstance(channel, dict) else channel)
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == cid and m["author"]["id"] == self.bot["id"]
            and int(m["id"]) not in self.deleted
        ]

    def rest(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    def message_calls(self) -> list[tuple[Call, Json]]:
        """Every call that sent or edited a message's content, with the message part of
        its body: posts, edits, interaction replies, followups."""
        out: list[tuple[Call, Json]] = []
        for call in self.calls:
            body = call.body if isinstance(call.body, dict) else {}
            path, method = call.path, call.method
            if ((method == "POST" and re.fullmatch(r"/channels/\d+/messages", path))
                    or (method == "PATCH" and re.fullmatch(r"/channels/\d+/messages/\d+", path))
                    or (method in ("POST", "PATCH")
                        and re.fullmatch(r"/webhooks/\d+/[^/]+(/messages/@original)?", path))):
                out.append((call, body))
            elif (re.fullmatch(r"/interactions/\d+/[^/]+/callback", path)
                  and body.get("type") in (4, 7)):  # a message, or an update of one
                out.append((call, body.get("data") or {}))
        return out

    def unsuppressed(self) -> list[Call]:
        """Message calls without ``SUPPRESS_EMBEDS``: Discord would fetch their links."""
        return [call for call, data in self.message_calls()
                if not int(data.get("flags") or 0) & SUPPRESS_EMBEDS]

    def fail(self, method: str, pattern: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching REST calls with ``status``."""
        self._failures.append(_Failure(method, re.compile(pattern), status, times))

    def delay(self, method: str, pattern: str, seconds: float) -> None:
        """Answer matching REST calls only after ``seconds`` (Discord under load)."""
        self._delays.append((method, re.compile(pattern), seconds))

    # gateway -----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 45000}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame["op"] == 1:
                    await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
                elif frame["op"] == 2:
                    self.identify.append(frame["d"])
                    shard_id, count = frame["d"].get("shard") or (0, 1)
                    self._shard_of[id(ws)] = (int(shard_id), int(count))
                    await self._send_ready(ws)
        finally:
            self._sockets.remove(ws)
            self._shard_of.pop(id(ws), None)
        return ws

    @staticmethod
    def shard_of(guild_id: int | str, count: int) -> int:
        """The shard Discord puts a guild on: ``(guild_id >> 22) % count``."""
        return (int(guild_id) >> 22) % count

    def _receives(self, ws: web.WebSocketResponse, guild_id: int | str | None) -> bool:
        """Whether ``ws``'s session gets the events of ``guild_id`` (DMs: shard 0)."""
        shard_id, count = self._shard_of.get(id(ws), (0, 1))
        if guild_id is None:
            return shard_id == 0
        return self.shard_of(guild_id, count) == shard_id

    async def _send_ready(self, ws: web.WebSocketResponse) -> None:
        shard = list(self._shard_of.get(id(ws), (0, 1)))
        guilds = [g for g in self.guilds.values() if self._receives(ws, g["id"])]
        await self._emit(
            ws,
            "READY",
            {
                "v": 10,
                "user": self.bot,
                "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
                "session_id": "fake-session",
                "resume_gateway_url": self.gateway_url,
                "shard": shard,
                "application": {"id": str(self.app_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild in guilds:
            await self._emit(ws, "GUILD_CREATE", guild)
        self._connected.set()
        self._touch()

    async def _emit(self, ws: web.WebSocketResponse, event: str, data: Json) -> None:
        self._seq += 1
        await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    async def dispatch(self, event: str, data: Json) -> None:
        """Send a gateway event to every connected session of its guild's shard (a DM's:
        shard 0), as Discord does; unsharded clients get everything."""
        guild_id = data.get("guild_id")
        if guild_id is None and event.startswith("GUILD_"):
            guild_id = data.get("id")
        for ws in list(self._sockets):
            if self._receives(ws, guild_id):
                await self._emit(ws, event, data)

    # acting as users -------------------------------------------------------------

    def _message(
        self,
        channel_id: str,
        author: Json,
        content: str,
        *,
        mentions: list[Json] | None = None,
        components: list[Json] | None = None,
        store: bool = True,
    ) -> Json:
        channel = self.channels.get(int(channel_id), {})
        msg: Json = {
            "id": str(self.new_id()),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": components or [],
        }
        if "guild_id" in channel:
            msg["guild_id"] = channel["guild_id"]
            msg["member"] = {k: v for k, v in self._member(author).items() if k != "user"}
        if store:
            self.messages[int(msg["id"])] = msg
            self._touch()
        return msg

    async def say(self, channel: Json, user: Json, content: str, *, mention: bool = False,
                  files: Sequence[tuple[str, bytes, str]] = ()) -> Json:
        """``user`` posts ``content`` in ``channel``; ``mention`` prefixes ``<@bot>``;
        ``files``: (name, bytes, content type) attached, served by the fake CDN."""
        if mention:
            content = f"<@{self.bot['id']}> {content}"
        mentions = [self.bot] if f"<@{self.bot['id']}>" in content else []
        msg = self._message(channel["id"], user, content, mentions=mentions)
        for name, data, content_type in files:
            attachment_id = str(self.new_id())
            self.attachments[attachment_id] = (data, content_type)
            url = f"http://127.0.0.1:{self.port}/attachments/{attachment_id}/{name}"
            msg["attachments"].append({
                "id": attachment_id, "filename": name, "size": len(data), "url": url,
                "proxy_url": url, "content_type": content_type})
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def redeliver(self, msg: Json) -> None:
        """The gateway delivers ``msg`` again (a resumed session replays its events)."""
        await self.dispatch("MESSAGE_CREATE", msg)

    def _interaction(
        self, kind: int, channel: Json, user: Json, data: Json, message: Json | None = None
    ) -> Json:
        payload: Json = {
            "id": str(self.new_id()),
            "application_id": str(self.app_id),
            "type": kind,
            "data": data,
            "channel_id": channel["id"],
            "channel": {k: v for k, v in channel.items() if k != "member"},
            "token": f"itoken-{self.new_id()}",
            "version": 1,
            "locale": "en-US",
            "app_permissions": _ALL_PERMISSIONS,
            "attachment_size_limit": 10 * 1024 * 1024,
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0 if "guild_id" in channel else 1,
        }
        if "guild_id" in channel:
            payload["guild_id"] = channel["guild_id"]
            payload["guild_locale"] = "en-US"
            payload["member"] = {**self._member(user), "permissions": _ALL_PERMISSIONS}
        else:
            payload["user"] = user
        if message is not None:
            payload["message"] = message
            self._clicked[payload["id"]] = int(message["id"])
        self._tokens[payload["token"]] = payload["id"]
        return payload

    async def click(self, message: Json, label: str, user: Json) -> Json:
        """``user`` clicks the button labelled ``label`` on ``message``; returns the interaction."""
        buttons = [b for row in message["components"] for b in row["components"]]
        button = next(b for b in buttons if b.get("label") == label)
        channel = self.channels[int(message["channel_id"])]
        interaction = self._interaction(
            3,
            channel,
            user,
            {"custom_id": button["custom_id"], "component_type": 2},
            message=message,
        )
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def slash(self, channel: Json, user: Json, command: str, sub: str) -> Json:
        """``user`` runs ``/command sub`` in ``channel``; returns the interaction."""
        scope = channel.get("guild_id", "global")
        synced = self.commands.get(scope, []) + self.commands.get("global", [])
        cmd = next(c for c in synced if c["name"] == command)
        data = {
            "id": cmd["id"],
            "name": command,
            "type": 1,
            "options": [{"name": sub, "type": 1, "options": []}],
        }
        if "guild_id" in channel:
            data["guild_id"] = channel["guild_id"]
        interaction = self._interaction(2, channel, user, data)
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    def responses_to(self, interaction: Json) -> list[Json]:
        return [r for r in self.responses if r["interaction"] == interaction["id"]]

    # REST ----------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json" and raw:
                body = json.loads(raw)
            elif raw:
                body = await self._multipart_json(request, raw)
        call = Call(request.method, path, body)
        self.calls.append(call)
        self._touch()
        for method, pattern, seconds in self._delays:
            if method == request.method and pattern.search(path):
                await anyio.sleep(seconds)
        for failure in self._failures:
            if failure.times and failure.method == request.method and failure.pattern.search(path):
                failure.times -= 1
                call.status = failure.status
                self._touch()
                return _json({"message": "fake failure", "code": 0}, status=failure.status)
        try:
            status, result = await self._route(request.method, path, body, request)
        except KeyError as exc:
            status, result = 404, {"message": f"Unknown {exc}", "code": 10003}
        call.status = status
        self._touch()
        if status == 204:
            return web.Response(status=204)
        return _json(result, status=status)

    @staticmethod
    async def _multipart_json(request: web.Request, raw: bytes) -> Any:
        """The JSON part, with each file part as ``_files``: [(name, bytes)]."""
        match = re.search(rb'name="payload_json"\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)\r\n--', raw, re.S)
        body = json.loads(match.group(1)) if match else {}
        boundary = request.headers["Content-Type"].split("boundary=")[-1].strip('"').encode()
        files = []
        for part in raw.split(b"--" + boundary):
            head, _, data = part.partition(b"\r\n\r\n")
            name = re.search(rb'filename="([^"]*)"', head)
            if name:
                files.append((name.group(1).decode(), data.removesuffix(b"\r\n")))
        if files:
            body["_files"] = files
        return body

    async def _route(
        self, method: str, path: str, body: Any, request: web.Request
    ) -> tuple[int, Any]:
        app = str(self.app_id)
        if method == "GET" and path == "/users/@me":
            return 200, self.bot
        if method == "GET" and path == "/oauth2/applications/@me":
            return 200, {
                "id": app,
                "name": "lettabot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self._user("owner"),
                "flags": 0,
            }
        if m := re.fullmatch(rf"/applications/{app}(?:/guilds/(\d+))?/commands", path):
            if method == "PUT":
                synced = [
                    {
                        **c,
                        "id": str(self.new_id()),
                        "application_id": app,
                        "version": "1",
                        "guild_id": m.group(1),
                        "type": c.get("type", 1),
                    }
                    for c in body
                ]
                self.commands[m.group(1) or "global"] = synced
                return 200, synced
            return 200, self.commands.get(m.group(1) or "global", [])
        if (m := re.fullmatch(r"/channels/(\d+)/messages", path)) and method == "POST":
            return 200, await self._bot_posts(m.group(1), body)
        if (m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", path)) and method == "DELETE":
            found = self.messages.get(int(m.group(2)))
            if found is None or found["channel_id"] != m.group(1):
                return 404, {"message": "Unknown Message", "code": 10008}
            self.deleted.add(int(m.group(2)))
            return 204, None
        if (m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", path)) and method == "PATCH":
            return 200, self._edit(int(m.group(2)), body)
        thread = re.fullmatch(r"/channels/(\d+)/messages/(\d+)/threads", path)
        if thread and method == "POST":
            if int(thread.group(2)) in self.channels:  # as Discord answers a second attempt
                return 400, {"message": "A thread has already been created for this message",
                             "code": 160004}
            return 200, await self._open_thread(thread.group(1), thread.group(2), body)
        reaction = re.fullmatch(r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", path)
        if reaction and method == "PUT":
            target = self.messages.get(int(reaction.group(2)))
            if target is None or target["channel_id"] != reaction.group(1):
                return 404, {"message": "Unknown Message", "code": 10008}
            self.reactions.setdefault(int(reaction.group(2)), []).append(
                urllib.parse.unquote(reaction.group(3)))
            return 204, None
        if re.fullmatch(r"/channels/(\d+)/typing", path) and method == "POST":
            return 204, None
        if m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", path):
            return 200, self._interaction_callback(m.group(1), body)
        if m := re.fullmatch(rf"/webhooks/{app}/([^/]+)(/messages/@original)?", path):
            return 200, self._followup(m.group(1), bool(m.group(2)), method, body)
        return 404, {"message": "404: Not Found", "code": 0}

    async def _bot_posts(self, channel_id: str, body: Json) -> Json:
        msg = self._message(
            channel_id, self.bot, body.get("content") or "", components=body.get("components")
        )
        for name, data in body.pop("_files", []):
            self.sent_files.append((int(channel_id), name, data))
            msg["attachments"].append({"id": str(self.new_id()), "filename": name,
                                       "size": len(data), "url": "", "proxy_url": ""})
        self.edits[int(msg["id"])] = []
        await self.dispatch("MESSAGE_CREATE", msg)  # Discord echoes the bot's own messages
        return msg

    def _edit(self, message_id: int, body: Json) -> Json:
        msg = self.messages[message_id]
        if "content" in body:
            msg["content"] = body["content"] or ""
            self.edits.setdefault(message_id, []).append(msg["content"])
        if "components" in body:
            msg["components"] = body["components"] or []
        msg["edited_timestamp"] = _now()
        return msg

    async def _open_thread(self, channel_id: str, message_id: str, body: Json) -> Json:
        parent = self.channels[int(channel_id)]
        thread = self.thread(parent, body["name"])
        # a thread opened on a message shares its id with that message
        del self.channels[int(thread["id"])]
        thread["id"] = message_id
        thread["member"]["id"] = message_id
        self.channels[int(message_id)] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    def _interaction_callback(self, interaction_id: str, body: Json) -> Json:
        kind, data = body["type"], body.get("data") or {}
        self.responses.append({"interaction": interaction_id, "type": kind, "data": data})
        result: Json = {
            "interaction": {
                "id": interaction_id,
                "type": kind,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(data.get("flags", 0) & _EPHEMERAL),
            }
        }
        if kind == 7:  # update the message the button is on
            message = self._edit(self._clicked[interaction_id], data)
            result["resource"] = {"type": kind, "message": message}
        elif kind == 4:
            message = self._message("0", self.bot, data.get("content") or "", store=False)
            result["resource"] = {
                "type": kind,
                "message": {**message, "flags": data.get("flags", 0)},
            }
        return result

    def _followup(self, token: str, original: bool, method: str, body: Json) -> Json:
        kind = "edit-original" if original else "followup"
        self.responses.append(
            {"interaction": self._tokens[token], "type": kind, "data": body or {}}
        )
        return self._message("0", self.bot, (body or {}).get("content") or "", store=False)
