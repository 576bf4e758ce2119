"""Reply rendering: markdown-safe splitting and a throttled post-then-edit stream.

- :func:`close_open_markup` closes an open code fence, inline code span or ``**`` in
  partial text, so a half-streamed reply renders cleanly.
- :func:`split_message` cuts a long reply into messages at paragraph or fence
  boundaries; a cut inside a code block closes the fence and reopens it in the next part.
- :class:`ReplyStream` shows a reply as it grows: posts once, then edits no faster than
  ``limits.min_edit_interval`` (the next edit is scheduled only after the last one
  finished), and rolls over into a new message when the text outgrows
  ``limits.max_message_length``. Adapters that cannot edit get the whole reply at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import anyio
from opentelemetry.trace import Span

from lettabot.runtime.adapter import (
    Adapter,
    MessageRef,
    RateLimited,
    Scope,
    StreamExpired,
    SupportsFiles,
    SupportsStreaming,
)
from lettabot.runtime.reveal import reveal
from lettabot.runtime.tracing import post_span, retried

__all__ = ["NativeStream", "ReplyStream", "close_open_markup", "reply_stream", "split_message",
           "tool_line"]

log = logging.getLogger("lettabot.runtime.render")

_CLOSER_ROOM = 8
"""Characters kept free in a streamed message for what close_open_markup may append."""
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class _Fence:
    marker: str  # "```" or "~~~~" (the opening run)
    header: str  # the whole opening line, e.g. "```python"


def open_fence(text: str) -> _Fence | None:
    """The code fence still open at the end of ``text``, if any."""
    current: _Fence | None = None
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if not m:
            continue
        run, rest = m.group(1), m.group(2)
        if current is None:
            if run[0] == "`" and "`" in rest:
                continue  # inline code, not a fence
            current = _Fence(run, line.strip())
        elif run[0] == current.marker[0] and len(run) >= len(current.marker) and not rest.strip():
            current = None
    return current


def _outside_code(text: str) -> str:
    """``text`` without fenced blocks (closed or open) and inline code spans."""
    out: list[str] = []
    fence: _Fence | None = None
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is None and m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = _Fence(m.group(1), line)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence.marker[0] and len(m.group(1)) >= len(fence.marker) \
                    and not m.group(2).strip():
                fence = None
            continue
        out.append(line)
    return re.sub(r"`[^`\n]*`", "", "\n".join(out))


def close_open_markup(text: str) -> str:
    """Close what partial markdown left open: a fence, an inline code span, ``**``."""
    fence = open_fence(text)
    if fence is not None:
        return text + ("" if text.endswith("\n") else "\n") + fence.marker
    plain = _outside_code(text)
    suffix = ""
    if plain.count("`") % 2:
        suffix += "`"
        plain = plain[: plain.rfind("`")]
    if plain.count("**") % 2:
        suffix += "**"
    return text + suffix


def _cut_point(body: str, budget: int, floor: int) -> int:
    """Where to cut ``body`` so the head fits ``budget``: a paragraph break outside code,
    a line before a fence, any line break, a space, or hard at ``budget``."""
    window = body[:budget]
    best_para = -1
    for m in re.finditer(r"\n\n+", window):
        if m.start() > floor and open_fence(window[: m.start()]) is None:
            best_para = m.start()
    if best_para > 0:
        return best_para
    for m in re.finditer(r"\n(?= {0,3}(```|~~~))", window):
        if m.start() > floor and open_fence(window[: m.start()]) is None:
            best_para = m.start()
    if best_para > 0:
        return best_para
    newline = window.rfind("\n")
    if newline > floor:
        return newline
    space = window.rfind(" ")
    if space > floor:
        return space
    return budget


def split_message(text: str, max_len: int) -> list[str]:
    """Split ``text`` into parts of at most ``max_len`` characters (see module doc)."""
    if max_len < 40:
        raise ValueError("max_len must be at least 40")
    parts: list[str] = []
    rest = text
    reopen = ""
    while len(reopen) + len(rest) > max_len:
        body = reopen + rest
        fence_room = 8 + (len(reopen) if reopen else 12)
        budget = max_len - fence_room
        cut = _cut_point(body, budget, max(len(reopen), budget // 3))
        cut = max(cut, len(reopen) + 1)  # always past the reopened fence: progress
        head, rest = body[:cut], body[cut:]
        fence = open_fence(head)
        if fence is not None:
            head = head.rstrip("\n") + "\n" + fence.marker
            # a long info string ("```x…x") reopened in every part would leave no room for
            # the content: reopen with the bare marker then
            header = fence.header if len(fence.header) <= max_len // 4 else fence.marker
            reopen = header[: max_len // 4] + "\n"
            rest = rest.lstrip("\n")
        else:
            reopen = ""
            rest = rest.lstrip("\n") if rest.startswith("\n") else rest.lstrip(" ")
        parts.append(head.rstrip())
    last = reopen + rest
    if last.strip() or not parts:
        parts.append(last)
    return parts


def tool_line(tool_name: str, tool_input: dict[str, Any], width: int = 80) -> str:
    """A compact one-line view of a tool call: ``🔧 Bash: ls -la``."""
    detail = tool_input.get("command") or tool_input.get("file_path") or tool_input.get("path")
    if not isinstance(detail, str):
        detail = json.dumps(tool_input, ensure_ascii=False, default=str) if tool_input else ""
    detail = reveal(" ".join(detail.split()).replace("`", "'"))[0]
    if len(detail) > width:
        detail = detail[: width - 1] + "…"
    return f"🔧 {tool_name}: `{detail}`" if detail else f"🔧 {tool_name}"


POST_ATTEMPTS = 3
"""Tries per post before a reply is reported lost in the thread."""


class ReplyStream:
    """One reply in one scope, growing as the agent streams; see the module doc.

    Start :meth:`run` in a task group, call :meth:`update` with the full text so far,
    then :meth:`finish` (which stops :meth:`run` and writes the final text).
    """

    def __init__(self, adapter: Adapter, scope: Scope, *,
                 as_file_after: int | None = None) -> None:
        self.adapter = adapter
        self.scope = scope
        self.as_file_after = as_file_after if isinstance(adapter, SupportsFiles) else None
        """A reply longer than this many messages shows only those, and the whole reply
        is sent as a file (where the adapter takes files)."""
        self.filed = False
        self.limits = adapter.limits
        self.text = ""
        self.refs: list[MessageRef] = []
        self._shown: list[str] = []
        self._dirty = anyio.Event()
        self._finished = False
        self._scope = anyio.CancelScope()
        self._writing = anyio.Lock()
        """One writer: a post still in flight when the turn ends must be edited, not
        posted a second time."""

    @property
    def streaming(self) -> bool:
        return self.limits.can_edit

    def update(self, text: str) -> None:
        """The reply's full text so far."""
        if text != self.text:
            self.text = text
            self._dirty.set()

    async def run(self) -> None:
        """Flush changes, one write at a time, at most every ``min_edit_interval`` s."""
        if not self.streaming:
            return
        with self._scope:
            while not self._finished:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                if self.text.strip():
                    try:
                        await self._write(final=False)
                    except Exception:  # the final write tries again
                        log.warning("updating a reply in %s failed", self.scope.key,
                                    exc_info=True)
                await anyio.sleep(self.limits.min_edit_interval)

    async def finish(self, text: str | None = None) -> list[MessageRef]:
        """Write the final text (split into as many messages as needed); returns the refs."""
        if text is not None:
            self.text = text
        self._finished = True
        self._scope.cancel()
        if self.text.strip():
            await self._write(final=True)
        return self.refs

    async def _write(self, *, final: bool) -> None:
        with anyio.CancelScope(shield=True):  # a post half-recorded would be posted twice
            async with self._writing:
                if not final and self._finished:
                    return  # the final write is done or next: never show a stale partial
                limit = self.limits.max_message_length
                if self.streaming:  # the same cuts while streaming and at the end
                    limit = max(40, limit - _CLOSER_ROOM)
                parts = split_message(self.text, limit)
                long = self.as_file_after is not None and len(parts) > self.as_file_after
                if long:
                    parts = parts[: self.as_file_after]
                if not final or long:
                    parts[-1] = close_open_markup(parts[-1])
                for i, part in enumerate(parts):
                    if i < len(self.refs):
                        if self._shown[i] != part:
                            await self._safe_edit(i, part, final=final)
                    else:
                        ref = await self._post(part)
                        self.refs.append(ref)
                        self._shown.append(part)
                if final and long and not self.filed:
                    await self._send_as_file()

    async def _send_as_file(self) -> None:
        """The whole reply as ``reply.md``; if that fails, the rest as messages after all."""
        assert isinstance(self.adapter, SupportsFiles)
        try:
            await self.adapter.send_file(
                self.scope, "reply.md", self.text.encode("utf-8"),
                comment=f"📎 The whole answer ({len(self.text):,} characters) is in this file.")
            self.filed = True
        except Exception:
            log.warning("sending a long reply as a file in %s failed; posting it in full",
                        self.scope.key, exc_info=True)
            self.as_file_after = None
            limit = self.limits.max_message_length
            if self.streaming:
                limit = max(40, limit - _CLOSER_ROOM)
            parts = split_message(self.text, limit)
            for i, part in enumerate(parts):
                if i < len(self.refs):
                    if self._shown[i] != part:
                        await self._safe_edit(i, part, final=True)
                else:
                    self.refs.append(await self._post(part))
                    self._shown.append(part)

    async def _post(self, part: str) -> MessageRef:
        """Post, retrying a failure (after a :class:`RateLimited`'s ``retry_after``)."""
        with post_span("post", self.scope, len(part)) as span:
            return await self._post_traced(part, span)

    async def _post_traced(self, part: str, span: Span) -> MessageRef:
        for attempt in range(POST_ATTEMPTS):
            try:
                return await self.adapter.post(self.scope, part)
            except Exception as exc:
                if attempt == POST_ATTEMPTS - 1:
                    raise
                wait = exc.retry_after if isinstance(exc, RateLimited) else None
                delay = wait if wait is not None else 0.5 * 2**attempt
                retried(span, exc, delay)
                log.warning("posting in %s failed (%s); retrying in %.1f s", self.scope.key,
                            exc, delay)
                await anyio.sleep(min(delay, 30.0))
        raise AssertionError("unreachable")

    async def _safe_edit(self, i: int, part: str, *, final: bool) -> None:
        """Edit part ``i``; a rate limit is waited out (posting a copy would show the reply
        twice). A streaming edit that fails otherwise is left to the next write; only a
        final edit that keeps failing (the message was deleted?) posts the part anew."""
        with post_span("edit", self.scope, len(part)) as span:
            await self._safe_edit_traced(i, part, final=final, span=span)

    async def _safe_edit_traced(self, i: int, part: str, *, final: bool, span: Span) -> None:
        for attempt in range(POST_ATTEMPTS):
            try:
                await self.adapter.edit(self.refs[i], part)
                self._shown[i] = part
                return
            except Exception as exc:
                limited = isinstance(exc, RateLimited)
                if not final and not limited:
                    raise
                if attempt == POST_ATTEMPTS - 1:
                    break
                wait = exc.retry_after if isinstance(exc, RateLimited) else None
                delay = wait if wait is not None else 0.5 * 2**attempt
                retried(span, exc, delay)
                log.warning("editing a reply in %s failed (%s); retrying in %.1f s",
                            self.scope.key, exc, delay)
                await anyio.sleep(min(delay, 30.0))
        log.warning("editing a reply in %s keeps failing; posting the rest anew", self.scope.key)
        ref = await self._post(part)
        self.refs[i] = ref
        self._shown[i] = part


