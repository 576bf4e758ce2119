"""Chat commands, implemented once for every adapter: reset, status, stop, memory, rules,
schedules, help.

Adapters map their native form (Slack slash commands, Discord application commands, a
web button) onto :meth:`Commands.run`; :func:`parse_command` recognises the plain-text
form ``/reset`` or ``!reset`` for adapters that have no native one. Only allowed users.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import CommandResult, Scope
from lettabot.runtime.approvals import ApprovalBroker
from lettabot.runtime.budget_commands import budget_command, status_line, usage_text
from lettabot.runtime.budgets import Budgets
from lettabot.runtime.chat_tools import ToolRefused, cancel_schedule
from lettabot.runtime.conversations import Conversations
from lettabot.runtime.mcp import McpServers
from lettabot.runtime.router import Router
from lettabot.runtime.scheduler import Scheduler
from lettabot.runtime.schedules import describe

__all__ = ["COMMANDS", "Commands", "memory_dir", "memory_summary", "parse_command"]

COMMANDS = {
    "reset": "start a new conversation in this thread (the agent's memory is kept)",
    "status": "agent, conversation, model, queue, pending approvals, servers, MCP servers",
    "stop": "interrupt the running turn",
    "memory": "list the agent's memory files",
    "rules": "list this thread's \"Always allow\" rules; `rules revoke <id>` (approvers)",
    "schedules": "list this thread's schedules; `schedules cancel <id>` (its creator or "
                 "an approver)",
    "usage": "today's tokens (and cost) of you, this thread and the bot, against the budgets",
    "budget": "`budget lift [tokens]`: lift this thread's budgets for today (approvers)",
    "help": "this list",
}


def parse_command(text: str) -> tuple[str, str] | None:
    """``/reset`` / ``!status extra`` → (command, args); None for ordinary text."""
    m = re.match(r"^\s*[/!]([a-z]+)\b\s*(.*)$", text, re.S)
    if not m or m.group(1) not in COMMANDS:
        return None
    return m.group(1), m.group(2).strip()


def memory_dir(agent_id: str, env: Mapping[str, str] | None = None) -> Path:
    """The agent's memfs folder on the local backend of the CLI's environment ``env``."""
    return sdk.memory_dir(agent_id, env)


def _first_line(path: Path) -> str:
    """The file's ``description`` (front matter), else its first non-empty body line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(unreadable)"
    body = text
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            front, body = text[3:end], text[end + 4 :]
            m = re.search(r"(?m)^description:\s*(.+)$", front)
            if m:
                return m.group(1).strip()
    for line in body.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 120 else line[:119] + "…"
    return "(empty)"


def memory_summary(agent_id: str, env: Mapping[str, str] | None = None) -> str:
    folder = memory_dir(agent_id, env)
    if not folder.is_dir():
        return (f"No local memory folder for {agent_id} (the agent may live on Letta Cloud or a "
                "Letta server, where its memory files are not on this machine).")
    files = sorted(p for p in folder.glob("*.md") if p.is_file())
    if not files:
        return f"Agent {agent_id} has no memory files yet."
    lines = [f"Memory of {agent_id} ({len(files)} files):"]
    lines += [f"• `{p.name}` — {_first_line(p)}" for p in files]
    return "\n".join(lines)


