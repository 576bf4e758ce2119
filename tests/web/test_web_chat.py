"""The web chat in a real browser, end to end: ``lettabot run --demo`` (real Letta CLI on an
App Server, the scripted demo model), driven through headless Chromium."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from lettabot_web.app import scope_for
from playwright.sync_api import BrowserContext, Page, expect

from lettabot.runtime.workspaces import scope_dir
from tests.web.conftest import RunningBot, free_port, lettabot_command, start_lettabot

pytestmark = pytest.mark.slow


def open_chat(context: BrowserContext, bot: RunningBot) -> Page:
    page = context.new_page()
    page.goto(bot.page_url)
    expect(page.locator("#conn")).to_have_text("connected")
    return page


def say(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.user .bubble").last).to_have_text(text)


def last_reply(page: Page) -> Any:
    return page.locator(".msg.bot .bubble").last


def folder(page: Page, bot: RunningBot) -> Path:
    """The tab's own folder: its conversation works there and its uploads land there (the
    only folder its tools can reach)."""
    tab = page.evaluate("document.body.dataset.tab")
    assert tab, "the page has not claimed its tab id"
    return scope_dir(bot.workspace, scope_for(tab).key)


def test_demo_page_says_it_is_a_demo(context: BrowserContext, demo_bot: RunningBot) -> None:
    page = open_chat(context, demo_bot)
    expect(page.locator("#demo-badge")).to_be_visible()
    expect(page.locator("#demo-banner")).to_contain_text("scripted stand-in model")
    assert "DEMO" in demo_bot.output  # and the terminal says so too
    say(page, "/status")  # a typed command
    expect(page.locator(".system.note").last).to_contain_text("openai-compatible/scripted")


def test_reply_streams_into_the_page(context: BrowserContext, demo_bot: RunningBot) -> None:
    page = open_chat(context, demo_bot)
    # Record every text the newest reply shows, to see it grow while the model streams.
    page.evaluate(
        """() => {
          window.__seen = [];
          new MutationObserver(() => {
            const b = document.querySelectorAll('.msg.bot .bubble');
            if (b.length) window.__seen.push(b[b.length - 1].textContent);
          }).observe(document.getElementById('log'), {childList: true, subtree: true});
        }"""
    )
    say(page, "tell me a story")
    expect(last_reply(page)).to_contain_text("The end.", timeout=90_000)
    final = last_reply(page).text_content() or ""
    seen = page.evaluate("window.__seen")
    partial = [t for t in seen if t and t != final and final.startswith(t.rstrip("\u2026 "))]
    assert partial, f"the reply appeared only whole; seen: {seen[:5]}"


def test_markup_in_messages_is_shown_as_text(context: BrowserContext, demo_bot: RunningBot) -> None:
    page = open_chat(context, demo_bot)
    say(page, "<img src=x onerror=alert(1)> **bold** `code`")
    reply = last_reply(page)
    expect(reply).to_contain_text("You said: <img src=x onerror=alert(1)>")
    assert page.locator(".bubble img").count() == 0
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("code")).to_have_text("code")


def test_a_message_that_cannot_be_sent_is_kept(
    context: BrowserContext, demo_bot: RunningBot
) -> None:
    page = open_chat(context, demo_bot)
    text = "x" * 20_001
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".toast.error")).to_contain_text("at most 20000 characters")
    assert page.input_value("#input") == text  # nothing lost: it is back in the box
    assert page.locator(".msg").count() == 0


def approval_turn(page: Page, bot: RunningBot, decision: str,
                  shot: Path | None = None) -> Path:
    target = folder(page, bot) / f"{decision}-{uuid.uuid4().hex[:8]}.txt"
    say(page, f"run: echo hi > {target.name}")
    card = page.locator(".card").last
    expect(card).to_contain_text("Approval needed: Bash")
    expect(card.locator("pre.input")).to_contain_text(f"echo hi > {target.name}")
    if shot is not None:
        page.screenshot(path=str(shot))
    card.locator(f"button[data-decision={decision}]").click()
    expect(card.locator(".status")).to_be_visible()
    expect(last_reply(page)).to_contain_text("Tool result", timeout=90_000)
    return target


def test_approve_runs_the_tool(
    context: BrowserContext, demo_bot: RunningBot, screenshots: Path
) -> None:
    page = open_chat(context, demo_bot)
    target = approval_turn(page, demo_bot, "approve", shot=screenshots / "web-chat.png")
    expect(page.locator(".card .status").last).to_contain_text("Approved")
    assert target.read_text().strip() == "hi"
    page.screenshot(path=str(screenshots / "web-chat-approved.png"))


def test_deny_keeps_the_tool_from_running(context: BrowserContext, demo_bot: RunningBot) -> None:
    page = open_chat(context, demo_bot)
    target = approval_turn(page, demo_bot, "deny")
    expect(page.locator(".card").last).to_have_class("card denied")
    assert not target.exists()


def test_always_allow_stops_asking_in_this_tab_only(
    context: BrowserContext, demo_bot: RunningBot
) -> None:
    """`cat` is curated (it runs no code through its arguments): Always allow on one `cat`
    covers later `cat`s of files in this tab's folder, nothing else, nowhere else."""
    page = open_chat(context, demo_bot)
    first = f"first-{uuid.uuid4().hex[:8]}.txt"
    say(page, f"run: cat {first}")
    card = page.locator(".card").last
    expect(card.locator(".covers")).to_contain_text("`cat …` commands with the same kind of")
    (folder(page, demo_bot) / first).write_text("one\n")
    card.locator("button[data-decision=always]").click()
    expect(card.locator(".status")).to_contain_text("from now on")
    expect(last_reply(page)).to_contain_text("Tool result", timeout=90_000)
    again = folder(page, demo_bot) / f"again-{uuid.uuid4().hex[:8]}.txt"
    again.write_text("CONTENT-OF-AGAIN\n")
    say(page, f"run: cat {again.name}")
    reply = page.locator(".msg.bot .bubble", has_text="CONTENT-OF-AGAIN")
    expect(reply).to_contain_text("Tool result", timeout=90_000)
    assert page.locator(".card").count() == 1  # no second card: it ran without asking
    say(page, f"run: cat {again.name} > copy.txt")  # a redirect is not covered: asks
    expect(page.locator(".card")).to_have_count(2)
    page.locator(".card").last.locator("button[data-decision=deny]").click()
    other = open_chat(context, demo_bot)  # another tab still asks
    say(other, f"run: cat other-{again.name}")
    expect(other.locator(".card button[data-decision=deny]")).to_be_visible()
    other.locator(".card button[data-decision=deny]").click()
    expect(other.locator(".card .status")).to_be_visible()


