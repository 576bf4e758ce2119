"""Adapters are found through the entry-point group ``lettabot.adapters``.

Each entry point names an :class:`~lettabot.runtime.adapter.AdapterFactory`; a third-party
package adds an adapter by registering one. Its section is ``[<name>]`` when the package
also registers a settings model under ``lettabot.settings`` (validated once, by the config
loader, and that model instance is what the factory receives), else the free-form
``[adapters.<name>]`` table (handed over as a mapping).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from lettabot.runtime.adapter import AdapterFactory
from lettabot.runtime.bot import adapter_settings
from lettabot.runtime.config import AdapterSettings, Config

__all__ = ["GROUP", "AdapterNotInstalled", "EnabledAdapter", "available", "enabled_adapters"]

GROUP = "lettabot.adapters"
_DISTRIBUTIONS = {"slack": "lettabot-slack", "discord": "lettabot-discord", "web": "lettabot-web"}


class AdapterNotInstalled(LookupError):
    """An enabled adapter has no entry point (its package is not installed)."""


@dataclass(frozen=True)
class EnabledAdapter:
    name: str
    factory: AdapterFactory
    settings: AdapterSettings | dict[str, Any]
    """What the factory receives: the section's validated model (or the free-form table)."""
    source: str
    """Where it comes from: ``<distribution> <version>`` or the entry point's value."""


def available() -> dict[str, EntryPoint]:
    """Installed adapters by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _source(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def enabled_adapters(config: Config) -> list[EnabledAdapter]:
    """The adapters ``lettabot run`` starts, loaded. Raises :class:`AdapterNotInstalled`
    naming every enabled adapter that is missing and how to install it."""
    found = available()
    settings = adapter_settings(config)
    missing = [n for n in config.enabled_adapters() if n not in found]
    if missing:
        hints = ", ".join(
            f"{n} (pip install {_DISTRIBUTIONS.get(n, f'the package providing {n!r}')})"
            for n in missing)
        raise AdapterNotInstalled(f"enabled but not installed: {hints}")
    out = []
    for name in config.enabled_adapters():
        ep = found[name]
        out.append(EnabledAdapter(name, ep.load(), settings.get(name, {}), _source(ep)))
    return out
