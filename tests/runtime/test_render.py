"""Reply rendering: splitting, closing partial markup, streaming with roll-over."""

from __future__ import annotations

import re

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lettabot.runtime.adapter import AdapterLimits, MessageRef, RateLimited, Scope
from lettabot.runtime.render import ReplyStream, close_open_markup, open_fence, split_message
from lettabot.testing.chat import TestChat


def _balanced(part: str) -> bool:
    return open_fence(part) is None


def test_short_text_is_one_part() -> None:
    assert split_message("hello", 100) == ["hello"]


def test_split_prefers_paragraphs_and_respects_the_limit() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 15 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_message(text, 200)
    assert len(parts) > 1 and all(len(p) <= 200 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)  # cut at paragraph starts
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_split_never_breaks_a_code_block() -> None:
    code = "\n".join(f"line_{i} = {i} * 2  # some comment" for i in range(40))
    text = f"Here is code:\n\n```python\n{code}\n```\n\nAnd after it, a closing remark."
    parts = split_message(text, 300)
    assert len(parts) > 2 and all(len(p) <= 300 for p in parts)
    assert all(_balanced(p) for p in parts)
    inner = [p for p in parts[1:] if "line_" in p]
    assert all(p.startswith("```python\n") for p in inner)  # the fence is reopened
    joined = "\n".join(parts)
    for i in range(40):
        assert f"line_{i} = {i} * 2" in joined


def test_a_single_huge_line_is_cut_hard() -> None:
    parts = split_message("x" * 1000, 100)
    assert all(len(p) <= 100 for p in parts) and "".join(parts) == "x" * 1000


@pytest.mark.parametrize(
    ("partial", "closed"),
    [
        ("Some **bold", "Some **bold**"),
        ("```py\nprint(1)", "```py\nprint(1)\n```"),
        ("use `foo", "use `foo`"),
        ("done **and** ok", "done **and** ok"),
        ("```\n**not bold in code", "```\n**not bold in code\n```"),
    ],
)
def test_close_open_markup(partial: str, closed: str) -> None:
    assert close_open_markup(partial) == closed




@pytest.mark.anyio
async def test_stream_rolls_over_into_new_messages_and_finishes_whole() -> None:
    chat = TestChat(limits=AdapterLimits(max_message_length=120, min_edit_interval=0.01))
    scope = chat.scope("C1", "t")
    stream = ReplyStream(chat, scope)
    text = ""
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        for i in range(30):
            text += f"Sentence number {i} is here. "
            if i % 5 == 4:
                text += "\n\n"
            stream.update(text)
            await anyio.sleep(0.02)
        await stream.finish(text.strip())
    posted = chat.messages(scope)
    assert len(posted) > 3 and all(len(v) <= 120 for p in posted for v in p.versions)
    assert [p.text for p in posted] == split_message(text.strip(), 120 - 8)
    assert any(len(p.versions) > 1 for p in posted)  # it was edited while streaming


@pytest.mark.anyio
async def test_an_adapter_without_edit_gets_one_post_at_the_end() -> None:
    chat = TestChat(limits=AdapterLimits(can_edit=False, max_message_length=4000))
    scope = chat.scope("C1", "t")
    stream = ReplyStream(chat, scope)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        for word in ("one", "one two", "one two three"):
            stream.update(word)
            await anyio.sleep(0.01)
        assert chat.messages(scope) == []
        await stream.finish()
    assert [p.versions for p in chat.messages(scope)] == [["one two three"]]


@pytest.mark.anyio
async def test_partial_text_is_shown_with_markup_closed() -> None:
    chat = TestChat(limits=AdapterLimits(min_edit_interval=0.01))
    scope = chat.scope("C1", "t")
    stream = ReplyStream(chat, scope)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        stream.update("Look:\n```py\nx = 1")
        await chat.wait_for(lambda: chat.messages(scope), within=5)
        await stream.finish("Look:\n```py\nx = 1\n```")
    first = chat.messages(scope)[0]
    assert re.search(r"```$", first.versions[0])
    assert first.text == "Look:\n```py\nx = 1\n```"


