"""The seam between the runtime and a chat platform.

An adapter knows its platform and nothing about Letta; the runtime knows Letta and
nothing about any platform. Traffic crosses as the small typed values below:

- inbound: the adapter calls the :class:`BotAPI` it is given (``handle_message``,
  ``decide_approval``, ``run_command``);
- outbound: the runtime calls the :class:`Adapter` (``post``, ``edit``, ``typing``,
  ``present_approval``, ``resolve_approval``, ``notify``).

Adapters are found through the entry-point group ``lettabot.adapters``: each entry point
names an :class:`AdapterFactory`, called as ``factory(settings, bot) -> Adapter``:

- ``settings``: the adapter's ``[<name>]`` section, validated once by the config loader
  with the model the package registers under the entry-point group ``lettabot.settings``
  (an :class:`~lettabot.runtime.config.AdapterSettings` subclass) — that model instance
  itself, never a dict of it. An adapter that registers no settings model gets its free-form
  ``[adapters.<name>]`` table as a mapping.
- ``bot``: the :class:`BotAPI`.

A platform's rate limit that outlasts the platform client's own retries is raised from
``post`` / ``edit`` as :class:`RateLimited` (the runtime waits ``retry_after``, then tries
again); any other failure is the platform's own exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Adapter",
    "AdapterFactory",
    "AdapterLimits",
    "ApprovalDecision",
    "ApprovalView",
    "Attachment",
    "BotAPI",
    "Command",
    "CommandResult",
    "ContextMessage",
    "DecisionOutcome",
    "HistoryEntry",
    "InboundMessage",
    "MessageRef",
    "RateLimited",
    "Scope",
    "StreamExpired",
    "SupportsAcknowledge",
    "SupportsDownload",
    "SupportsFeedback",
    "SupportsFiles",
    "SupportsReactions",
    "SupportsReadiness",
    "SupportsStopButton",
    "SupportsStreaming",
    "SupportsThreadContext",
    "approval_full_text",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Scope(_Frozen):
    """Where a conversation lives: (adapter, workspace, channel, thread), or a DM.

    ``workspace`` is the Slack team / Discord guild ("" where there is none, e.g. a DM or
    the web chat). ``thread`` is the thread id (Slack ``thread_ts``, Discord thread
    channel id, a web chat tab id) or None for a channel's top level / a whole DM.
    """

    adapter: str
    workspace: str = ""
    channel: str
    thread: str | None = None
    is_dm: bool = False

    @property
    def key(self) -> str:
        """A stable string key (used by the store): ``slack:T1:C1:1700.1``, ``discord:@me:D9``."""
        parts = [self.adapter, self.workspace or ("@me" if self.is_dm else "-"), self.channel]
        if self.thread:
            parts.append(self.thread)
        return ":".join(p.replace(":", "%3A") for p in parts)

    @classmethod
    def from_key(cls, key: str) -> Scope:
        parts = [p.replace("%3A", ":") for p in key.split(":")]
        if len(parts) not in (3, 4):
            raise ValueError(f"not a scope key: {key!r}")
        adapter, workspace, channel = parts[:3]
        is_dm = workspace == "@me"
        return cls(
            adapter=adapter,
            workspace="" if workspace in ("-", "@me") else workspace,
            channel=channel,
            thread=parts[3] if len(parts) == 4 else None,
            is_dm=is_dm,
        )


class Attachment(_Frozen):
    """A file in a message. The runtime downloads it (:class:`SupportsDownload`): images
    reach the agent as image parts, other files are saved in its workspace."""

    name: str
    url: str | None = None
    content_type: str | None = None
    size: int | None = None
    data_base64: str | None = None
    """An image's bytes, base64 (downloaded): sent to the agent as an image part."""
    saved_as: str | None = None
    """Where the file was saved, relative to the agent's workspace."""
    note: str | None = None
    """Why it was not downloaded (too large, refused), for the agent."""


class ContextMessage(_Frozen):
    """A message posted before the bot was asked (thread context)."""

    user_id: str
    user_name: str = ""
    text: str
    from_bot: bool = False
    """Posted by this bot itself."""
    trusted: bool = False
    """Set by the runtime: its author may talk to the bot here (or it is the bot's own).
    Untrusted messages reach the agent marked as such, and the turn they are part of needs
    an approver's click for every tool call."""


class HistoryEntry(_Frozen):
    """One message of a conversation as people saw it (``BotAPI.history``)."""

    role: Literal["user", "assistant"]
    text: str


class InboundMessage(_Frozen):
    """One chat message, normalised by the adapter."""

    scope: Scope
    user_id: str
    user_name: str = ""
    text: str
    message_id: str
    """The platform's id for this message (Slack ts, Discord snowflake); used for dedupe."""
    event_id: str | None = None
    """The platform's delivery id when it differs (Slack ``event_id``); dedupe prefers it."""
    mentioned: bool = False
    """The bot was @-mentioned (always True in a DM)."""
    is_bot: bool = False
    attachments: tuple[Attachment, ...] = ()
    received_at: datetime | None = None
    context: tuple[ContextMessage, ...] = ()
    """The thread's earlier messages, given to the agent once, when its conversation starts
    (filled in by the runtime through :class:`SupportsThreadContext`)."""
    raw: Mapping[str, Any] | None = Field(default=None, exclude=True, repr=False)

    @property
    def dedupe_id(self) -> str:
        return self.event_id or self.message_id


