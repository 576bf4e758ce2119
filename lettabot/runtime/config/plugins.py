"""Adapters' sections: the :class:`AdapterSettings` base an adapter package subclasses, and
the installed ones, found through the ``lettabot.settings`` entry points."""

from __future__ import annotations

from collections.abc import Collection
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar

from pydantic import ConfigDict

from lettabot.runtime.config.base import Section

if TYPE_CHECKING:
    from lettabot.runtime.config.root import Config

SETTINGS_GROUP = "lettabot.settings"
"""Entry points naming each adapter's :class:`AdapterSettings` subclass, by adapter name."""


class AdapterSettings(Section):
    """The base of an adapter's ``[<name>]`` section.

    An adapter package provides its subclass through the entry-point group
    ``lettabot.settings`` (``slack = "lettabot_slack.settings:SlackConfig"``); the core
    composes the installed ones into :class:`Config`, so ``[slack]`` and
    ``LETTABOT_SLACK__*`` are validated like every other section (key, problem, fix), shown
    by ``check-config`` and documented in the example file, which is generated from the
    fields' docstrings and ``examples``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True,
                              use_attribute_docstrings=True)

    enabled: bool = False
    """Run this adapter."""

    public: ClassVar[bool] = True
    """Whether people other than the operator reach the bot through it (a team chat): with
    such an adapter enabled, ``lettabot run`` refuses to start unless ``[access]`` says who
    may talk. The local web chat is not public."""

    def is_enabled(self, config: Config) -> bool:
        """Whether ``lettabot run`` starts it (``config``: the whole config)."""
        return bool(self.enabled)

    def listens(self) -> list[tuple[str, str, int]]:
        """``(port key, host, port)`` it will listen on, checked before ``lettabot run``
        starts anything slow. By default: ``host``/``port`` and, unless ``mode`` is not
        ``"http"``, ``http_host``/``http_port``, where the section has them."""
        out = []
        for host_key, port_key in (("host", "port"), ("http_host", "http_port")):
            host, port = getattr(self, host_key, None), getattr(self, port_key, None)
            if port_key == "http_port" and getattr(self, "mode", "http") != "http":
                continue
            if isinstance(host, str) and isinstance(port, int) and port:
                out.append((port_key, host, port))
        return out


class ChatAdapterSettings(AdapterSettings):
    """What every team-chat adapter shares."""

    allow_bots: bool = False
    """Answer messages posted by other bots (loops are your problem then)."""
    unauthorized_reply: str = "Sorry, you are not allowed to use this bot."
    """Sent to a user who is not in access.allowed_users. Empty string: stay silent."""


def plugin_sections(taken: Collection[str]) -> dict[str, type[AdapterSettings]]:
    """The installed adapters' section models by adapter name, sorted by name; a name in
    ``taken`` (a core section) or claimed by a second package is skipped."""
    sections: dict[str, type[AdapterSettings]] = {}
    for ep in sorted(entry_points(group=SETTINGS_GROUP), key=lambda e: e.name):
        if ep.name in taken or ep.name in sections:
            continue  # a core section, or a second package claiming the name
        model = ep.load()
        if not (isinstance(model, type) and issubclass(model, AdapterSettings)):
            raise TypeError(f"the {SETTINGS_GROUP} entry point {ep.name} = {ep.value} is "
                            "not an AdapterSettings subclass")
        sections[ep.name] = model
    return sections
