"""The HTTP endpoint's door: every request is checked here before Bolt parses anything.

Slack signs each request (``v0=`` HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the
signing secret) and sends JSON (events) or a form (``payload=`` for interactivity,
``command=`` for slash commands). Anything else is answered 4xx with ``X-Slack-No-Retry: 1``
(a retry would fail the same way), logged in one line that never includes the body — Bolt's
own verification would log the whole body of a forged request, and some malformed bodies
made it answer 500 with a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["MAX_SKEW", "Rejection", "screen"]

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


def _object(text: str, what: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(text)
    except ValueError:
        return None, f"{what} is not JSON"
    if not isinstance(value, dict):
        return None, f"{what} is not a JSON object"
    return value, None


def _shape(body: bytes, content_type: str) -> str | None:
    """Why the body is not something Slack sends, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "a body that is not UTF-8"
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        data, problem = _object(text, "the body")
        if data is None:
            return problem
        if data.get("type") == "event_callback" and not isinstance(data.get("event"), dict):
            return "an event_callback without an event object"
        return None
    if kind == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=False,
                            errors="strict")
        except (ValueError, UnicodeDecodeError):
            return "a form that cannot be decoded"
        if "payload" in form:
            _, problem = _object(form["payload"][0], "the payload")
            return problem
        if "command" in form or "ssl_check" in form:
            return None
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