class MessageRef(_Frozen):
    """A message the adapter posted, so it can be edited later. ``id`` is adapter-defined."""

    scope: Scope
    id: str


class AdapterLimits(_Frozen):
    max_message_length: int = 4000
    can_edit: bool = True
    has_buttons: bool = True
    min_edit_interval: float = 1.0
    """Seconds between edits of one message (the runtime throttles streaming to this)."""
    can_type: bool = True


class ApprovalView(_Frozen):
    """What an approval prompt shows. Buttons carry ``request_id`` (stable across restarts)."""

    request_id: str
    scope: Scope
    tool_name: str
    input_summary: str
    """A readable rendering of the WHOLE tool input (a command, a path, JSON), never cut:
    where it does not fit a message, adapters show a preview marked as such and attach the
    whole of it (see :func:`approval_full_text`)."""
    diff: str | None = None
    """A unified diff preview when the CLI sent one (edits, writes)."""
    requested_by: str | None = None
    """User id of the person whose message started the turn."""
    deciders: tuple[str, ...] = ()
    """User ids (on this platform) who may click; empty: nobody can, the prompt only
    informs (no approvers configured and no self-approval)."""
    allow_always: bool = True
    """Whether to offer "Always allow"."""
    always_covers: str | None = None
    """What "Always allow" would cover (shown beside the button), e.g. "`git status …`
    commands on paths in the workspace, here, for 24 h"."""
    expires_at: datetime | None = None
    untrusted: bool = False
    """The turn carries words of people who may not talk to the bot (thread context):
    only an approver may decide, and ``input_summary`` starts with a line saying so."""


def approval_full_text(view: ApprovalView) -> str:
    """Everything an approval prompt is about, for an attachment: the input and the diff."""
    text = f"{view.tool_name} — input (runs as shown):\n\n{view.input_summary}\n"
    if view.diff:
        text += f"\n--- changes ---\n{view.diff}\n"
    return text


ApprovalDecision = Literal["approve", "deny", "always"]


class DecisionOutcome(_Frozen):
    """What became of a click. Adapters render ``message`` (ephemeral where they can)."""

    status: Literal["decided", "not_authorized", "unknown", "already_decided"]
    message: str
    final_text: str | None = None
    """When decided: the text the approval message should now show, e.g. "Approved by @ada"."""


Command = Literal["reset", "status", "stop", "memory", "help"]


class CommandResult(_Frozen):
    text: str
    ephemeral: bool = False


