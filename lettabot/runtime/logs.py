"""Logging: text (default) or one JSON object per line, each carrying the turn it is about
(and, with ``[tracing]`` on, the trace and span it was logged in).

``log_context(scope=..., conversation=..., turn=...)`` binds fields to the current task
(a ``contextvars`` value, so tasks a turn starts inherit them); every record logged inside
shows them: ``key=value`` after a text line, fields of the JSON object.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace

__all__ = ["LogFormat", "bind", "configure_logging", "log_context"]

LogFormat = Literal["text", "json"]

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "lettabot_log_context", default={})  # noqa: B039  (never mutated: replaced whole)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Bind ``fields`` (None values are skipped) for the code inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context until the enclosing :func:`log_context` ends."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # [tracing] on: the record names its trace and span
            fields = {**fields, "trace_id": format(span.trace_id, "032x"),
                      "span_id": format(span.span_id, "016x")}
        record.lettabot_context = fields
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, str] = getattr(record, "lettabot_context", {})
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return head + " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" + sep + tail


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the bound
    fields, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "lettabot_context", {}),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


QUIET_LIBRARIES = ("alembic",)
"""Loggers whose INFO lines (schema migration chatter) show only with ``verbose``."""


def configure_logging(level: str = "INFO", fmt: LogFormat = "text", *,
                      verbose: bool = False) -> None:
    """Root logging to stderr in ``fmt``; replaces handlers an earlier call installed.
    Unless ``verbose``, :data:`QUIET_LIBRARIES` log warnings and errors only."""
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_lettabot", False):
            root.removeHandler(old)
    handler._lettabot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