def test_memory_is_shared_by_new_conversations(
    context: BrowserContext, demo_bot: RunningBot
) -> None:
    for _ in range(2):  # the second fact replaces the first
        word = f"kiwi{uuid.uuid4().hex[:6]}"
        first = open_chat(context, demo_bot)
        say(first, f"remember: the secret word is {word}")
        expect(last_reply(first)).to_contain_text("saved", timeout=90_000)
        assert first.locator(".card").count() == 0  # saving its own memory needs no click
        # Ask once the turn has ended: the CLI reads memory when a conversation's first turn
        # starts, and a turn started while the saving turn is still closing may miss the fact.
        expect(first.locator("#typing")).to_be_hidden(timeout=90_000)
        second = open_chat(context, demo_bot)  # another tab: a new conversation
        say(second, "what is the secret word?")
        expect(last_reply(second)).to_contain_text(f"The secret word is {word}", timeout=90_000)
        second.click("#reset")  # and a reset conversation knows it too
        expect(second.locator(".system.reset")).to_be_visible()
        say(second, "what is the secret word?")
        expect(last_reply(second)).to_contain_text(f"The secret word is {word}", timeout=90_000)


def test_tabs_are_separate_conversations_and_reset_starts_a_new_one(
    context: BrowserContext, demo_bot: RunningBot
) -> None:
    a, b = open_chat(context, demo_bot), open_chat(context, demo_bot)
    assert a.evaluate("sessionStorage['lettabot-tab']") != b.evaluate(
        "sessionStorage['lettabot-tab']"
    )
    say(a, "alpha one")
    say(b, "bravo one")
    expect(last_reply(a)).to_have_text("You said: alpha one")
    expect(last_reply(b)).to_have_text("You said: bravo one")
    say(a, "what was my first message?")
    say(b, "what was my first message?")
    expect(last_reply(a)).to_have_text("Your first message was: alpha one")
    expect(last_reply(b)).to_have_text("Your first message was: bravo one")

    a.reload()  # a reload keeps the tab's conversation on screen
    expect(a.locator(".msg.user .bubble").first).to_have_text("alpha one")

    a.click("#reset")
    expect(a.locator(".msg")).to_have_count(0)
    expect(a.locator(".system.reset")).to_be_visible()
    say(a, "charlie two")
    say(a, "what was my first message?")
    expect(last_reply(a)).to_have_text("Your first message was: charlie two")
    say(b, "and my first message?")
    expect(last_reply(b)).to_have_text("Your first message was: bravo one")


