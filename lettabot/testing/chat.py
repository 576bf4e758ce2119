"""An in-process chat adapter for tests (like Errbot's test backend).

:class:`TestChat` implements the :class:`~lettabot.runtime.adapter.Adapter` protocol and
records everything the runtime does to it (posts with every edit, approval prompts and
how they were resolved, notes, typing signals); tests ``push`` messages and ``click``
buttons through the real :class:`~lettabot.runtime.adapter.BotAPI`::

    async with Bot.open(config) as bot:
        chat = bot.add_adapter(TestChat(bot))
        scope = chat.scope("C1", "t1")
        await chat.push("hello", scope=scope)
        await chat.wait_text(scope, "You said: hello")

Adapters of other platforms can use it as the reference for the runtime's calls.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from lettabot.runtime.adapter import (
    AdapterLimits,
    ApprovalDecision,
    ApprovalView,
    BotAPI,
    CommandResult,
    ContextMessage,
    DecisionOutcome,
    InboundMessage,
    MessageRef,
    Scope,
)

__all__ = ["Note", "Posted", "Prompt", "TestChat"]

T = TypeVar("T")


@dataclass
class Posted:
    """A message the bot posted; ``versions`` holds its text after the post and each edit."""

    ref: MessageRef
    versions: list[str]

    @property
    def text(self) -> str:
        return self.versions[-1]

    @property
    def scope(self) -> Scope:
        return self.ref.scope


@dataclass
class Prompt:
    """An approval prompt; ``resolved`` is the text it was resolved with, if it was."""

    view: ApprovalView
    ref: MessageRef
    resolved: str | None = None
    resolutions: list[str] = field(default_factory=list)

    @property
    def request_id(self) -> str:
        return self.view.request_id


@dataclass(frozen=True)
class SentFile:
    scope: Scope
    name: str
    data: bytes
    comment: str


@dataclass(frozen=True)
class Note:
    scope: Scope
    text: str
    user_id: str | None


class TestChat:
    """The test adapter. ``bot`` may be set after construction (``chat.bot = bot``)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        bot: BotAPI | None = None,
        *,
        name: str = "test",
        limits: AdapterLimits | None = None,
        fail_posts: int = 0,
    ) -> None:
        self.bot = bot
        self.name = name
        self.limits = limits or AdapterLimits(max_message_length=4000, min_edit_interval=0.05)
        self.posts: list[Posted] = []
        self.prompts: list[Prompt] = []
        self.notes: list[Note] = []
        self.files: list[SentFile] = []
        self.stop_buttons: dict[str, bool] = {}
        """Stop buttons shown, by ref id → whether it was removed again."""
        self.reactions: list[tuple[Scope, str, str]] = []
        """(scope, message id, emoji) per reaction the bot added."""
        self.threads: dict[str, list[ContextMessage]] = {}
        """What people wrote in a thread without the bot being asked (:meth:`said`), by
        scope key: what :meth:`thread_context` returns."""
        self.typing_count: dict[str, int] = {}
        self.done_count: dict[str, int] = {}
        self.running = False
        self.connected = True
        """What :meth:`is_ready` says while running (a test can "disconnect" the chat)."""
        self._ids = itertools.count(1)
        self._changed = anyio.Event()
        self._fail_posts = fail_posts

    # -- Adapter ----------------------------------------------------------------------

    async def run(self) -> None:
        self.running = True
        try:
            await anyio.sleep_forever()
        finally:
            self.running = False

    def is_ready(self) -> bool:
        return self.running and self.connected

    def where(self) -> str:
        return f"in-process test chat {self.name!r}"

    async def post(self, scope: Scope, text: str) -> MessageRef:
        if self._fail_posts:
            self._fail_posts -= 1
            raise RuntimeError("scripted post failure")
        ref = MessageRef(scope=scope, id=f"m{next(self._ids)}")
        self.posts.append(Posted(ref, [text]))
        self._touch()
        return ref

    async def edit(self, ref: MessageRef, text: str) -> None:
        if not self.limits.can_edit:
            raise RuntimeError("this test chat cannot edit")
        for posted in self.posts:
            if posted.ref == ref:
                posted.versions.append(text)
                self._touch()
                return
        raise KeyError(f"no message {ref.id}")

    async def typing(self, scope: Scope) -> None:
        self.typing_count[scope.key] = self.typing_count.get(scope.key, 0) + 1

    async def done(self, scope: Scope) -> None:
        self.done_count[scope.key] = self.done_count.get(scope.key, 0) + 1
        self._touch()

    async def present_approval(self, view: ApprovalView) -> MessageRef:
        ref = MessageRef(scope=view.scope, id=f"a{next(self._ids)}")
        self.prompts.append(Prompt(view, ref))
        self._touch()
        return ref

    async def resolve_approval(self, ref: MessageRef, view: ApprovalView, text: str) -> None:
        for prompt in self.prompts:
            if prompt.ref == ref:
                prompt.resolved = text
                prompt.resolutions.append(text)
                self._touch()
                return
        # A prompt from before a restart (another TestChat instance): record it anyway.
        self.prompts.append(Prompt(view, ref, text, [text]))
        self._touch()

    async def notify(self, scope: Scope, text: str, *, user_id: str | None = None) -> None:
        self.notes.append(Note(scope, text, user_id))
        self._touch()

    async def send_file(self, scope: Scope, name: str, data: bytes, *,
                        comment: str = "") -> MessageRef:
        self.files.append(SentFile(scope, name, data, comment))
        self._touch()
        return MessageRef(scope=scope, id=f"f{next(self._ids)}")

    async def show_stop(self, scope: Scope) -> MessageRef:
        ref = MessageRef(scope=scope, id=f"stop{next(self._ids)}")
        self.stop_buttons[ref.id] = False
        self._touch()
        return ref

    async def hide_stop(self, ref: MessageRef) -> None:
        self.stop_buttons[ref.id] = True
        self._touch()

    async def react(self, scope: Scope, message_id: str, emoji: str) -> None:
        if not emoji or emoji.isspace():
            raise ValueError("no emoji")
        self.reactions.append((scope, message_id, emoji))
        self._touch()

    async def thread_context(self, message: InboundMessage,
                             limit: int) -> list[ContextMessage]:
        return list(self.threads.get(message.scope.key, []))[-limit:]

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- driving ------------------------------------------------------------------------

    def scope(self, channel: str = "C1", thread: str | None = None, *, dm: bool = False,
              workspace: str = "W1") -> Scope:
        return Scope(adapter=self.name, workspace="" if dm else workspace, channel=channel,
                     thread=thread, is_dm=dm)

    def _bot(self) -> BotAPI:
        if self.bot is None:
            raise RuntimeError("TestChat has no bot; pass it or set chat.bot")
        return self.bot

    async def push(
        self,
        text: str,
        *,
        scope: Scope | None = None,
        user: str = "U1",
        user_name: str = "",
        mentioned: bool = True,
        message_id: str | None = None,
        event_id: str | None = None,
        is_bot: bool = False,
    ) -> InboundMessage:
        """Deliver a message to the bot as the platform would; returns it."""
        message = InboundMessage(
            scope=scope or self.scope(), user_id=user, user_name=user_name or user, text=text,
            message_id=message_id or f"in-{uuid.uuid4().hex[:12]}", event_id=event_id,
            mentioned=mentioned, is_bot=is_bot,
        )
        await self._bot().handle_message(message)
        return message

    def said(self, text: str, *, scope: Scope, user: str = "U1", user_name: str = "",
             from_bot: bool = False) -> None:
        """Someone wrote ``text`` in ``scope``'s thread without asking the bot (the bot
        does not see it then; it is the thread's context when the bot is first asked)."""
        self.threads.setdefault(scope.key, []).append(ContextMessage(
            user_id=user, user_name=user_name or user, text=text, from_bot=from_bot))

    async def redeliver(self, message: InboundMessage) -> None:
        """Deliver the same platform event again (a platform retry)."""
        await self._bot().handle_message(message)

    async def click(self, request_id: str, decision: ApprovalDecision = "approve",
                    user: str = "U1", user_name: str = "") -> DecisionOutcome:
        return await self._bot().decide_approval(request_id, decision, user, user_name or user)

    async def command(self, command: str, *, scope: Scope | None = None, user: str = "U1",
                      args: str = "") -> CommandResult:
        return await self._bot().run_command(scope or self.scope(), user, command, args)

    # -- reading -----------------------------------------------------------------------

    def messages(self, scope: Scope) -> list[Posted]:
        return [p for p in self.posts if p.scope == scope]

    def texts(self, scope: Scope) -> list[str]:
        """The current text of each message posted in ``scope``, oldest first."""
        return [p.text for p in self.messages(scope)]

    def transcript(self, scope: Scope) -> str:
        return "\n".join(self.texts(scope))

    async def wait_for(self, probe: Callable[[], T | None], within: float = 60.0) -> T:
        """Wait until ``probe()`` returns something truthy (re-checked on every change)."""
        with anyio.fail_after(within):
            while True:
                changed = self._changed
                value = probe()
                if value:
                    return value
                with anyio.move_on_after(0.5):  # also poll: state may change without a touch
                    await changed.wait()

    async def wait_text(self, scope: Scope, needle: str, within: float = 60.0) -> str:
        """Wait until a message in ``scope`` contains ``needle``; returns that message's text."""
        return await self.wait_for(
            lambda: next((t for t in self.texts(scope) if needle in t), None), within)

    async def wait_done(self, scope: Scope, count: int = 1, within: float = 60.0) -> None:
        """Wait until ``count`` turns have ended in ``scope``."""
        await self.wait_for(lambda: self.done_count.get(scope.key, 0) >= count, within)

    async def wait_prompt(self, scope: Scope | None = None, *, index: int = -1,
                          within: float = 60.0) -> Prompt:
        """Wait for an (unresolved) approval prompt in ``scope`` (any scope if None)."""
        def probe() -> Prompt | None:
            open_ = [p for p in self.prompts if p.resolved is None
                     and (scope is None or p.view.scope == scope)]
            return open_[index] if open_ else None
        return await self.wait_for(probe, within)

    async def wait_resolved(self, prompt: Prompt, within: float = 60.0) -> str:
        return await self.wait_for(lambda: prompt.resolved, within)