STREAM_EVERY = 0.5
"""Seconds between appends to a natively streamed reply."""


class NativeStream:
    """A reply streamed with the platform's own append-only stream
    (:class:`~lettabot.runtime.adapter.SupportsStreaming`); same interface as
    :class:`ReplyStream`, which it becomes if the platform refuses to start a stream.

    Each message takes at most ``stream_chars``; past that, or when the platform ends the
    stream (:class:`StreamExpired`), the rest rolls over into a new streamed message, so
    nothing is lost. If the final text does not extend what was streamed (rare: the
    agent's final message differed from its partial one), the last message is edited to
    the final text.
    """

    def __init__(self, adapter: SupportsStreaming, scope: Scope, *, user_id: str | None = None,
                 fallback: ReplyStream) -> None:
        self.adapter = adapter
        self.scope = scope
        self.user_id = user_id
        self.text = ""
        self.refs: list[MessageRef] = []
        self._sent = ""  # what the platform has, all messages together
        self._starts: list[int] = []  # where each message starts in _sent
        self._open = False  # the last message is still streaming
        self._fallback: ReplyStream | None = None
        self._prefix = 0  # how much of the text was streamed before falling back
        self._spare = fallback
        self._dirty = anyio.Event()
        self._finished = False
        self._scope = anyio.CancelScope()
        self._writing = anyio.Lock()

    def update(self, text: str) -> None:
        if self._fallback is not None:
            self._fallback.update(text[self._prefix:].lstrip())
        if text != self.text:
            self.text = text
            self._dirty.set()

    async def run(self) -> None:
        with self._scope:
            while not self._finished:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                try:
                    await self._flush(final=False)
                except Exception:
                    log.warning("streaming a reply in %s failed", self.scope.key, exc_info=True)
                if self._fallback is not None:
                    await self._fallback.run()
                    return
                await anyio.sleep(STREAM_EVERY)

    async def finish(self, text: str | None = None) -> list[MessageRef]:
        if text is not None:
            self.text = text
        self._finished = True
        self._scope.cancel()
        if self._fallback is None and self.text.strip():
            await self._flush(final=True)
        if self._fallback is not None:
            return [*self.refs, *await self._fallback.finish(self.text[self._prefix:].lstrip())]
        return self.refs

    async def _flush(self, *, final: bool) -> None:
        with anyio.CancelScope(shield=True), post_span("stream", self.scope, len(self.text)):
            async with self._writing:
                if self._fallback is not None or (not final and self._finished):
                    return
                text = self.text
                if not text.startswith(self._sent):
                    if final:
                        await self._rewrite_last(text)
                    return  # a partial that will be replaced: wait for more
                delta = text[len(self._sent):]
                while delta:
                    room = self.adapter.stream_chars - (len(self._sent) - self._starts[-1]) \
                        if self._open else 0
                    if room <= 0:
                        await self._close_last()
                        if not await self._start(delta[: self.adapter.stream_chars]):
                            return
                        delta = text[len(self._sent):]
                        continue
                    piece = delta[:room]
                    try:
                        await self.adapter.append_stream(self.refs[-1], piece)
                    except StreamExpired:
                        self._open = False
                        continue
                    self._sent += piece
                    delta = delta[len(piece):]
                if final:
                    await self._close_last()

    async def _start(self, piece: str) -> bool:
        """A new streamed message; False if the platform refused (the rest is posted)."""
        try:
            ref = await self.adapter.start_stream(self.scope, piece, user_id=self.user_id)
        except Exception as exc:
            log.info("native streaming unavailable in %s (%s); posting and editing instead",
                     self.scope.key, exc)
            self._fall_back()
            return False
        self.refs.append(ref)
        self._starts.append(len(self._sent))
        self._sent += piece
        self._open = True
        return True

    def _fall_back(self) -> None:
        """The part not streamed yet goes out as ordinary messages."""
        stream = self._spare
        stream.text = self.text[len(self._sent):].lstrip()
        stream.refs = []
        self._fallback = stream
        self._prefix = len(self._sent)

    async def _close_last(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(StreamExpired):  # ended already: nothing to stop
                await self.adapter.stop_stream(self.refs[-1])

    async def _rewrite_last(self, text: str) -> None:
        await self._close_last()
        start = self._starts[-1] if self._starts else 0
        if self.refs:
            await self._spare.adapter.edit(self.refs[-1], text[start:])
        self._sent = text


def reply_stream(adapter: Adapter, scope: Scope, *, user_id: str | None = None,
                 as_file_after: int | None = None) -> ReplyStream | NativeStream:
    """The stream for a reply: the platform's own where it has one for ``scope``."""
    plain = ReplyStream(adapter, scope, as_file_after=as_file_after)
    if isinstance(adapter, SupportsStreaming) and adapter.can_stream(scope):
        return NativeStream(adapter, scope, user_id=user_id, fallback=plain)
    return plain
