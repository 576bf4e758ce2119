"""``[[letta.providers]]``: connect model providers in lettabot's Letta home at start.

``connect_providers`` does what ``letta connect`` does, through the App Server's socket
(the key is never in a process's arguments), for every configured provider; connecting again
with the same settings changes nothing. The CLI's local backend stores a key without
trying it, so for providers with a well-known models endpoint lettabot asks it once with
the key (``probe_key``): a rejected key is a :class:`ConfigError` naming the provider,
never the key.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

import anyio

from lettabot import sdk
from lettabot.runtime.config import Config, ConfigError, Problem, ProviderConfig
from lettabot.runtime.keyproxy import KeyProxy, Upstream

__all__ = ["KeyCheck", "connect_providers", "probe_key"]

log = logging.getLogger("lettabot.runtime.providers")

_OPENAI_STYLE = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com",
    "together": "https://api.together.xyz/v1",
    "xai": "https://api.x.ai/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "openai-compatible": "",
    "ollama": "",
    "lmstudio": "",
    "llama-cpp": "",
}

_PROXIED = {"anthropic": ("https://api.anthropic.com", "x-api-key"),
            "openai": ("https://api.openai.com/v1", "bearer")}
"""Providers with built-in addresses whose local-backend record still takes a base URL
(CLI 0.34.12: ``resolvePiModelForAgent`` uses the record's ``base_url`` for built-in
providers), so their key can stay with lettabot: default address and how the key is sent."""


@dataclass(frozen=True)
class KeyCheck:
    """What asking the provider with the key said."""

    ok: bool | None
    """True: accepted; False: rejected; None: not checked (no known endpoint, unreachable)."""
    detail: str


def _request(provider: ProviderConfig, key: str | None) -> urllib.request.Request | None:
    kind, base = provider.type, (provider.base_url or "").rstrip("/")
    if kind in _OPENAI_STYLE:
        base = base or _OPENAI_STYLE[kind]
        if not base:
            return None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return urllib.request.Request(f"{base}/models", headers=headers)
    if kind == "anthropic" and key:
        return urllib.request.Request(
            f"{base or 'https://api.anthropic.com'}/v1/models",
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
    if kind == "google" and key:
        return urllib.request.Request(
            f"{base or 'https://generativelanguage.googleapis.com'}/v1beta/models",
            headers={"x-goog-api-key": key})
    if kind == "openrouter" and key:
        return urllib.request.Request(f"{base or 'https://openrouter.ai/api/v1'}/key",
                                      headers={"Authorization": f"Bearer {key}"})
    return None


def _fetch(request: urllib.request.Request, timeout: float) -> KeyCheck:
    host = request.host
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
        return KeyCheck(True, f"{host} accepted the key")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            reason = ""
            try:
                body = json.loads(exc.read(4096) or b"{}")
                error = body.get("error") if isinstance(body, dict) else None
                message = error.get("message") if isinstance(error, dict) else error
                reason = f": {str(message)[:160]}" if message else ""
            except (ValueError, OSError):
                pass
            return KeyCheck(False, f"{host} rejected the key (HTTP {exc.code}{reason})")
        return KeyCheck(None, f"{host} answered HTTP {exc.code}; the key was not checked")
    except (OSError, ValueError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return KeyCheck(None, f"could not reach {host} to check the key ({why})")


async def probe_key(provider: ProviderConfig, key: str | None,
                    timeout: float = 10.0) -> KeyCheck:  # noqa: ASYNC109
    """Ask the provider's models endpoint with ``key``, once (no tokens are spent)."""
    request = _request(provider, key)
    if request is None:
        return KeyCheck(None, "no models endpoint known for this provider: the key is "
                              "first tried on the first turn")
    return await anyio.to_thread.run_sync(_fetch, request, timeout)


