"""A real Synapse homeserver for the tests: installed into its own venv under a cache dir
(its pins never meet the workspace's), SQLite, registration by shared secret, no federation,
listening on 127.0.0.1 on a free port. ``python synapse_server.py`` installs it ahead of time.

Test users talk to it over the client-server API with plain httpx (:class:`Person`).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

SYNAPSE = "matrix-synapse==1.163.2"
SERVER_NAME = "lettabot.test"
SHARED_SECRET = "lettabot-test-registration-secret"


def cache_dir() -> Path:
    base = os.environ.get("LETTABOT_SYNAPSE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "lettabot" / ("synapse-" + SYNAPSE.split("==")[1])


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def install() -> Path:
    """The venv's python, installing Synapse first if needed (seconds with a warm uv cache)."""
    venv = cache_dir() / "venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing it
        if marker.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from an interrupted run
        subprocess.run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True)
        subprocess.run([*_uv(), "pip", "install", "--quiet", "--python", str(python),
                        SYNAPSE], check=True)
        marker.write_text(SYNAPSE)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """\
server_name: "{server_name}"
pid_file: "{dir}/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
log_config: "{dir}/log.yaml"
media_store_path: "{dir}/media"
signing_key_path: "{dir}/signing.key"
registration_shared_secret: "{secret}"
enable_registration: false
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
url_preview_enabled: false
max_upload_size: 10M
# people in tests type fast: no rate limits
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
rc_room_creation: {{per_second: 1000, burst_count: 1000}}
rc_media_create: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
  per_issuer: {{per_second: 1000, burst_count: 1000}}
"""

_LOG = """\
version: 1
formatters:
  precise: {format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: "DIR/homeserver.log"}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
"""


class Synapse:
    """One Synapse process (start / stop / restart on the same port and database)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.python = install()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "homeserver.yaml").write_text(_CONFIG.format(
            server_name=SERVER_NAME, dir=directory, port=self.port, secret=SHARED_SECRET))
        (directory / "log.yaml").write_text(_LOG.replace("DIR", str(directory)))
        subprocess.run([str(self.python), "-m", "synapse.app.homeserver", "-c",
                        str(directory / "homeserver.yaml"), "--generate-keys"],
                       check=True, capture_output=True)

    def start(self, timeout: float = 90.0) -> None:
        out = (self.dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "-c",
             str(self.dir / "homeserver.yaml")],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Synapse exited: " + self.log_tail())
            try:
                if httpx.get(f"{self.url}/_matrix/client/versions", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Synapse did not answer: " + self.log_tail())

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        text = ""
        for name in ("stdout.log", "homeserver.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text

    def register(self, localpart: str, admin: bool = False) -> Person:
        """A new user, registered with the shared secret; logged in."""
        url = f"{self.url}/_synapse/admin/v1/register"
        nonce = httpx.get(url).json()["nonce"]
        password = "pw-" + localpart
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        r = httpx.post(url, json={"nonce": nonce, "username": localpart, "password": password,
                                  "admin": admin, "mac": mac.hexdigest()})
        r.raise_for_status()
        body = r.json()
        return Person(self.url, body["user_id"], body["access_token"], localpart)


@dataclass
class Person:
    """A test user on the homeserver, driven through the client-server API."""

    url: str
    user_id: str
    token: str
    name: str
    since: str | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)

    def _c(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/_matrix/client/v3",
                            headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        with self._c() as c:
            r = c.request(method, path, json=body, params=params or None)
            r.raise_for_status()
            return r.json()

    def create_room(self, invite: list[str] = (), *, direct: bool = False,  # type: ignore[assignment]
                    encrypted: bool = False, name: str = "") -> str:
        body: dict[str, Any] = {"invite": list(invite), "is_direct": direct,
                                "preset": "trusted_private_chat" if direct else "private_chat"}
        if name:
            body["name"] = name
        if encrypted:
            body["initial_state"] = [{"type": "m.room.encryption", "state_key": "",
                                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
        return str(self.call("POST", "/createRoom", body)["room_id"])

    def invite(self, room: str, user_id: str) -> None:
        self.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": user_id})

    def join(self, room: str) -> None:
        self.call("POST", f"/join/{quote(room)}", {})

    def send(self, room: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        txn = uuid.uuid4().hex
        path = f"/rooms/{quote(room)}/send/{event_type}/{txn}"
        return str(self.call("PUT", path, content)["event_id"])

    def say(self, room: str, text: str, *, thread: str | None = None,
            mention: str | None = None) -> str:
        """A message, optionally in ``thread`` and mentioning ``mention`` (as Element does:
        the display name in the body, a pill in the HTML, ``m.mentions``)."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if mention:
            local = mention.split(":")[0].lstrip("@")
            content["body"] = f"{local}: {text}"
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = (f'<a href="https://matrix.to/#/{mention}">{local}</a>: '
                                         f"{text}")
            content["m.mentions"] = {"user_ids": [mention]}
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        return self.send(room, content)

    def react(self, room: str, event_id: str, key: str) -> str:
        return self.send(room, {"m.relates_to": {"rel_type": "m.annotation",
                                                 "event_id": event_id, "key": key}},
                         "m.reaction")

    def messages(self, room: str, limit: int = 200) -> list[dict[str, Any]]:
        """The room's message events, oldest first (edits applied to their originals:
        ``content`` is the latest version; ``edits`` counts them)."""
        chunk = self.call("GET", f"/rooms/{quote(room)}/messages", dir="b",
                          limit=limit)["chunk"]
        events = list(reversed(chunk))
        latest: dict[str, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        for ev in events:
            if ev.get("type") != "m.room.message":
                continue
            rel = ev.get("content", {}).get("m.relates_to") or {}
            if rel.get("rel_type") == "m.replace":
                target = latest.get(rel.get("event_id", ""))
                if target is not None and ev["sender"] == target["sender"]:
                    target["content"] = ev["content"].get("m.new_content", {})
                    target["edits"] = target.get("edits", 0) + 1
                    target["edit_events"].append(ev)
                continue
            item = {**ev, "edits": 0, "edit_events": [],
                    "thread": rel.get("event_id") if rel.get("rel_type") == "m.thread" else None}
            latest[ev["event_id"]] = item
            out.append(item)
        return out

    def events(self, room: str, event_type: str, limit: int = 200) -> list[dict[str, Any]]:
        chunk = self.call("GET", f"/rooms/{quote(room)}/messages", dir="b", limit=limit)["chunk"]
        return [e for e in reversed(chunk) if e.get("type") == event_type]

    def upload(self, name: str, data: bytes, mime: str) -> str:
        r = httpx.post(f"{self.url}/_matrix/media/v3/upload", params={"filename": name},
                       content=data, headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": mime}, timeout=30)
        r.raise_for_status()
        return str(r.json()["content_uri"])

    def download(self, mxc: str) -> bytes:
        path = mxc.removeprefix("mxc://")
        r = httpx.get(f"{self.url}/_matrix/client/v1/media/download/{path}",
                      headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        r.raise_for_status()
        return r.content

    def joined_rooms(self) -> list[str]:
        return list(self.call("GET", "/joined_rooms")["joined_rooms"])

    def members(self, room: str) -> list[str]:
        return list(self.call("GET", f"/rooms/{quote(room)}/joined_members")["joined"])


if __name__ == "__main__":
    print(f"synapse for the Matrix tests: {install()}")
