"""The HTTP endpoint's door: every request is checked here before Bolt parses anything.

Slack signs each request (``v0=`` HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the
signing secret) and sends JSON (events) or a form (``payload=`` for interactivity,
``command=`` for slash commands). Anything else is answered 4xx with ``X-Slack-No-Retry: 1``
(a retry would fail the same way), logged in one line that never includes the body — Bolt's
own verification would log the whole body of a forged request, and some malformed bodies
made it answer 500 with a traceback.

Past the signature, the body must parse (at most :data:`MAX_DEPTH` deep) and the fields Bolt
and lettabot read must have the types Slack gives them (:data:`FIELDS`, wherever they occur
in the objects that are read: the envelope, ``event``, ``actions[]``, ``authorizations[]``,
``view``, ``container``, ``message``...). Bolt indexes them before any listener runs
(``body["actions"][0]``, ``payload.get("team").get("id")``, ``re.match(pattern,
event["type"])``), so a wrong type there would be an exception inside Bolt. What this misses
is still not a 5xx: :mod:`lettabot_slack.server` answers 400 to any request Bolt or a listener
could not read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["FIELDS", "MAX_DEPTH", "MAX_SKEW", "Rejection", "screen"]

MAX_SKEW = 300
"""Seconds a request's timestamp may be off (Slack's recommendation: replays are refused)."""


@dataclass(frozen=True)
class Rejection:
    status: int
    reason: str


def _signed(secret: str, body: bytes, timestamp: str | None, signature: str | None,
            now: float) -> str | None:
    """Why the signature does not hold, or None."""
    if not timestamp or not signature:
        return "unsigned (no X-Slack-Signature / X-Slack-Request-Timestamp)"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return "a timestamp that is not a Unix time"
    if abs(now - int(timestamp)) > MAX_SKEW:
        return "a timestamp more than 5 minutes off (a replay?)"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "a signature that does not match the signing secret"
    return None


MAX_DEPTH = 64
"""Nesting Slack's payloads never come near (rich text blocks nest a handful deep)."""

_STR = (str, type(None))
_STR_OR_OBJECT = (str, dict, type(None))
_NUMBER = (int, float, type(None))
_BOOL = (bool, type(None))
FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(
        ("type", "subtype", "id", "team_id", "user_id", "channel_id", "enterprise_id",
         "app_installed_team_id", "context_team_id", "context_enterprise_id", "user_team",
         "ts", "thread_ts", "event_ts", "message_ts", "event_id", "bot_id", "channel_type",
         "block_id", "value", "command", "response_url",
         "trigger_id", "token", "api_app_id", "challenge", "tab", "username", "name",
         "channel_name", "function_execution_id", "bot_access_token", "execution_id",
         "url_private", "mimetype"), _STR),
    **dict.fromkeys(("callback_id", "action_id"), (str,)),  # Bolt matches them as text
    **dict.fromkeys(("user", "team", "channel", "enterprise"), _STR_OR_OBJECT),
    **dict.fromkeys(("text",), (str, dict, type(None))),  # an action's text is an object
    **dict.fromkeys(("event", "message", "previous_message", "item", "assistant_thread",
                     "view", "container", "function_data"), (dict,)),
    **dict.fromkeys(("authorizations", "actions", "response_urls", "files"), (list,)),
    **dict.fromkeys(("event_time", "size"), _NUMBER),
    **dict.fromkeys(("is_enterprise_install", "is_ext_shared_channel", "is_bot"), _BOOL),
}
"""Field → the types it may have, in every object that is read."""

_READ = frozenset({"event", "message", "previous_message", "item", "assistant_thread",
                   "view", "container", "function_data", "user", "team", "channel",
                   "enterprise", "authorizations", "actions", "response_urls", "files"})
"""Fields whose objects (or lists of objects) are read in turn."""


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _types(obj: dict[str, Any], where: str) -> str | None:
    """Why a field of ``obj`` (or of an object it holds that is read) has the wrong type."""
    stack = [(obj, where)]
    while stack:
        current, path = stack.pop()
        for key, value in current.items():
            allowed = FIELDS.get(key)
            if allowed is None:
                continue
            # bool is an int to isinstance: a number field holding true is still wrong
            if not isinstance(value, allowed) or (isinstance(value, bool)
                                                  and bool not in allowed):
                return f"{path}{key} of the wrong type ({type(value).__name__})"
            if key not in _READ:
                continue
            if isinstance(value, dict):
                stack.append((value, f"{path}{key}."))
            elif isinstance(value, list):
                for item in value:
                    if not isinstance(item, dict):
                        return f"{path}{key}[] holding a {type(item).__name__}, not objects"
                    stack.append((item, f"{path}{key}[]."))
    return None


def _fields(data: dict[str, Any], what: str) -> str | None:
    """Why ``data`` is not shaped as Slack shapes it, or None."""
    if _too_deep(data):
        return f"{what} nested more than {MAX_DEPTH} deep"
    why = _types(data, "")
    if why is not None:
        return f"{what}: {why}"
    kind = data.get("type")
    if not isinstance(kind, str):
        return f"{what} without a type"
    if kind == "event_callback":
        event = data.get("event")
        if not isinstance(event, dict):
            return "an event_callback without an event object"
        if not isinstance(event.get("type"), str):
            return "an event_callback whose event has no type"
    if kind in ("block_actions", "interactive_message"):
        actions = data.get("actions")
        if not actions:  # Bolt reads actions[0] (to_action) for every listener it tries
            return f"a {kind} payload without actions"
        if kind == "block_actions" and not all("action_id" in a for a in actions):
            return "a block_actions payload with an action without action_id"
    return None


def _object(text: str, what: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json parses
        return None, f"{what} is not JSON (or is nested too deep)"
    if not isinstance(value, dict):
        return None, f"{what} is not a JSON object"
    return value, _fields(value, what)


def _shape(body: bytes, content_type: str) -> str | None:
    """Why the body is not something Slack sends, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "a body that is not UTF-8"
    kind, _, parameters = content_type.partition(";")
    kind = kind.strip().lower()
    charset = parameters.strip().lower().removeprefix("charset=").strip('"')
    if parameters.strip() and charset not in ("utf-8", "utf8", "us-ascii"):
        return "a charset other than UTF-8"  # aiohttp would decode it so for Bolt
    if kind == "application/json":
        _, problem = _object(text, "the body")
        return problem
    if kind == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=False,
                            errors="strict")
        except (ValueError, UnicodeDecodeError):
            return "a form that cannot be decoded"
        if text.startswith("{"):  # Bolt reads any body starting with "{" as JSON
            return "a form that starts as JSON"
        if "payload" in form:  # Bolt reads the last one: each must be right
            for payload in form["payload"]:
                _, problem = _object(payload, "the payload")
                if problem is not None:
                    return problem
            return None
        if "command" in form or "ssl_check" in form:
            # Bolt reads a form as a dict of its last values: "event=x" is an event to it
            why = _types({key: values[-1] for key, values in form.items()}, "")
            return f"the form: {why}" if why is not None else None
        return "a form with neither payload nor command"
    return f"content type {kind or 'none'!r} (Slack sends JSON or a form)"


def screen(body: bytes, headers: Any, secret: str, now: float | None = None) -> Rejection | None:
    """None when ``body`` is a signed request of a shape Slack sends; else why not."""
    now = time.time() if now is None else now
    why = _signed(secret, body, headers.get("X-Slack-Request-Timestamp"),
                  headers.get("X-Slack-Signature"), now)
    if why is not None:
        return Rejection(401, why)
    why = _shape(body, headers.get("Content-Type", ""))
    return Rejection(400, why) if why is not None else None
