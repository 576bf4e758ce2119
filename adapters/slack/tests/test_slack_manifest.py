"""The shipped app manifest asks for what the adapter handles, and no more."""

from __future__ import annotations

import re
from pathlib import Path

from lettabot_slack.listeners import COMMAND

MANIFEST = Path(__file__).resolve().parents[3] / "config" / "slack-app-manifest.yaml"


def _list_after(text: str, key: str) -> list[str]:
    block = re.search(rf"^(\s*){key}:\n((?:\1\s+- .*\n)+)", text, re.M)
    assert block, key
    return [re.sub(r"\s+#.*", "", line).strip()[2:] for line in block.group(2).splitlines()]


def test_manifest_scopes_events_and_command() -> None:
    text = MANIFEST.read_text()
    assert sorted(_list_after(text, "bot")) == sorted([
        "app_mentions:read", "channels:history", "groups:history", "im:history",
        "chat:write", "reactions:write", "users:read", "files:read", "files:write",
        "assistant:write", "commands",
    ])
    assert sorted(_list_after(text, "bot_events")) == sorted(
        ["app_mention", "message.channels", "message.groups", "message.im",
         "assistant_thread_started"]
    )
    assert "assistant_view:" in text
    assert f"command: {COMMAND}\n" in text
    assert "socket_mode_enabled: true" in text
    assert re.search(r"interactivity:\n(\s+#.*\n)?\s+is_enabled: true", text)


def test_the_readme_lists_exactly_the_manifests_scopes_and_events() -> None:
    text = MANIFEST.read_text()
    readme = (MANIFEST.parents[1] / "adapters" / "slack" / "README.md").read_text()
    step = readme.partition("It asks for exactly what the bot uses:")[2].partition("2. **")[0]
    named = set(re.findall(r"`([\w:.]+)`", step))
    assert set(_list_after(text, "bot")) <= named, set(_list_after(text, "bot")) - named
    assert set(_list_after(text, "bot_events")) <= named, set(
        _list_after(text, "bot_events")) - named
    assert named <= {*_list_after(text, "bot"), *_list_after(text, "bot_events"), COMMAND}, (
        named - {*_list_after(text, "bot"), *_list_after(text, "bot_events"), COMMAND})