def _post(url: str, payload: dict[str, Any], headers: dict[str, str]) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _ws_refused(url: str, origin: str | None = None,
                headers: dict[str, str] | None = None) -> bool:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, origin=origin, open_timeout=30,  # type: ignore[arg-type]
                     additional_headers=headers) as ws:
            return json.loads(ws.recv(timeout=30))["type"] != "hello"
    except InvalidStatus as exc:
        return bool(exc.response.status_code == 403)


def test_many_tabs_stay_live(context: BrowserContext, demo_bot: RunningBot) -> None:
    """More tabs than a browser's six HTTP connections per host: each still gets its replies."""
    pages = [open_chat(context, demo_bot) for _ in range(8)]
    say(pages[-1], "hello from the eighth tab")
    expect(last_reply(pages[-1])).to_have_text("You said: hello from the eighth tab")
    for page in pages:
        page.close()


def test_other_sites_cannot_drive_the_local_chat(demo_bot: RunningBot) -> None:
    """Even with the token: only loopback Host names (no DNS rebinding) and only
    same-origin JSON posts (a page on another site cannot send messages or click Approve)."""
    send = demo_bot.url + "api/send"
    body = {"tab": "tcsrf-test-tab", "text": "hello"}
    auth = demo_bot.auth
    json_from_elsewhere = {"Content-Type": "application/json", "Origin": "http://evil.example",
                           **auth}
    assert _post(send, body, json_from_elsewhere) == 403
    assert _post(send, body, {"Content-Type": "text/plain", **auth}) == 415
    live = demo_bot.url.replace("http://", "ws://") + "api/live?tab=tcsrf-test-tab"
    assert _ws_refused(live, origin="http://evil.example", headers=auth)
    assert not _ws_refused(live, origin=demo_bot.url.rstrip("/"), headers=auth)
    decide = demo_bot.url + "api/decide"
    assert _post(decide, {"request_id": "x", "decision": "approve"}, json_from_elsewhere) == 403
    same_site = {"Content-Type": "application/json", "Origin": demo_bot.url.rstrip("/"), **auth}
    assert _post(send, body, same_site) == 202


def test_the_local_chat_needs_its_generated_token(demo_bot: RunningBot) -> None:
    """Loopback is no lock (any local program or OS user reaches it): the demo generated a
    token into the data dir (mode 600), printed it with the address, and wants it."""
    assert demo_bot.token and len(demo_bot.token) >= 24
    stored = demo_bot.data_dir / "web-token"
    assert stored.read_text().strip() == demo_bot.token
    assert stored.stat().st_mode & 0o777 == 0o600
    same_site = {"Content-Type": "application/json", "Origin": demo_bot.url.rstrip("/")}
    body = {"tab": "tnotoken-tab", "text": "hello"}
    assert _get(demo_bot.url) == 401
    assert _get(demo_bot.url + "?token=wrong") == 401
    assert _post(demo_bot.url + "api/send", body, same_site) == 401
    assert _post(demo_bot.url + "api/decide", {"request_id": "x", "decision": "approve"},
                 same_site) == 401
    assert _post(demo_bot.url + "api/send", body,
                 {**same_site, "Authorization": "Bearer wrong"}) == 401
    live = demo_bot.url.replace("http://", "ws://") + "api/live?tab=tnotoken-tab"
    assert _ws_refused(live, origin=demo_bot.url.rstrip("/"))
    assert _get(demo_bot.url + "healthz") == 200  # liveness stays open