@runtime_checkable
class BotAPI(Protocol):
    """What an adapter may call on the runtime."""

    async def handle_message(self, message: InboundMessage) -> None:
        """Accept a message. Returns quickly: the turn runs in the background, queued per scope."""
        ...

    async def decide_approval(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str = ""
    ) -> DecisionOutcome:
        """A click: authorise the clicker, decide atomically (a double click decides once)."""
        ...

    async def run_command(
        self, scope: Scope, user_id: str, command: str, args: str = ""
    ) -> CommandResult:
        """``reset`` / ``status`` / ``stop`` / ``memory`` / ``help`` for that scope."""
        ...

    def may_talk(self, adapter: str, user_id: str) -> bool:
        """Whether this user may talk to the bot. Adapters ask before any side effect a
        message would cause (opening a thread, a reaction), so a refused user causes none."""
        ...

    async def record_feedback(self, scope: Scope, message_ref: str, user_id: str,
                              rating: Literal["good", "bad"]) -> bool:
        """A person rated the answer ``message_ref`` (their latest click counts); False
        if they may not talk here (nothing is stored)."""
        ...

    async def history(self, scope: Scope, limit: int = 100) -> list[HistoryEntry]:
        """The scope's conversation so far, oldest first (empty if it has none): for a page
        that lost what it showed (a restart)."""
        ...

    def platform_error(self, adapter: str, status: int | str) -> None:
        """Count a platform API call that failed (HTTP status or error code; 429 counts as
        rate-limited too): ``lettabot_platform_api_errors_total`` on ``/metrics``."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """A chat platform. ``run`` serves until cancelled; the runtime calls the rest."""

    name: str
    limits: AdapterLimits

    async def run(self) -> None:
        """Connect and deliver inbound traffic to the BotAPI until cancelled."""
        ...

    async def post(self, scope: Scope, text: str) -> MessageRef:
        """Post a message (markdown; the adapter converts to its dialect) in the scope."""
        ...

    async def edit(self, ref: MessageRef, text: str) -> None: ...

    async def typing(self, scope: Scope) -> None:
        """Show a working signal for a few seconds (the runtime repeats it while a turn runs)."""
        ...

    async def done(self, scope: Scope) -> None:
        """Remove a working signal (a reaction, a status line) if the platform keeps one."""
        ...

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        """Show an approval prompt with Approve / Deny (/ Always allow) buttons."""
        ...

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        """Replace the buttons with the outcome text ("Approved by @ada", "Timed out")."""
        ...

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        """A short note; only ``user_id`` sees it where the platform supports ephemeral messages."""
        ...


@runtime_checkable
class SupportsReadiness(Protocol):
    """Optional: an adapter that can say whether it is connected (``/readyz`` asks)."""

    def is_ready(self) -> bool:
        """True once connected (gateway, Socket Mode) or listening (HTTP), until it stops."""
        ...

    def where(self) -> str:
        """Where it serves, for the startup summary ("http://127.0.0.1:8787/", "Socket
        Mode"): no secrets."""
        ...


@runtime_checkable
class SupportsAcknowledge(Protocol):
    """Optional: an adapter that marks a message as seen the moment it is accepted (its
    answer may wait behind other turns)."""

    async def acknowledge(self, message: InboundMessage) -> None: ...


@runtime_checkable
class SupportsFeedback(Protocol):
    """Optional: an adapter that can put 👍 / 👎 under a final answer."""

    async def offer_feedback(self, ref: MessageRef) -> None:
        """Show feedback buttons on the answer ``ref`` (its last message); a click reaches
        ``BotAPI.record_feedback``."""
        ...


@runtime_checkable
class SupportsStopButton(Protocol):
    """Optional: an adapter that can show a Stop button while a long turn runs."""

    async def show_stop(self, scope: Scope) -> MessageRef:
        """A small message with a Stop button; a click runs the ``stop`` command for the
        clicker (who must be the asker or an approver)."""
        ...

    async def hide_stop(self, ref: MessageRef) -> None:
        """Remove it: the turn ended."""
        ...


class RateLimited(Exception):
    """The platform answered "too many requests" (HTTP 429): adapters raise it from their
    platform's rate-limit error (``raise RateLimited(seconds) from exc``); the runtime
    waits ``retry_after`` seconds (its own backoff when None) and tries again."""

    def __init__(self, retry_after: float | None = None, message: str = "") -> None:
        self.retry_after = retry_after
        wait = f"; retry after {retry_after:.1f} s" if retry_after is not None else ""
        super().__init__(message or f"rate limited{wait}")


class StreamExpired(Exception):
    """The platform ended a stream (Slack's ~5-minute limit): the rest goes into a new one."""


@runtime_checkable
class SupportsStreaming(Protocol):
    """Optional: an adapter whose platform streams a reply natively (append-only), e.g.
    Slack's ``chat.startStream`` / ``appendStream`` / ``stopStream``."""

    stream_chars: int
    """A streamed message holds at most this much; the rest rolls over into a new one."""

    def can_stream(self, scope: Scope) -> bool:
        """Whether a reply in ``scope`` should stream natively (else post + edits)."""
        ...

    async def start_stream(self, scope: Scope, text: str, *,
                           user_id: str | None = None) -> MessageRef:
        """Start a streamed message with ``text`` (markdown) for the asker ``user_id``;
        raises if the platform refuses (the runtime then posts and edits instead)."""
        ...

    async def append_stream(self, ref: MessageRef, text: str) -> None:
        """Append ``text``; raises :class:`StreamExpired` when the stream has ended."""
        ...

    async def stop_stream(self, ref: MessageRef, text: str = "") -> None:
        """Append ``text`` and end the stream; raises :class:`StreamExpired` as above."""
        ...


@runtime_checkable
class SupportsFiles(Protocol):
    """Optional: an adapter that can post a file (the agent's ``send_file``, a long reply)."""

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        """Post ``data`` as a file called ``name`` in the scope, with ``comment`` (markdown)."""
        ...


@runtime_checkable
class SupportsReactions(Protocol):
    """Optional: an adapter that can react to a message (the agent's ``react``)."""

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        """Add ``emoji`` (a character such as "👍", or a short name such as "thumbsup")
        to the message ``message_id``; raises ``ValueError`` for an emoji it cannot show."""
        ...


@runtime_checkable
class SupportsDownload(Protocol):
    """Optional: an adapter that can fetch a message's files (with its own credentials)."""

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        """The file's bytes; raises ``ValueError`` if it is larger than ``limit`` bytes or
        its URL is not the platform's."""
        ...


@runtime_checkable
class SupportsThreadContext(Protocol):
    """Optional: an adapter that can read what a thread said before the bot was asked."""

    async def thread_context(self, message: InboundMessage,
                             limit: int) -> list[ContextMessage]:
        """At most ``limit`` messages of ``message``'s thread before it, oldest first
        (empty when it starts the thread)."""
        ...


class AdapterFactory(Protocol):
    """The object an entry point in ``lettabot.adapters`` names: ``factory(settings, bot)``.

    ``settings`` is the validated settings model of the adapter's section (the class its
    ``lettabot.settings`` entry point names), or the ``[adapters.<name>]`` mapping for an
    adapter that registers none (see the module docstring)."""

    def __call__(self, settings: Any, bot: BotAPI) -> Adapter: ...