def _upstream(provider: ProviderConfig, takes_base_url: bool,
              key: str | None) -> Upstream | None:
    """Where the key proxy sends ``provider``'s requests (None: the CLI holds the key)."""
    if not key:
        return None
    if provider.type in _PROXIED:
        default, auth = _PROXIED[provider.type]
        return Upstream(provider.base_url or default, key,
                        "x-api-key" if auth == "x-api-key" else "bearer")
    if provider.base_url and takes_base_url:
        return Upstream(provider.base_url, key)
    return None


def _problem(index: int, field: str, what: str, fix: str) -> ConfigError:
    return ConfigError([Problem(f"letta.providers[{index}].{field}", what, fix)])


async def connect_providers(config: Config, client: sdk.LettaClient,
                            proxy: KeyProxy | None = None) -> list[str]:
    """Connect every ``[[letta.providers]]`` through ``client``'s first App Server.

    With ``proxy``, a provider the CLI reaches by base URL gets the proxy's address and
    stand-in key, so its real key never enters the Letta home (see :mod:`.keyproxy`).

    Returns one line per provider for the log (no keys). Raises :class:`ConfigError` for
    a type the CLI does not know, a missing key or base URL, a key the provider rejects,
    or the CLI refusing the connection.
    """
    providers = config.letta.providers
    if not providers:
        return []
    known = {p.id: p for p in await client.list_providers()}
    lines = []
    for i, provider in enumerate(providers):
        info = known.get(provider.type)
        if info is None:
            names = ", ".join(sorted(known))
            raise _problem(i, "type", f"{provider.type!r} is not a provider the Letta CLI "
                           "can connect", f"use one of: {names}")
        if info.oauth:
            raise _problem(i, "type", f"{provider.type} connects only through a browser "
                           "login (OAuth)", f"run `letta connect {provider.type}` once as "
                           "lettabot's user instead, or use a provider with an API key")
        key = provider.key()
        if key is None and provider.api_key_env:  # named, so meant to be there
            raise _problem(i, "api_key_env", f"names {provider.api_key_env}, which is "
                           "not set", f"set {provider.api_key_env} in lettabot's "
                           "environment (or its .env file)")
        if key is None and info.requires_api_key and "apiKey" in info.fields:
            raise _problem(i, "api_key", f"is not set ({info.display_name or info.id} "
                           "needs a key)", 'set api_key_env = "<VARIABLE>" naming the '
                           "variable that holds it")
        if "baseUrl" in info.fields and not info.requires_api_key and not provider.base_url:
            raise _problem(i, "base_url", f"is not set ({provider.type} needs its server's "
                           "address)", "set base_url = \"http://host:port/v1\"")
        check = await probe_key(provider, key)
        if check.ok is False:
            where = provider.api_key_env or "api_key"
            raise _problem(i, "api_key" if not provider.api_key_env else "api_key_env",
                           check.detail, f"put a valid key in {where}")
        base_url, where = provider.base_url, "in the Letta home"
        upstream = _upstream(provider, "baseUrl" in info.fields, key)
        if proxy is not None and upstream is not None:
            base_url = proxy.add(upstream)
            key, where = proxy.stand_in, "with lettabot (the CLI holds a stand-in)"
        elif key:
            log.warning("the key of provider %s is stored in the Letta home, which the "
                        "agent's own file tools could read if an approver allowed it; to keep "
                        "it with lettabot, use anthropic, openai or a provider with base_url "
                        "(e.g. type = \"openai-compatible\"), see docs/security.md",
                        provider.label)
        try:
            await client.connect_provider(
                provider.type, api_key=key, base_url=base_url, name=provider.name,
                auth_method=provider.auth_method, fields=provider.fields)
        except sdk.LettaSDKError as exc:
            raise _problem(i, "type", f"the Letta CLI refused to connect it ({exc})",
                           "check the fields this provider needs (`letta connect --help`)"
                           ) from None
        lines.append(f"provider {provider.label}: connected ({check.detail}; key {where})")
        log.info("model provider %s connected (%s; key %s)", provider.label, check.detail,
                 where)
    return lines
