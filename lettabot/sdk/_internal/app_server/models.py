"""The App Server's model requests: ``list_models`` and ``update_model``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import Lease, acquire
from lettabot.sdk.errors import ProcessError, UnknownModelError
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.types import ModelInfo

__all__ = ["choose_model", "list_models_on", "model_for_new_agent", "on_server",
           "update_model_on"]

T = TypeVar("T")


async def list_models_on(conn: Connection, timeout: float) -> list[ModelInfo]:  # noqa: ASYNC109
    answer = await conn.request({"type": "list_models", "request_id": conn.new_id("models")},
                                "list_models_response", timeout)
    if not answer.get("success"):
        raise ProcessError(f"could not list models: {answer.get('error') or 'no reason given'}")
    out = []
    for entry in answer.get("entries") or []:
        if not isinstance(entry, dict) or not entry.get("handle"):
            continue
        raw = entry.get("updateArgs")
        args: dict[str, Any] = raw if isinstance(raw, dict) else {}
        out.append(ModelInfo(
            handle=str(entry["handle"]), id=str(entry.get("id") or ""),
            label=str(entry.get("label") or ""), description=str(entry.get("description") or ""),
            context_window=args.get("context_window"),
            max_output_tokens=args.get("max_output_tokens"),
        ))
    return out


def choose_model(requested: str | None, offered: list[ModelInfo]) -> str:
    """The model a new agent gets: ``requested`` if the CLI offers it, else (none requested)
    the first model the CLI lists. Raises :class:`UnknownModelError` otherwise.

    CLI 0.34.12 makes an agent with any ``provider/name`` it is given, and without one picks
    a model of its own that may not exist (``openai-compatible/local/default``): such an
    agent fails every turn with "Unknown model"."""
    handles = [m.handle for m in offered]
    if requested is None and handles:
        return handles[0]
    if requested is not None and requested in handles:
        return requested
    raise UnknownModelError(requested, handles)


async def model_for_new_agent(conn: Connection, requested: str | None,
                              timeout: float) -> str:  # noqa: ASYNC109
    """:func:`choose_model` among the models ``conn``'s server offers."""
    return choose_model(requested, await list_models_on(conn, timeout))


async def update_model_on(conn: Connection, runtime: dict[str, Any], handle: str,
                          timeout: float) -> None:  # noqa: ASYNC109
    frame = {"type": "update_model", "request_id": conn.new_id("model"), "runtime": runtime,
             "payload": {"model_handle": handle}}
    answer = await conn.request(frame, "update_model_response", timeout)
    if not answer.get("success"):
        raise ProcessError(f"could not switch the conversation to {handle!r}: "
                           f"{answer.get('error') or 'no reason given'}")


async def on_server(options: SessionOptions, call: Callable[[Connection], Awaitable[T]],
                    lease: Lease | None = None) -> T:
    """``call`` with a connection to ``lease``'s server (else the one for ``options``)."""
    held = lease or acquire(options)
    try:
        return await call(await held.connection(options.request_timeout))
    finally:
        with anyio.CancelScope(shield=True):
            await held.release()
