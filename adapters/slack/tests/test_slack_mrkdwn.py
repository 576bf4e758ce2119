"""Markdown → mrkdwn, and splitting to Slack's message size."""

from __future__ import annotations

import pytest
from lettabot_slack.mrkdwn import split_mrkdwn, to_messages, to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic* and ~~gone~~", "*bold* and _italic_ and ~gone~"),
        ("__strong__ snake_case_name", "*strong* snake_case_name"),
        ("[docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&amp;c=2|docs>"),
        ("see <https://y.io> and <@U123> in <#C1|general> <!here>",
         "see <https://y.io> and <@U123> in <#C1|general> &lt;!here&gt;"),
        ("<!channel> <!everyone> <!subteam^S0OPS|@ops> <!here|here>",
         "&lt;!channel&gt; &lt;!everyone&gt; &lt;!subteam^S0OPS|@ops&gt; &lt;!here|here&gt;"),
        ("5 > 3 & 2 < 4", "5 &gt; 3 &amp; 2 &lt; 4"),
        ("`a < b && **c**`", "`a &lt; b &amp;&amp; **c**`"),
        ("# Title", "*Title*"),
        ("## **Already bold**", "*Already bold*"),
        ("- one\n  - two\n* three", "• one\n    • two\n• three"),
        ("- [x] done\n- [ ] todo", "☑ done\n☐ todo"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted **x**", "> quoted *x*"),
        ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
        ("```\nnever closed", "```\nnever closed\n```"),
    ],
)
def test_conversion(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_short_text_is_one_message() -> None:
    assert to_messages("hello **there**") == ["hello *there*"]


def test_split_prefers_paragraphs_and_keeps_every_word() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 30 for i in range(40)]
    parts = split_mrkdwn("\n\n".join(p.strip() for p in paragraphs), 1000)
    assert len(parts) > 1
    assert all(len(p) <= 1000 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)
    assert sum(p.count("word") for p in parts) == 40 * 30


def test_split_inside_code_closes_and_reopens_the_fence() -> None:
    code = "Intro\n\n```\n" + "\n".join(f"line {i} &lt;tag&gt;" for i in range(300)) + "\n```\nEnd"
    parts = split_mrkdwn(code, 800)
    assert len(parts) > 3
    for part in parts:
        assert len(part) <= 800
        assert part.count("```") % 2 == 0
    body = "\n".join(parts)
    assert all(f"line {i} &lt;tag&gt;" in body for i in range(300))
    assert parts[-1].endswith("End")


def test_split_never_cuts_an_entity_or_a_link() -> None:
    text = ("&amp;" * 50) + " " + "<https://example.com/" + "a" * 60 + "|link>"
    for limit in range(40, 120, 7):
        for part in split_mrkdwn(text.replace(" ", ""), limit):
            assert len(part) <= limit
            assert not part.rstrip().endswith(("&", "&a", "&am", "&amp"))


def test_conversion_growth_is_split_again() -> None:
    # 3,500 characters of markdown that escaping grows past one Slack message
    markdown = "word " * 600 + "&" * 300
    assert len(markdown) <= 3500
    parts = to_messages(markdown)
    assert len(parts) == 2
    assert all(len(p) <= 3900 for p in parts)
    assert "".join(parts).count("&amp;") == 300