def test_non_loopback_bind_needs_a_token(tmp_path: Path, context: BrowserContext) -> None:
    env = {"LETTABOT_WEB__HOST": "0.0.0.0", "LETTABOT_DATA_DIR": str(tmp_path / "data")}
    refused = subprocess.run(
        [*lettabot_command(), "run", "--demo"],
        cwd=tmp_path,
        env={**_clean_env(), **env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "web.token" in refused.stdout + refused.stderr

    token = uuid.uuid4().hex
    port = free_port()
    bot = start_lettabot(
        tmp_path / "with-token",
        "--demo",
        env={**env, "LETTABOT_WEB__PORT": str(port), "LETTABOT_WEB__TOKEN": token},
    )
    try:
        assert token not in bot.output  # the token is never printed
        local = f"http://127.0.0.1:{port}/"
        assert _get(local) == 401
        assert _get(local + f"?token=wrong{token}") == 401
        assert _ws_refused(f"ws://127.0.0.1:{port}/api/live?tab=tnotoken1")
        assert (
            _post(
                local + "api/send",
                {"tab": "tnotoken1", "text": "hi"},
                {"Content-Type": "application/json"},
            )
            == 401
        )
        page = context.new_page()
        page.goto(local + f"?token={token}")
        assert token not in page.url  # the token moves into a cookie
        expect(page.locator("#conn")).to_have_text("connected")
        say(page, "hello over the network")
        expect(last_reply(page)).to_have_text("You said: hello over the network", timeout=90_000)
    finally:
        assert bot.stop() == 0, bot.output[-3000:]


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("LETTABOT_", "LETTA_"))}


