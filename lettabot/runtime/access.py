"""Who may talk to the bot, and when a message is for it.

A message is accepted when its author is allowed (``access.allowed_users``, approvers
always), it is not from a bot (unless the adapter's ``allow_bots``), and it is for the
bot: a DM, a mention, or a scope that already has a conversation (a thread the bot
answered) — in channels without ``access.require_mention`` every message counts.

Dedupe of platform retries is :meth:`claim`: call it only once the message is accepted
and about to be queued (never before, so a refused message is not marked as processed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from lettabot.runtime.adapter import InboundMessage
from lettabot.runtime.config import AccessConfig, AdapterSettings
from lettabot.runtime.store import Store

__all__ = ["DEDUPE_TTL", "AccessPolicy", "Verdict"]

DEDUPE_TTL = timedelta(hours=24)
"""How long a platform event id is remembered (platform retries come within minutes)."""

DEFAULT_REFUSAL = "Sorry, you are not allowed to use this bot."


@dataclass(frozen=True)
class Verdict:
    """What to do with a message: ``accept`` it, or ``ignore`` it (with a reply, maybe)."""

    action: Literal["accept", "ignore"]
    reason: str
    reply: str | None = None
    """A note for the author (e.g. the adapter's ``unauthorized_reply``), or None for silence."""


class AccessPolicy:
    """The access rules of one bot."""

    def __init__(
        self, config: AccessConfig,
        adapter_settings: Mapping[str, AdapterSettings | Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self._adapters = dict(adapter_settings or {})

    def _setting(self, adapter: str, key: str, default: Any) -> Any:
        """``key`` of the adapter's settings (its validated model, or a free-form table)."""
        section = self._adapters.get(adapter)
        if isinstance(section, Mapping):
            return section.get(key, default)
        return getattr(section, key, default)

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return self.config.is_allowed_user(adapter, user_id)

    def may_approve(self, adapter: str, user_id: str, requested_by: str | None) -> bool:
        """Approvers if configured; else the person whose message started the turn, where
        self-approval is on (``access.self_approve``); else nobody."""
        if self.config.approvers:
            return self.config.is_approver(adapter, user_id)
        if not self.config.may_self_approve(adapter):
            return False
        return requested_by is not None and user_id == requested_by and self.may_talk(
            adapter, user_id)

    def deciders(self, adapter: str, requested_by: str | None) -> tuple[str, ...]:
        """The user ids on ``adapter`` who may decide a request asked by ``requested_by``
        (what a prompt shows under its buttons)."""
        if self.config.approvers:
            prefix = f"{adapter}:"
            return tuple(dict.fromkeys(
                e.removeprefix(prefix) for e in self.config.approvers
                if e.startswith(prefix) or ":" not in e))
        if self.config.may_self_approve(adapter) and requested_by:
            return (requested_by,)
        return ()

    def approvers_text(self, adapter: str) -> str:
        """Who may decide a request here, for prompts and refusals."""
        if self.config.approvers:
            return "the configured approvers"
        if self.config.may_self_approve(adapter):
            return "the person whose message started this turn"
        return "nobody (no access.approvers are configured)"

    def check(self, message: InboundMessage, *, has_conversation: bool) -> Verdict:
        """Judge ``message`` (``has_conversation``: its scope already has a route)."""
        scope = message.scope
        if message.is_bot and not self._setting(scope.adapter, "allow_bots", False):
            return Verdict("ignore", "from a bot")
        addressed = (
            scope.is_dm
            or message.mentioned
            or has_conversation
            or not self.config.require_mention
        )
        if not addressed:
            return Verdict("ignore", "not addressed to the bot (no mention)")
        if not self.may_talk(scope.adapter, message.user_id):
            reply = self._setting(scope.adapter, "unauthorized_reply", DEFAULT_REFUSAL)
            return Verdict("ignore", "user not allowed", reply or None)
        return Verdict("accept", "ok")

    @staticmethod
    async def claim(store: Store, message: InboundMessage) -> bool:
        """Mark the platform event processed; False if it was already (a retry)."""
        return await store.claim_event(message.scope.adapter, message.dedupe_id, DEDUPE_TTL)
