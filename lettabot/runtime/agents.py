"""Several agents behind one bot: which agent serves a scope, and each agent's policy.

``[[agents]]`` in the config (else one agent, named ``default``, from ``[letta]``). A scope
is served by the agent whose most specific rule matches it (ties: the first in the file),
else by the default agent. Once a scope has a conversation its route remembers the agent,
so changing the rules never moves a conversation: ``reset`` does.

Each agent's id is configured (``agent_id``) or created on first use and remembered in the
store: setting ``bot_agent_id`` for the agent named ``default`` (what a single-agent bot
has always used), ``bot_agent_id:<name>`` for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import Scope
from lettabot.runtime.approvals import ToolPolicy
from lettabot.runtime.config import AdapterSettings, Config, LettaConfig, RouteRule
from lettabot.runtime.store import Store
from lettabot.runtime.tool_guard import ToolGuard

__all__ = ["AGENT_SETTING", "AgentMissingError", "AgentProfile", "Agents"]

log = logging.getLogger("lettabot.runtime.agents")

AGENT_SETTING = "bot_agent_id"


class AgentMissingError(RuntimeError):
    """The configured (or remembered) agent does not exist; the bot will not invent another."""


@dataclass(eq=False)
class AgentProfile:
    """One agent: its settings, its tool policy and who may approve its tool calls."""

    name: str
    settings: LettaConfig
    """``[letta]`` with the agent's own settings over it."""
    policy: ToolPolicy
    access: AccessPolicy
    routes: list[RouteRule] = field(default_factory=list)
    default: bool = False
    agent_id: str | None = None
    """Known once configured, remembered or created."""
    host: str | None = None
    """The ``[[hosts]]`` entry whose App Server owns the agent (None: ``[servers]``)."""

    @property
    def setting_key(self) -> str:
        return AGENT_SETTING if self.name == "default" else f"{AGENT_SETTING}:{self.name}"

    @property
    def source(self) -> str:
        """Where the id comes from, for messages."""
        if self.settings.agent_id:
            return "letta.agent_id" if self.name == "default" else f"agents.{self.name}.agent_id"
        return f"the store (setting {self.setting_key})"


class Agents:
    """The bot's agents: which serves a scope, and their ids (resolved once each)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        guard: Callable[[LettaConfig], ToolGuard | None],
        adapter_settings: Mapping[str, AdapterSettings | Mapping[str, Any]],
        create_agent: Callable[[AgentProfile], Awaitable[str]],
    ) -> None:
        self.store = store
        self._create = create_agent
        self._lock = anyio.Lock()
        self.profiles: list[AgentProfile] = []
        default = config.default_agent
        for agent in config.agent_configs():
            settings = agent.resolved(config.letta)
            access = config.access
            if agent.approvers is not None:
                access = access.model_copy(update={"approvers": list(agent.approvers)})
            self.profiles.append(AgentProfile(
                name=agent.name, settings=settings,
                policy=ToolPolicy.from_config(settings, guard(settings)),
                access=AccessPolicy(access, adapter_settings),
                routes=list(agent.routes), default=agent is default or agent.name == default.name,
                agent_id=settings.agent_id, host=agent.host,
            ))
        self.default = next(p for p in self.profiles if p.default)

    # -- which agent -------------------------------------------------------------------

    def for_scope(self, scope: Scope) -> AgentProfile:
        """The agent the rules give a NEW conversation in ``scope``."""
        best: tuple[int, AgentProfile] | None = None
        for profile in self.profiles:
            for rule in profile.routes:
                if (rule.matches(scope.adapter, scope.workspace, scope.channel, scope.is_dm)
                        and (best is None or rule.specificity > best[0])):
                    best = (rule.specificity, profile)
        return best[1] if best else self.default

    def by_agent_id(self, agent_id: str) -> AgentProfile | None:
        """The profile of a known agent id (configured, remembered or created)."""
        return next((p for p in self.profiles if p.agent_id == agent_id), None)

    # -- ids ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Learn the remembered ids (creates nothing), so routes find their agent."""
        for profile in self.profiles:
            if profile.agent_id is None:
                profile.agent_id = await self.store.get_setting(profile.setting_key)

    async def agent_id(self, profile: AgentProfile | None = None) -> str:
        """``profile``'s agent (default: the default agent): configured, remembered, or
        created now (once) and remembered."""
        profile = profile or self.default
        async with self._lock:
            if profile.agent_id is None:
                agent = await self.store.get_setting(profile.setting_key)
                if agent is None:
                    created = await self._create(profile)
                    # replicas on one store may create at once: the first one recorded wins
                    agent = await self.store.setting_if_absent(profile.setting_key, created)
                    if agent == created:
                        log.info("created agent %s for %s", agent, profile.name)
                    else:
                        log.warning("agent %s was created for %s, but another replica's %s "
                                    "was recorded first: using that one (delete %s)",
                                    created, profile.name, agent, created)
                profile.agent_id = agent
            return profile.agent_id

    def missing(self, profile: AgentProfile, agent_id: str, detail: str) -> AgentMissingError:
        """The error for an agent that cannot be opened (names the setting and the fix)."""
        if profile.settings.agent_id:
            fix = (f"check the id (`letta agents list`) and letta.backend, or remove "
                   f"{profile.source} to let lettabot create an agent")
        else:
            key = "letta" if profile.name == "default" else f"agents.{profile.name}"
            fix = (f"the agent lettabot created earlier is gone: set {key}.agent_id to an "
                   f"existing agent, or delete the store's {profile.setting_key} setting to "
                   "create a new one")
        return AgentMissingError(
            f"agent {agent_id} ({profile.name}) from {profile.source} cannot be opened "
            f"({detail}) — {fix}"
        )
