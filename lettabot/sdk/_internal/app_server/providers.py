"""The App Server's model-provider requests: ``list_connect_providers`` and
``connect_provider`` (local backend only: what ``letta connect`` does, over the socket, so a
key never appears in a process's arguments)."""

from __future__ import annotations

from typing import Any

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk.errors import ProcessError
from lettabot.sdk.types import ProviderInfo

__all__ = ["connect_provider_on", "list_providers_on"]


def _providers(answer: dict[str, Any], what: str) -> list[ProviderInfo]:
    if not answer.get("success"):
        raise ProcessError(f"could not {what}: {answer.get('error') or 'no reason given'}")
    return [ProviderInfo.from_wire(p) for p in answer.get("providers") or []
            if isinstance(p, dict) and p.get("id")]


async def list_providers_on(conn: Connection, timeout: float) -> list[ProviderInfo]:  # noqa: ASYNC109
    frame = {"type": "list_connect_providers", "request_id": conn.new_id("providers"),
             "target": "local"}
    return _providers(await conn.request(frame, "list_connect_providers_response", timeout),
                      "list the model providers")


async def connect_provider_on(
    conn: Connection, provider_id: str, fields: dict[str, str], *, name: str | None,
    auth_method: str | None, timeout: float,  # noqa: ASYNC109
) -> list[ProviderInfo]:
    frame: dict[str, Any] = {"type": "connect_provider", "request_id": conn.new_id("connect"),
                             "target": "local", "provider_id": provider_id, "fields": fields}
    if name:
        frame["provider_name"] = name
    if auth_method:
        frame["auth_method_id"] = auth_method
    return _providers(await conn.request(frame, "connect_provider_response", timeout),
                      f"connect the model provider {provider_id!r}")
