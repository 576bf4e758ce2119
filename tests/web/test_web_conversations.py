"""The web chat's list of past conversations, ratings on restored answers, the demo banner
and a phone-sized screen: ``lettabot run --demo`` driven through headless Chromium.

Screenshots: ``web-chat-conversations.png`` and ``web-chat-phone.png`` (kept in the folder
``LETTABOT_TEST_SCREENSHOTS`` names; ``docs/`` holds the current ones)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.web.conftest import RunningBot, start_lettabot

pytestmark = pytest.mark.slow

PHONE = {"width": 375, "height": 667}


def open_chat(context: BrowserContext, bot: RunningBot) -> Page:
    page = context.new_page()
    page.goto(bot.page_url)
    expect(page.locator("#conn")).to_have_class("conn live")
    return page


def say(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.user .bubble").last).to_have_text(text)


def answer(page: Page) -> Any:
    return page.locator(".msg.bot").last


def turn(page: Page, text: str) -> None:
    """Say ``text`` and wait for the whole answer (its 👍/👎 show at the end of the turn)."""
    say(page, text)
    expect(answer(page).locator(".bubble")).to_have_text(f"You said: {text}", timeout=90_000)
    expect(answer(page).locator("button[data-rating=good]")).to_be_visible(timeout=90_000)
    expect(page.locator("#typing")).to_be_hidden(timeout=90_000)


def conversations(page: Page) -> Any:
    """Open the list (a drawer) and return its entries."""
    if not page.locator("#convs").is_visible():
        page.click("#convs-toggle")
    expect(page.locator("#convs")).to_be_visible()
    return page.locator("#convs .conv")


def listed(bot: RunningBot) -> list[dict[str, Any]]:
    req = urllib.request.Request(bot.url + "api/conversations", headers=bot.auth)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return list(json.loads(resp.read())["conversations"])


def test_past_conversations_are_listed_reopened_renamed_and_new_ones_started(
    context: BrowserContext, demo_bot: RunningBot, screenshots: Path,
) -> None:
    tag = uuid.uuid4().hex[:6]
    page = open_chat(context, demo_bot)
    turn(page, f"alpha {tag}")
    first_tab = page.evaluate("sessionStorage['lettabot-tab']")
    page.click("#reset")  # "New conversation": the first one stays in the list
    expect(page.locator(".system.reset")).to_be_visible()
    expect(page.locator(".msg")).to_have_count(0)
    assert page.evaluate("sessionStorage['lettabot-tab']") != first_tab
    turn(page, f"bravo {tag}")
    page.close()  # closing the tab no longer loses the way back

    page = open_chat(context, demo_bot)
    entries = conversations(page)
    expect(entries.filter(has_text=f"alpha {tag}")).to_have_count(1)
    expect(entries.filter(has_text=f"bravo {tag}")).to_have_count(1)
    titles = [c["title"] for c in listed(demo_bot)]  # kept by the server, newest first
    assert titles.index(f"bravo {tag}") < titles.index(f"alpha {tag}")

    entries.filter(has_text=f"alpha {tag}").locator(".open").click()  # reopen
    expect(page.locator(".msg.user .bubble").first).to_have_text(f"alpha {tag}")
    assert page.evaluate("sessionStorage['lettabot-tab']") == first_tab
    say(page, "what was my first message?")  # the same conversation goes on
    expect(answer(page).locator(".bubble")).to_have_text(
        f"Your first message was: alpha {tag}", timeout=90_000)

    entry = conversations(page).filter(has_text=f"alpha {tag}")
    expect(entry).to_have_class("conv current")
    entry.locator(".rename").click()
    field = page.locator("#convs input.title-edit")  # the title, now a field
    field.fill(f"Project Alpha {tag}")
    field.press("Enter")
    expect(conversations(page).filter(has_text=f"Project Alpha {tag}")).to_have_count(1)
    assert any(c["title"] == f"Project Alpha {tag}" and c["tab"] == first_tab
               for c in listed(demo_bot))
    page.screenshot(path=str(screenshots / "web-chat-conversations.png"))

    other = open_chat(context, demo_bot)  # another tab sees the new name too
    expect(conversations(other).filter(has_text=f"Project Alpha {tag}")).to_have_count(1)
    conversations(other).filter(has_text=f"Project Alpha {tag}").locator(".rename").click()
    other.locator("#convs input.title-edit").fill("")  # an empty name is refused, kept as it was
    other.locator("#convs input.title-edit").press("Enter")
    expect(conversations(other).filter(has_text=f"Project Alpha {tag}")).to_have_count(1)
    other.click("#convs-new")  # "new" from the list
    expect(other.locator(".system.reset")).to_be_visible()
    expect(other.locator("#convs")).to_be_hidden()


@pytest.fixture
def own_bot(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "bot"


def test_after_a_restart_the_list_and_the_ratings_of_restored_answers_are_kept(
    context: BrowserContext, own_bot: Path,
) -> None:
    env = {"LETTABOT_WEB__PORT": "0"}  # any free port: the page's origin changes too
    bot = start_lettabot(own_bot, "--demo", env=env)
    try:
        page = open_chat(context, bot)
        turn(page, "rate me before the restart")
        answer(page).locator("button[data-rating=bad]").click()
        expect(answer(page).locator("button.chosen")).to_have_attribute("data-rating", "bad")
        turn(page, "and leave me unrated")
        rated = page.locator(".msg.bot").first.get_attribute("data-id")
        tab = page.evaluate("sessionStorage['lettabot-tab']")
    finally:
        assert bot.stop() == 0, bot.output[-3000:]
    bot = start_lettabot(own_bot, "--demo", env=env)
    try:
        page = open_chat(context, bot)  # a new port: a new origin, nothing in sessionStorage
        entry = conversations(page).filter(has_text="rate me before the restart")
        entry.locator(".open").click()
        restored = page.locator(".msg.bot")
        expect(restored).to_have_count(2)
        expect(restored.first.locator(".bubble")).to_have_text(
            "You said: rate me before the restart")
        expect(restored.first.locator("button.chosen")).to_have_attribute("data-rating", "bad")
        assert restored.first.get_attribute("data-id") == rated  # the answer the rating is of
        expect(restored.last.locator("button[data-rating=good]")).to_be_visible()
        assert restored.last.locator("button.chosen").count() == 0
        restored.first.locator("button[data-rating=good]").click()  # can be changed
        expect(restored.first.locator("button.chosen")).to_have_attribute("data-rating", "good")
        restored.last.locator("button[data-rating=bad]").click()
        expect(restored.last.locator("button.chosen")).to_have_attribute("data-rating", "bad")
        with sqlite3.connect(bot.data_dir / "demo" / "lettabot.db") as db:
            rows = db.execute("SELECT rating FROM lettabot_feedback WHERE scope = ? AND "
                              "message_ref = ?", (f"web:@me:{tab}", rated)).fetchall()
        assert rows == [("good",)]  # the same answer's rating, changed (not a second one)
        page.reload()  # and the changed ratings are what the page shows again
        expect(page.locator(".msg.bot").first.locator("button.chosen")).to_have_attribute(
            "data-rating", "good")
        expect(page.locator(".msg.bot").last.locator("button.chosen")).to_have_attribute(
            "data-rating", "bad")
    finally:
        assert bot.stop() == 0, bot.output[-3000:]


def test_the_demo_banner_can_be_dismissed_and_stays_dismissed(
    context: BrowserContext, demo_bot: RunningBot,
) -> None:
    page = open_chat(context, demo_bot)
    banner = page.locator("#demo-banner")
    expect(banner).to_be_visible()
    page.click("#demo-dismiss")
    expect(banner).to_be_hidden()
    page.reload()
    expect(page.locator("#conn")).to_have_class("conn live")
    expect(banner).to_be_hidden()  # remembered
    expect(page.locator("#demo-badge")).to_be_visible()  # still says DEMO
    open_chat(context, demo_bot)  # another tab of the browser too
    expect(context.pages[-1].locator("#demo-banner")).to_be_hidden()
    page.click("#demo-badge")  # the badge brings it back
    expect(banner).to_be_visible()


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"


def test_the_chat_fits_a_phone_screen(
    browser: Browser, demo_bot: RunningBot, screenshots: Path,
) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    context.set_default_timeout(60_000)
    try:
        page = open_chat(context, demo_bot)
        banner = page.locator("#demo-banner")
        expect(banner).to_be_visible()
        box = banner.bounding_box()
        assert box is not None and box["height"] <= 110, f"the banner is {box} on a phone"
        composer = page.locator("#input").bounding_box()
        assert composer is not None and composer["y"] + composer["height"] <= PHONE["height"]
        _no_horizontal_scroll(page)
        turn(page, "hello from a phone")
        say(page, "a_very_long_word_" * 12 + " and `" + "code " * 30 + "`")
        expect(answer(page).locator(".bubble")).to_contain_text("You said:", timeout=90_000)
        expect(page.locator("#typing")).to_be_hidden(timeout=90_000)
        _no_horizontal_scroll(page)
        expect(page.locator("#input")).to_be_in_viewport()
        expect(page.locator("#send")).to_be_in_viewport()
        page.screenshot(path=str(screenshots / "web-chat-phone.png"))
        entries = conversations(page)  # the list fits too
        expect(entries.filter(has_text="hello from a phone")).to_have_count(1)
        _no_horizontal_scroll(page)
        panel = page.locator("#convs").bounding_box()
        assert panel is not None and panel["x"] >= 0 and panel["x"] + panel["width"] <= 375
        page.screenshot(path=str(screenshots / "web-chat-phone-conversations.png"))
    finally:
        context.close()