@pytest.mark.anyio
async def test_a_reply_just_under_the_limit_never_leaves_a_stale_second_message() -> None:
    chat = TestChat(limits=AdapterLimits(max_message_length=100, min_edit_interval=0.01))
    scope = chat.scope("C1", "t")
    stream = ReplyStream(chat, scope)
    words = " ".join(f"w{i}" for i in range(40))[:94]
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        for n in range(10, len(words) + 1, 7):
            stream.update("**" + words[:n])
            await anyio.sleep(0.02)
        await stream.finish("**" + words + "**")
    assert [p.text for p in chat.messages(scope)] == split_message("**" + words + "**", 92)
    assert all(len(v) <= 100 for p in chat.messages(scope) for v in p.versions)


def test_a_long_fence_info_string_still_splits() -> None:
    """It used to loop forever: the reopened header ate the whole budget."""
    parts = split_message("a**\n```" + "x" * 37, 40)
    assert all(len(p) <= 40 for p in parts) and all(_balanced(p) for p in parts[:-1])


_MARKDOWNISH = st.lists(
    st.sampled_from(["a", "b", " ", "\n", "`", "```", "~~~", "*", "**", "_", "#", "é", "漢",
                     "🙂", "\u200b", ">", "xxxxxxxxxxxx"]),
    max_size=200,
).map("".join)


@settings(max_examples=300, deadline=2000)
@given(text=_MARKDOWNISH, limit=st.integers(min_value=40, max_value=300))
def test_split_message_always_progresses_and_fits(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert all(_balanced(p) for p in parts[:-1])  # the last is as balanced as the text
    kept = "".join("".join(parts).split()).replace("`", "").replace("~", "")
    original = "".join(text.split()).replace("`", "").replace("~", "")
    assert len(kept) >= len(original)  # nothing lost (fences may be added)


class _SlowChat(TestChat):
    """Posts take a while, as Slack's and Discord's do under load."""

    async def post(self, scope: Scope, text: str) -> MessageRef:
        await anyio.sleep(0.3)
        return await super().post(scope, text)


@pytest.mark.anyio
async def test_a_short_reply_is_posted_once_even_when_posting_is_slow() -> None:
    chat = _SlowChat(limits=AdapterLimits(min_edit_interval=0.01))
    scope = chat.scope("C1", "slow")
    stream = ReplyStream(chat, scope)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        stream.update("Hel")
        await anyio.sleep(0.05)  # the first post is in flight
        await stream.finish("Hello there!")
    assert [p.text for p in chat.messages(scope)] == ["Hello there!"]


class _FlakyChat(TestChat):
    """The first ``failures`` posts fail, the first with a platform's Retry-After."""

    def __init__(self, failures: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.attempts = 0

    async def post(self, scope: Scope, text: str) -> MessageRef:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RateLimited(0.2, "ratelimited")
        return await super().post(scope, text)


@pytest.mark.anyio
async def test_a_failed_post_is_retried_and_posted_once() -> None:
    chat = _FlakyChat(2, limits=AdapterLimits(can_edit=False))
    scope = chat.scope("C1", "flaky")
    stream = ReplyStream(chat, scope)
    await stream.finish("an answer")
    assert [p.text for p in chat.messages(scope)] == ["an answer"] and chat.attempts == 3


@pytest.mark.anyio
async def test_a_post_that_keeps_failing_raises_for_the_turn_to_report() -> None:
    chat = _FlakyChat(99, limits=AdapterLimits(can_edit=False))
    stream = ReplyStream(chat, chat.scope("C1", "lost"))
    with pytest.raises(RateLimited, match="ratelimited"):
        await stream.finish("an answer")


class _EditLimitedChat(TestChat):
    """Every edit is first answered with a platform's 429 (Retry-After 0.1 s)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.refused: set[tuple[str, str]] = set()

    async def edit(self, ref: MessageRef, text: str) -> None:
        if (ref.id, text) not in self.refused:
            self.refused.add((ref.id, text))
            raise RateLimited(0.1, "ratelimited")
        await super().edit(ref, text)


@pytest.mark.anyio
async def test_a_rate_limited_edit_waits_and_edits_it_never_posts_a_second_copy() -> None:
    chat = _EditLimitedChat(limits=AdapterLimits(min_edit_interval=0.01))
    scope = chat.scope("C1", "edit-429")
    stream = ReplyStream(chat, scope)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run)
        stream.update("The first words")
        await chat.wait_for(lambda: chat.messages(scope))
        stream.update("The first words, and more")
        await anyio.sleep(0.05)
        await stream.finish("The first words, and more, and the end.")
    assert [p.text for p in chat.messages(scope)] == ["The first words, and more, and the end."]
