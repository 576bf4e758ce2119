"""Routing: a chat scope → (agent_id, conversation_id), persisted in the store.

Every scope talks to one agent: ``letta.agent_id`` if configured, else one agent the bot
creates on first run and remembers in the store (setting ``bot_agent_id``), so memory is
shared by all scopes. A new scope gets a NEW conversation on that agent (the scheduler
opens it and :meth:`Router.bind` records it); a known scope resumes its conversation,
also after a restart. ``reset`` forgets the route (the agent and its memory stay).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from lettabot.runtime.adapter import Scope
from lettabot.runtime.store import Route, Store

__all__ = ["AGENT_SETTING", "AgentMissingError", "Router"]

log = logging.getLogger("lettabot.runtime.router")

AGENT_SETTING = "bot_agent_id"


class AgentMissingError(RuntimeError):
    """The configured (or remembered) agent does not exist; the bot will not invent another."""


class Router:
    """Scope → conversation, with the bot's agent resolved once."""

    def __init__(
        self,
        store: Store,
        *,
        configured_agent: str | None,
        create_agent: Callable[[], Awaitable[str]],
    ) -> None:
        self.store = store
        self.configured_agent = configured_agent
        self._create_agent = create_agent
        self._agent: str | None = None
        self._lock = anyio.Lock()

    @property
    def agent_source(self) -> str:
        """Where the agent id comes from, for messages: the config key or the store."""
        return "letta.agent_id" if self.configured_agent else f"the store (setting {AGENT_SETTING})"

    async def agent_id(self) -> str:
        """The bot's agent: configured, remembered, or created now (once) and remembered."""
        async with self._lock:
            if self._agent is None:
                agent = self.configured_agent or await self.store.get_setting(AGENT_SETTING)
                if agent is None:
                    agent = await self._create_agent()
                    await self.store.set_setting(AGENT_SETTING, agent)
                    log.info("created the bot's agent %s", agent)
                self._agent = agent
            return self._agent

    def missing(self, agent_id: str, detail: str) -> AgentMissingError:
        """The error for an agent that cannot be opened (names the setting and the fix)."""
        if self.configured_agent:
            fix = ("check the id (`letta agents list`) and letta.backend, or remove "
                   "letta.agent_id to let lettabot create an agent")
        else:
            fix = (f"the agent lettabot created earlier is gone: set letta.agent_id to an "
                   f"existing agent, or delete the store's {AGENT_SETTING} setting to create "
                   "a new one")
        return AgentMissingError(
            f"agent {agent_id} from {self.agent_source} cannot be opened ({detail}) — {fix}"
        )

    async def lookup(self, scope: Scope) -> Route | None:
        return await self.store.get_route(scope.key)

    async def bind(self, scope: Scope, agent_id: str, conversation_id: str) -> Route:
        return await self.store.set_route(scope.key, agent_id, conversation_id)

    async def reset(self, scope: Scope) -> bool:
        """Forget the scope's conversation; its next message starts a new one."""
        return await self.store.delete_route(scope.key)
