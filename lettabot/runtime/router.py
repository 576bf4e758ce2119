"""Routing: a chat scope → (agent_id, conversation_id), persisted in the store.

A new scope gets a NEW conversation on the agent :class:`~lettabot.runtime.agents.Agents`
picks for it (the scheduler opens it and :meth:`Router.bind` records it); a known scope
resumes its conversation, on the agent its route names, also after a restart and whatever
the rules say now. ``reset`` forgets the route (the agent and its memory stay).
"""

from __future__ import annotations

import logging

from lettabot.runtime.adapter import Scope
from lettabot.runtime.agents import AGENT_SETTING, AgentMissingError, AgentProfile, Agents
from lettabot.runtime.store import Route, Store

__all__ = ["AGENT_SETTING", "AgentMissingError", "Router"]

log = logging.getLogger("lettabot.runtime.router")


class Router:
    """Scope → conversation; the agents behind them."""

    def __init__(self, store: Store, agents: Agents) -> None:
        self.store = store
        self.agents = agents
        self._kept: set[str] = set()

    async def agent_id(self, profile: AgentProfile | None = None) -> str:
        """The id of ``profile``'s agent (default: the default agent's)."""
        return await self.agents.agent_id(profile)

    async def profile_for(self, scope: Scope) -> tuple[AgentProfile | None, Route | None]:
        """Who serves ``scope``: its route's agent (None if the config no longer names it),
        else the agent the rules pick for a new conversation."""
        route = await self.lookup(scope)
        if route is None:
            return self.agents.for_scope(scope), None
        profile = self.agents.by_agent_id(route.agent_id)
        if profile is None:  # created meanwhile by another replica on this store?
            await self.agents.load()
            profile = self.agents.by_agent_id(route.agent_id)
        if (profile is not None and profile is not self.agents.for_scope(scope)
                and scope.key not in self._kept):
            self._kept.add(scope.key)
            log.info("%s stays with agent %s (its route); the rules now pick %s — `reset` "
                     "moves it", scope.key, profile.name, self.agents.for_scope(scope).name)
        return profile, route

    async def lookup(self, scope: Scope) -> Route | None:
        return await self.store.get_route(scope.key)

    async def bind(self, scope: Scope, agent_id: str, conversation_id: str) -> Route:
        return await self.store.set_route(scope.key, agent_id, conversation_id)

    async def reset(self, scope: Scope) -> bool:
        """Forget the scope's conversation; its next message starts a new one."""
        return await self.store.delete_route(scope.key)
