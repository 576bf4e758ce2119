"""What the pipeline's stages hand each other: a :class:`Job`, the :class:`TurnOwner` of
the turn that runs it, and the turn's errors.

Below every stage (intake → scheduler → conversations → turn): each imports these,
none imports another stage for them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from lettabot.runtime.adapter import InboundMessage, Scope

__all__ = [
    "SCHEDULED", "AgentNotConfigured", "ConversationStuck", "Job", "Lease", "SessionBroken",
    "TurnOwner", "has_untrusted_context",
]

SCHEDULED = "schedule:"
"""The message id prefix of a scheduled run (no platform message behind it)."""


def has_untrusted_context(message: InboundMessage) -> bool:
    """Whether ``message`` carries words of people who may not talk to the bot."""
    return any(not (c.trusted or c.from_bot) for c in message.context)


class Lease(Protocol):
    """A cluster replica's hold on a job (:class:`~lettabot.runtime.cluster.inbox.Lease`):
    another replica may take the job over if this one looked dead for a while."""

    def fresh(self) -> bool:
        """Whether the job is surely still this replica's (no round trip)."""
        ...

    async def confirm(self) -> bool:
        """Whether the job is still this replica's (may ask the database)."""
        ...


@dataclass(frozen=True)
class Job:
    """One accepted message waiting for (or having) its turn."""

    message: InboundMessage
    client_message_id: str
    finished: anyio.Event = field(default_factory=anyio.Event, compare=False, repr=False)
    """Set once the job is done with: answered, failed, or dropped (a reset, a shutdown)."""
    lease: Lease | None = field(default=None, compare=False, repr=False)
    """In a cluster: the replica's hold on the job; its turn posts only while it holds."""
    trace: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """The message's trace context (W3C ``traceparent``), so its turn joins its trace."""
    accepted_ns: int = field(default_factory=time.time_ns, compare=False, repr=False)
    """When the message was accepted (ns since the epoch): the start of its wait."""

    @property
    def scope(self) -> Scope:
        return self.message.scope

    @property
    def scheduled(self) -> bool:
        """A scheduled run (no person sent its message)."""
        return self.message.message_id.startswith(SCHEDULED)


@dataclass(frozen=True)
class TurnOwner:
    """The turn a request belongs to: where, which conversation, whose message started it."""

    scope: Scope
    conversation_id: str
    user_id: str
    user_name: str = ""
    agent_id: str | None = None
    message_id: str = ""
    """The platform id of the message that started the turn ("" for a scheduled run)."""
    untrusted: bool = False
    """The turn's input carries words of people who may not talk to the bot (thread
    context): it runs *tainted* — no call runs by mode, rule or the asker's own click,
    only by an approver's (see :meth:`ApprovalBroker.can_use_tool`)."""
    scheduled: bool = False
    """A scheduled run (no person sent its message)."""

    @classmethod
    def of(cls, job: Job, conversation_id: str, agent_id: str | None) -> TurnOwner:
        """The owner of ``job``'s turn in ``conversation_id``."""
        message = job.message
        return cls(job.scope, conversation_id, message.user_id, message.user_name,
                   agent_id=agent_id, message_id="" if job.scheduled else message.message_id,
                   untrusted=has_untrusted_context(message),
                   scheduled=job.scheduled)


class SessionBroken(Exception):
    """A turn failed in a way that makes its session unusable (it is closed and reopened)."""


class ConversationStuck(SessionBroken):
    """The server did not finish a turn (a hung model): the conversation stays busy there,
    so the scope moves to a new conversation (its session is closed, its route dropped)."""


class AgentNotConfigured(Exception):
    """A scope's route names an agent the config no longer has; its message is answered
    with how to move on, not run with another agent's permissions."""