class Commands:
    """The command implementations for one bot."""

    def __init__(
        self,
        *,
        access: AccessPolicy,
        router: Router,
        scheduler: Scheduler,
        conversations: Conversations,
        broker: ApprovalBroker,
        model: str | None = None,
        cli_env: Mapping[str, str] | None = None,
        budgets: Budgets | None = None,
        mcp: McpServers | None = None,
    ) -> None:
        self.budgets = budgets
        self.mcp = mcp
        self.cli_env = cli_env
        self.access = access
        self.router = router
        self.scheduler = scheduler
        self.conversations = conversations
        self.broker = broker
        self.model = model
        self.drop_held: Callable[[Scope], Awaitable[int]] | None = None
        """With ``[[hosts]]``: drops the scope's messages waiting for its agent's host."""

    async def _access(self, scope: Scope) -> AccessPolicy:
        """The access rules of the agent serving ``scope`` (its approvers may talk there)."""
        profile, _ = await self.router.profile_for(scope)
        return profile.access if profile is not None else self.access

    async def run(self, scope: Scope, user_id: str, command: str, args: str = "") -> CommandResult:
        if not (await self._access(scope)).may_talk(scope.adapter, user_id):
            return CommandResult(text="Sorry, you are not allowed to use this bot.",
                                 ephemeral=True)
        name = command.strip().lstrip("/!").lower()
        if name == "reset":
            had, dropped = await self.scheduler.reset(scope)
            if self.drop_held is not None:
                dropped += await self.drop_held(scope)
            cleared = await self.broker.store.clear_allow_rules(scope.key)
            text = ("Started a new conversation here (the agent's memory is kept)." if had
                    else "There was no conversation here yet; the next message starts one.")
            if dropped:
                text += (f" {dropped} message{'s' * (dropped != 1)} still waiting for an answer "
                         f"{'were' if dropped != 1 else 'was'} dropped; send again what you "
                         "still need.")
            if cleared:
                text += f" {cleared} \"Always allow\" rule{'s' * (cleared != 1)} cleared."
            return CommandResult(text=text)
        if name == "rules":
            return await self._rules(scope, user_id, args)
        if name == "schedules":
            return await self._schedules(scope, user_id, args)
        if name == "stop":
            asker = self.scheduler.running_user(scope)
            access = await self._access(scope)
            if asker is not None and user_id != asker and not (
                    access.config.approvers and access.config.is_approver(scope.adapter, user_id)):
                return CommandResult(text="Only the person who asked or an approver can stop "
                                          "this turn.", ephemeral=True)
            stopped = await self.scheduler.stop(scope, reason=f"stopped by {user_id}")
            return CommandResult(text="Stopping the running turn." if stopped
                                 else "Nothing is running here.", ephemeral=not stopped)
        if name == "status":
            text = await self._status(scope)
            if self.budgets is not None:
                text += "\n" + await status_line(self.budgets, scope, user_id)
            return CommandResult(text=text, ephemeral=True)
        if name == "usage" and self.budgets is not None:
            return CommandResult(text=await usage_text(self.budgets, scope, user_id),
                                 ephemeral=True)
        if name == "budget" and self.budgets is not None:
            return await budget_command(self.budgets, await self._access(scope), scope,
                                        user_id, args)
        if name == "memory":
            route = await self.router.lookup(scope)
            agent = route.agent_id if route else await self.router.agent_id(
                self.router.agents.for_scope(scope))
            return CommandResult(text=memory_summary(agent, self.cli_env), ephemeral=True)
        if name == "help":
            lines = ["Commands:", *(f"• `{n}` — {d}" for n, d in COMMANDS.items())]
            return CommandResult(text="\n".join(lines), ephemeral=True)
        return CommandResult(text=f"Unknown command {command!r}. Try `help`.", ephemeral=True)

    async def _rules(self, scope: Scope, user_id: str, args: str) -> CommandResult:
        store = self.broker.store
        words = args.split()
        if words and words[0] in ("revoke", "remove", "delete"):
            if not (await self._access(scope)).config.is_approver(scope.adapter, user_id):
                return CommandResult(text="Only the configured approvers can revoke rules.",
                                     ephemeral=True)
            if len(words) != 2:
                return CommandResult(text="Write `rules revoke <id>` (ids from `rules`).",
                                     ephemeral=True)
            mine = {r.id for r in await store.list_allow_rules(scope.key)}
            if words[1] not in mine or not await store.remove_allow_rule(words[1]):
                return CommandResult(text=f"No rule {words[1]!r} here.", ephemeral=True)
            return CommandResult(text=f"Rule `{words[1]}` revoked by {user_id}.")
        rules = await store.list_allow_rules(scope.key)
        if not rules:
            return CommandResult(text="No \"Always allow\" rules here.", ephemeral=True)
        lines = [f"\"Always allow\" rules here ({len(rules)}):"]
        for r in rules:
            what = {"prefix": f"`{r.pattern} …` commands", "command": f"exactly `{r.pattern}`",
                    "path": f"under `{r.pattern}`", "input": "one exact input"}.get(r.kind, r.kind)
            lines.append(f"• `{r.id}` {r.tool_name}: {what} — by {r.created_by}, until "
                         f"{r.expires_at:%Y-%m-%d %H:%M} UTC")
        return CommandResult(text="\n".join(lines), ephemeral=True)

    async def _schedules(self, scope: Scope, user_id: str, args: str) -> CommandResult:
        store = self.broker.store
        words = args.split()
        if words and words[0] in ("cancel", "remove", "delete"):
            if len(words) != 2:
                return CommandResult(text="Write `schedules cancel <id>` (ids from "
                                          "`schedules`).", ephemeral=True)
            try:
                text = await cancel_schedule(store, scope.key, words[1], scope.adapter, user_id,
                                             await self._access(scope))
            except ToolRefused as exc:
                return CommandResult(text=f"Not cancelled: {exc}.", ephemeral=True)
            return CommandResult(text=f"{text} (by {user_id})")
        found = await store.list_schedules(scope.key)
        if not found:
            return CommandResult(text="No schedules here. Ask the agent, e.g. “remind us every "
                                      "weekday at 9:00 to post the standup”.", ephemeral=True)
        lines = [f"Schedules here ({len(found)}):", *(f"• {describe(s)}" for s in found)]
        return CommandResult(text="\n".join(lines), ephemeral=True)

    async def _status(self, scope: Scope) -> str:
        route = await self.router.lookup(scope)
        conversation = self.conversations.get(scope)
        session = conversation.session if conversation else None
        model = (session.init.model if session and session.init else None) or self.model
        profile, _ = await self.router.profile_for(scope)
        if route is None:
            profile = self.router.agents.for_scope(scope)
        agent = route.agent_id if route else await self.router.agent_id(profile)
        name = f" ({profile.name})" if profile is not None else " (no longer configured)"
        pending = len(await self.broker.store.list_pending(scope.key))
        running = self.scheduler.running_user(scope) is not None
        lines = [
            f"Agent: `{agent}`{name}",
            f"Conversation: `{route.conversation_id}`" if route
            else "Conversation: none yet (the next message starts one)",
            f"Model: {model or 'the agent default'}",
            f"Turn running: {'yes' if running else 'no'}; queued here: "
            f"{self.scheduler.queued(scope)}",
            f"Pending approvals here: {pending}",
            f"Turns running everywhere: {self.scheduler.running()} of "
            f"{self.scheduler.gate.size} (waiting: {self.scheduler.gate.waiting})",
        ]
        for server in self.conversations.server_states():
            state = "up" if server.get("alive") else "not running"
            pid = f", pid {server['pid']}" if server.get("pid") else ""
            lines.append(f"Server {server['index']}: {state}{pid}, "
                         f"{server['sessions']} open conversations")
        if self.mcp is not None and profile is not None:
            lines += self.mcp.describe(profile.name, session)
        return "\n".join(lines)
