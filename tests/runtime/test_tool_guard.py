"""The tool guard, "Always allow" rules and request keys, judged without a CLI (the
end-to-end vectors are in test_security.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lettabot.runtime.approvals import request_key
from lettabot.runtime.store import AllowRule
from lettabot.runtime.tool_guard import ToolGuard
from lettabot.runtime.tool_rules import matches, propose

AGENT = "agent-local-1"
SAVE = ("cd \"$MEMORY_DIR\" && printf %s '---\nname: notes\n---\nfact\n' > notes.md && "
        "git add notes.md && git commit -qm 'Remember' && echo saved")


@pytest.fixture
def guard(tmp_path: Path) -> ToolGuard:
    home = tmp_path / "home"
    (home / ".letta" / "lc-local-backend" / "memfs" / AGENT / "memory").mkdir(parents=True)
    workspace = tmp_path / "data" / "workspace"
    (workspace / "sub").mkdir(parents=True)
    (workspace / ".env").write_text("X=1\n")
    (workspace / "escape").symlink_to(home / ".letta")
    return ToolGuard.build("standard", workspace, [tmp_path / "data", workspace / ".env"],
                           env={"HOME": str(home)})


@pytest.mark.parametrize(("tool", "tool_input"), [
    ("Read", {"file_path": "notes.txt"}),
    ("Read", {"file_path": "sub/a.py", "offset": 10}),
    ("Grep", {"pattern": "TODO"}),
    ("Glob", {"pattern": "**/*.py"}),
    ("Bash", {"command": SAVE}),
    ("TodoWrite", {"todos": []}),
])
def test_runs_without_a_click(guard: ToolGuard, tool: str, tool_input: dict[str, object]) -> None:
    assert guard.auto_allow(tool, tool_input, AGENT) is not None


@pytest.mark.parametrize(("tool", "tool_input"), [
    ("Read", {"file_path": "~/.letta/settings.json"}),
    ("Read", {"file_path": "../lettabot.db"}),
    ("Read", {"file_path": ".env"}),  # protected inside the workspace too
    ("Read", {"file_path": "escape/settings.json"}),  # a symlink out
    ("Read", {"file_path": "/proc/self/environ"}),
    ("Grep", {"pattern": "xoxb-", "path": "~"}),
    ("Grep", {"pattern": "key", "path": "/"}),
    ("Glob", {"pattern": "../**"}),
    ("Read", {"file_path": 7}),
    ("Read", {"file_path": "a", "other": "/etc/passwd"}),
    ("Bash", {"command": "printenv"}),
    ("Bash", {"command": "ls"}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && cat ../../../x'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && ls\nprintenv'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && echo "$HOME"'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && cat $(printenv)'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && git -c core.pager=sh log'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && printf x > .git/hooks/post-commit'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && cat /etc/passwd'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && ls | sh'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && git diff --output=../../../../.bashrc'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && grep --file=/etc/passwd -r .'}),
    ("Bash", {"command": 'cd "$MEMORY_DIR" && git log --exec-path=/tmp'}),
    ("Bash", {"command": 'cd /tmp && ls'}),
    ("Write", {"file_path": "a.txt", "content": "x"}),
    ("WebFetch", {"url": "https://example.com"}),
])
def test_asks(guard: ToolGuard, tool: str, tool_input: dict[str, object]) -> None:
    assert guard.auto_allow(tool, tool_input, AGENT) is None


def test_memory_tools_need_the_agent(guard: ToolGuard) -> None:
    assert guard.auto_allow("Bash", {"command": SAVE}, None) is None
    assert guard.auto_allow("Bash", {"command": SAVE}, "../other") is None


def _rule(guard: ToolGuard, tool: str, tool_input: dict[str, object]) -> AllowRule:
    proposal = propose(guard, tool, tool_input)
    now = datetime.now(UTC)
    return AllowRule(id="r-1", scope="s", tool_name=tool, kind=proposal.kind,
                     pattern=proposal.pattern, created_by="slack:U1", created_at=now,
                     expires_at=now + timedelta(hours=1))


def test_a_prefix_rule_covers_only_plain_commands_on_workspace_paths(guard: ToolGuard) -> None:
    rule = _rule(guard, "Bash", {"command": "git status sub"})
    assert (rule.kind, rule.pattern) == ("prefix", "git status")
    assert matches(guard, rule, "Bash", {"command": "git status"})
    assert matches(guard, rule, "Bash", {"command": "git status --short sub"})
    for other in ("git status ~", "git status /", "git status ..", "git status && printenv",
                  "git status; cat ~/.letta/settings.json", "git status $(id)", "git log",
                  "git status > out", "git status .env", "git status --output=/etc/x",
                  "git status --git-dir=~/.letta"):
        assert not matches(guard, rule, "Bash", {"command": other}), other
    assert not matches(guard, rule, "Shell", {"command": "git status"})


def test_complex_commands_and_files_get_narrow_rules(guard: ToolGuard) -> None:
    exact = _rule(guard, "Bash", {"command": "echo hi > a.txt"})
    assert exact.kind == "command"
    assert matches(guard, exact, "Bash", {"command": "echo hi > a.txt"})
    assert not matches(guard, exact, "Bash", {"command": "echo hi > b.txt"})
    folder = _rule(guard, "Write", {"file_path": "sub/a.txt", "content": "1"})
    assert folder.kind == "path"
    assert matches(guard, folder, "Write", {"file_path": "sub/b.txt", "content": "2"})
    assert not matches(guard, folder, "Write", {"file_path": "b.txt", "content": "2"})
    assert not matches(guard, folder, "Edit", {"file_path": "sub/b.txt"})


def test_request_keys_are_bound_to_the_input() -> None:
    one = request_key("conv", "perm-call_1", "Bash", {"command": "ls"})
    assert one == request_key("conv", "perm-call_1", "Bash", {"command": "ls"})  # a re-send
    assert one != request_key("conv", "perm-call_1", "Bash", {"command": "rm -rf ~"})
    assert one != request_key("conv2", "perm-call_1", "Bash", {"command": "ls"})
    # without an id, two requests never share a decision
    assert request_key("conv", None, "Bash", {"command": "ls"}) != request_key(
        "conv", None, "Bash", {"command": "ls"})