def test_without_a_model_provider_run_points_to_the_demo(tmp_path: Path) -> None:
    """A fresh machine: no Letta key, no provider. ``lettabot run`` explains and exits."""
    done = subprocess.run(
        [*lettabot_command(), "run"],
        cwd=tmp_path,
        env={
            **_clean_env(),
            "HOME": str(tmp_path),
            "LETTABOT_DATA_DIR": str(tmp_path / "data"),
            "LETTABOT_WEB__PORT": str(free_port()),
        },
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "lettabot run --demo" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_port_is_a_clear_error(tmp_path: Path, demo_bot: RunningBot) -> None:
    """A second ``lettabot run --demo`` on the same port says so and exits."""
    port = demo_bot.url.rstrip("/").rsplit(":", 1)[1]
    done = subprocess.run(
        [*lettabot_command(), "run", "--demo"],
        cwd=tmp_path,
        env={
            **_clean_env(),
            "HOME": str(tmp_path),
            "LETTABOT_DATA_DIR": str(tmp_path / "data"),
            "LETTABOT_WEB__PORT": port,
        },
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    # checked before any slow work: the port, who holds it, how to change it
    assert f"web.port: port {port} on 127.0.0.1 is in use" in done.stderr, done.stderr
    assert "LETTABOT_WEB__PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_after_a_restart_a_tab_shows_its_conversation_again(
    context: BrowserContext, tmp_path: Path,
) -> None:
    """The page's transcript lives in the lettabot process; after `lettabot run` restarts,
    the tab shows its conversation again from the conversation's stored messages."""
    port = free_port()
    env = {"LETTABOT_WEB__PORT": str(port)}
    bot = start_lettabot(tmp_path / "restart", "--demo", env=env)
    try:
        page = open_chat(context, bot)
        say(page, "hello before the restart")
        expect(last_reply(page)).to_have_text("You said: hello before the restart")
        expect(page.locator("#typing")).to_be_hidden(timeout=90_000)
    finally:
        assert bot.stop() == 0
    token = bot.token
    bot = start_lettabot(tmp_path / "restart", "--demo", env=env)
    try:
        assert bot.token == token  # reused: the page's cookie still opens it
        page.reload()
        expect(page.locator("#conn")).to_have_text("connected")
        expect(page.locator(".msg.user .bubble").first).to_have_text(
            "hello before the restart")
        expect(last_reply(page)).to_have_text("You said: hello before the restart")
        say(page, "what was my first message?")  # and the same conversation goes on
        expect(last_reply(page)).to_have_text(
            "Your first message was: hello before the restart")
    finally:
        assert bot.stop() == 0


def test_a_duplicated_tab_gets_its_own_conversation(
    context: BrowserContext, demo_bot: RunningBot,
) -> None:
    first = open_chat(context, demo_bot)
    say(first, "I am the first tab")
    expect(last_reply(first)).to_have_text("You said: I am the first tab")
    tab = first.evaluate("sessionStorage['lettabot-tab']")
    twin = context.new_page()  # what "Duplicate tab" does: a copy of sessionStorage
    twin.add_init_script(f"sessionStorage.setItem('lettabot-tab', {tab!r})")
    twin.goto(demo_bot.page_url)
    expect(twin.locator("#conn")).to_have_text("connected")
    assert twin.evaluate("sessionStorage['lettabot-tab']") != tab
    assert twin.locator(".msg").count() == 0  # not the first tab's conversation
    first.reload()  # a reload of the first tab keeps its own
    expect(first.locator(".msg.user .bubble").first).to_have_text("I am the first tab")
    assert first.evaluate("sessionStorage['lettabot-tab']") == tab


def test_the_page_says_working_only_while_the_agent_works_and_shows_queued_messages(
    context: BrowserContext, demo_bot: RunningBot,
) -> None:
    page = open_chat(context, demo_bot)
    say(page, "tell me a story")  # streams for several seconds
    expect(page.locator("#typing")).to_be_visible()
    say(page, "and then?")  # sent while the agent works: it waits its turn
    queued = page.locator(".msg.user.queued .bubble")
    expect(queued).to_have_text("and then?")
    expect(last_reply(page)).to_have_text("You said: and then?", timeout=90_000)
    expect(queued).to_have_count(0)
    expect(page.locator("#typing")).to_be_hidden(timeout=30_000)
    say(page, f"run: echo waiting > waiting-{uuid.uuid4().hex[:6]}.txt")
    card = page.locator(".card").last
    expect(card.locator("button[data-decision=deny]")).to_be_visible()
    # the agent is not working now: it waits for a click, and the page says so
    expect(page.locator("#waiting")).to_be_visible()
    page.wait_for_timeout(5000)  # longer than the runtime's typing interval (4 s)
    expect(page.locator("#typing")).to_be_hidden()
    card.locator("button[data-decision=deny]").click()
    expect(page.locator("#waiting")).to_be_hidden()


def test_the_stop_button_interrupts_the_running_turn(
    context: BrowserContext, demo_bot: RunningBot,
) -> None:
    page = open_chat(context, demo_bot)
    say(page, "tell me a story")
    expect(last_reply(page)).to_contain_text("Once upon a time")
    page.locator("#stop").click()
    expect(last_reply(page)).to_contain_text("(stopped)", timeout=30_000)
    expect(page.locator("#typing")).to_be_hidden(timeout=30_000)
    assert "The end." not in last_reply(page).inner_text()


def test_feedback_on_an_answer_is_stored_with_its_conversation(
    context: BrowserContext, demo_bot: RunningBot,
) -> None:
    import sqlite3

    page = open_chat(context, demo_bot)
    say(page, "rate this answer")
    expect(last_reply(page)).to_have_text("You said: rate this answer")
    answer = page.locator(".msg.bot").last
    answer.locator("button[data-rating=bad]").click()
    expect(answer.locator("button.chosen")).to_have_attribute("data-rating", "bad")
    page.locator(".msg.bot").last.locator("button[data-rating=good]").click()  # changed mind
    expect(page.locator(".msg.bot").last.locator("button.chosen")).to_have_attribute(
        "data-rating", "good")
    item = page.locator(".msg.bot").last.get_attribute("data-id")
    with sqlite3.connect(demo_bot.data_dir / "demo" / "lettabot.db") as db:
        rows = db.execute("SELECT rating, user_id, conversation_id FROM lettabot_feedback "
                          "WHERE message_ref = ?", (item,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == "good" and rows[0][1] == "web:web-user"
    assert rows[0][2] and rows[0][2].startswith("local-conv-")


def test_an_uploaded_file_lands_in_the_agents_workspace(
    context: BrowserContext, demo_bot: RunningBot, tmp_path: Path,
) -> None:
    notes = tmp_path / "meeting notes.txt"
    notes.write_text("decisions: ship friday\n")
    page = open_chat(context, demo_bot)
    page.locator("#file").set_input_files(str(notes))
    expect(page.locator("#attached .chip")).to_have_text("📎 meeting notes.txt")
    say_with_file = "please read the attached notes"
    page.fill("#input", say_with_file)
    page.press("#input", "Enter")
    bubble = page.locator(".msg.user .bubble").last
    expect(bubble).to_contain_text("📎 meeting notes.txt")
    expect(page.locator("#attached .chip")).to_have_count(0)
    expect(last_reply(page)).to_contain_text("saved in your working folder as uploads/")
    reply = last_reply(page).inner_text()
    relative = reply.split("saved in your working folder as ", 1)[1].split(",")[0].strip()
    assert (folder(page, demo_bot) / relative).read_text() == "decisions: ship friday\n"
