"""What an "Always allow" covers (issue #23): prefix rules only for curated commands and
only with arguments each command is known to take harmlessly; nothing outside the
workspace; exact rules for everything else. Judged without a CLI."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lettabot.runtime.store import AllowRule
from lettabot.runtime.tool_guard import ToolGuard
from lettabot.runtime.tool_rules import CURATED, matches, propose


@pytest.fixture
def guard(tmp_path: Path) -> ToolGuard:
    home = tmp_path / "home"
    (home / ".letta").mkdir(parents=True)
    workspace = tmp_path / "data" / "workspace"
    (workspace / "sub").mkdir(parents=True)
    (workspace / "escape").symlink_to(home / ".letta")
    return ToolGuard.build("standard", workspace, [tmp_path / "data", workspace / ".env"],
                           env={"HOME": str(home)})


def rule(kind: str, pattern: str, tool: str = "Bash") -> AllowRule:
    now = datetime.now(UTC)
    return AllowRule(id="r-1", scope="s", tool_name=tool, kind=kind, pattern=pattern,
                     created_by="slack:U1", created_at=now, expires_at=now + timedelta(hours=1))


def approve_always(guard: ToolGuard, command: str, tool: str = "Bash") -> AllowRule:
    proposal = propose(guard, tool, {"command": command})
    return rule(proposal.kind, proposal.pattern, tool)


# (the approved command, calls its rule must NOT cover)
WIDENINGS = {
    "find . -name '*.md'": [
        "find . -maxdepth 0 -exec sh -c 'id' ';'", "find . -execdir id ';'",
        "find . -ok id ';'", "find . -okdir id ';'", "find . -delete", "find sub -delete",
        "find . -fprint out", "find . -fprintf out %p", "find . -fprint0 out",
        "find . -fls out", "find -L . -name x", "find . -follow", "find / -name x",
        "find ~ -name x", "find .. -name x", "find escape -name x", "find . -name",
        "find /proc -name environ", "find .letta", "find . -newer /etc/passwd",
        "find . -name x -exec cat {} +", "find . -printf %p",
    ],
    "git status": [
        "git -c alias.x='!sh' x", "git -c core.pager=sh status", "git -c x=y status",
        "git -C / status", "git --git-dir=/tmp/x status", "git --work-tree=/ status",
        "git --exec-path=/tmp status", "git -p status", "git --paginate status",
        "git status --porcelain=v3", "git status /", "git status ~", "git status ..",
        "git status && printenv", "git status; id", "git status $(id)", "git status > out",
        "git status --output=/etc/x", "git status --git-dir=~/.letta", "git status .letta",
        "git log",
    ],
    "git log --oneline": [
        "git log --output=/tmp/x", "git log --ext-diff", "git log --textconv",
        "git log -p --ext-diff", "git log --exec=sh", "git log -c core.pager=sh",
        "git log --format=%H -- /etc", "git log HEAD~1", "git log -- ../x",
        "git log --upload-pack=sh",
    ],
    "git diff --stat": ["git diff --ext-diff", "git diff --textconv", "git diff --output=x",
                        "git diff --no-index /etc/passwd sub", "git diff -- /etc"],
    "git branch": ["git branch evil", "git branch -D main", "git branch -m x y",
                   "git branch --set-upstream-to=x"],
    "rg TODO": ["rg --pre=sh TODO", "rg --pre sh TODO", "rg --pre-glob '*' --pre=sh x",
                "rg -z TODO", "rg --search-zip TODO", "rg -L TODO", "rg --follow TODO",
                "rg --hostname-bin=sh TODO", "rg TODO /", "rg TODO ~", "rg TODO ..",
                "rg -- -x", "rg --file=/etc/passwd .", "rg -f/etc/passwd .",
                "rg -g '../*' x", "rg --type-add 'x:*.x' x", "rg TODO escape"],
    "grep -rn TODO sub": ["grep -R TODO .", "grep --dereference-recursive TODO .",
                          "grep -f /etc/passwd sub", "grep --file=/etc/passwd sub",
                          "grep -f/etc/passwd sub", "grep -rn TODO /", "grep TODO ~/x",
                          "grep -r xoxb- ..", "grep -e x /proc/self/environ",
                          "grep --include=../x -r x ."],
    "sort a.txt": ["sort -o out a.txt", "sort --output=out a.txt", "sort -oout a.txt",
                   "sort --compress-program=sh a.txt", "sort -T /tmp a.txt",
                   "sort --files0-from=/etc/x", "sort /etc/passwd", "sort --random-source=x"],
    "cat sub/a.txt": ["cat /etc/passwd", "cat ~/.bashrc", "cat ../x", "cat escape/settings.json",
                      "cat .letta/settings.json", "cat '$HOME/x'", "cat 'a*'", "cat -- -x",
                      "cat /proc/self/environ", "cat /proc/1/environ", "cat .env",
                      "cat sub/../../x", "cat '~/x'", "cat '`id`'", "cat '${HOME}'"],
    "ls": ["ls /", "ls ~", "ls ..", "ls -L escape", "ls escape", "ls --color=always",
           "ls --hyperlink"],
    "head -n 5 a.txt": ["head -n 5 /etc/passwd", "head -c1 ~/x"],
    "tail -n 5 a.txt": ["tail -f a.txt", "tail -F a.txt", "tail --follow a.txt"],
    "tree": ["tree -o out", "tree -l", "tree -R", "tree /"],
    "uniq a.txt": ["uniq a.txt b.txt", "uniq a.txt .letta/settings.json"],
    "date": ["date -s 2020-01-01", "date --set=x", "date -f /etc/passwd"],
    "diff a b": ["diff -r a b", "diff --recursive a b", "diff a /etc/passwd"],
    "du -sh sub": ["du -L sub", "du --files0-from=/etc/x", "du -sh /"],
    "file a.txt": ["file -m /tmp/magic a.txt", "file -z a.gz", "file -f /etc/x"],
    "echo hi": ["echo hi > out", "echo $(id)", "echo hi | sh", "echo `id`"],
    "printf hi": ["printf -v x hi"],
}


@pytest.mark.parametrize(("approved", "call"), [
    (approved, call) for approved, calls in WIDENINGS.items() for call in calls])
def test_a_prefix_rule_covers_no_code_runner_nor_path_outside(
        guard: ToolGuard, approved: str, call: str) -> None:
    made = approve_always(guard, approved)
    assert made.kind == "prefix", approved
    assert matches(guard, made, "Bash", {"command": approved})
    assert not matches(guard, made, "Bash", {"command": call})


@pytest.mark.parametrize(("approved", "same_kind"), [
    ("find . -name '*.md'", "find sub -type f -name '*.py' -maxdepth 2"),
    ("git status", "git status --short sub"),
    ("git log --oneline", "git log -5 --stat -- sub"),
    ("rg TODO", "rg -n -i 'fix.*me' sub -g '*.py'"),
    ("grep -rn TODO sub", "grep -rnw 'a$' sub --include='*.py'"),
    ("cat sub/a.txt", "cat -n sub/b.txt"),
    ("head -n 5 a.txt", "head -20 sub/x"),
    ("ls", "ls -la sub"),
    ("echo hi", "echo -n 'any $text (here)'"),
])
def test_a_prefix_rule_still_covers_the_same_kind_of_call(
        guard: ToolGuard, approved: str, same_kind: str) -> None:
    assert matches(guard, approve_always(guard, approved), "Bash", {"command": same_kind})


@pytest.mark.parametrize("command", [
    "python3 -c 'print(1)'", "python3 x.py", "sed -n 1p a.txt", "sed e a.txt",
    "sed 's/a/b/e' a.txt", "awk '{print}' a.txt", "node -e 1", "tar --to-command=sh -xf a.tar",
    "tar -xf a.tar", "env sh -c id", "env", "timeout 5 sh -c id", "nice ls", "xargs ls",
    "sh x.sh", "bash x.sh", "make", "npm test", "npx x", "pytest", "uv run x", "git push",
    "git ls-remote --upload-pack=sh origin", "git -c alias.x='!id' x", "git config x y",
    "git checkout .", "find . -exec id ';'", "find . -delete", "sort -o out a", "rg --pre=sh x",
    "git log --output=x", "ls -R --hyperlink", "strace ls", "busybox sh", "perl -e 1",
    "cp a b", "mv a b", "rm a", "chmod +x a", "ln -s a b", "curl x", "tee a", "dd if=a",
])
def test_other_commands_get_an_exact_rule(guard: ToolGuard, command: str) -> None:
    made = approve_always(guard, command)
    assert made.kind == "command", command
    assert matches(guard, made, "Bash", {"command": command})
    assert not matches(guard, made, "Bash", {"command": command + " x"})
    assert not matches(guard, made, "Bash", {"command": command + "; id"})


@pytest.mark.parametrize("prefix", [
    "python3", "python", "node", "sed", "awk", "tar", "env", "timeout", "nice", "xargs", "sh",
    "bash", "make", "npm test", "npm", "pytest", "git push", "git -c", "git config", "perl",
])
def test_stored_prefix_rules_of_commands_not_curated_cover_nothing(
        guard: ToolGuard, prefix: str) -> None:
    """A rule made before this version ("`python3 …`") no longer covers anything."""
    for command in (prefix, f"{prefix} x", f"{prefix} -c id", f"{prefix} sub/a.py"):
        assert not matches(guard, rule("prefix", prefix), "Bash", {"command": command})


def test_the_curated_table_is_narrow() -> None:
    assert set(CURATED) <= {"ls", "cat", "head", "tail", "wc", "grep", "rg", "find", "git",
                            "stat", "file", "du", "tree", "pwd", "echo", "printf", "date",
                            "diff", "sort", "uniq", "cut", "tr"}
    git = CURATED["git"]
    assert isinstance(git, dict)
    assert set(git) <= {"status", "log", "diff", "show", "branch", "ls-files", "rev-parse",
                        "blame"}


OUTSIDE = [
    ("Read", {"file_path": "/proc/self/status"}), ("Read", {"file_path": "/proc/self/environ"}),
    ("Read", {"file_path": f"/proc/{os.getpid()}/status"}), ("Read", {"file_path": "/etc/hosts"}),
    ("Read", {"file_path": "/sys/kernel/hostname"}), ("Read", {"file_path": "/dev/null"}),
    ("Read", {"file_path": "~/x"}), ("Read", {"file_path": "../x"}),
    ("Read", {"file_path": "$HOME/x"}), ("Read", {"file_path": "escape/settings.json"}),
    ("Grep", {"pattern": "x", "path": "/proc"}), ("Glob", {"pattern": "*", "path": "/"}),
    ("LS", {"path": "/dev"}), ("Write", {"file_path": "/tmp/x", "content": "1"}),
    ("Write", {"file_path": "~/x", "content": "1"}),
    ("Bash", {"command": "cat /proc/self/status"}), ("Bash", {"command": "cat /etc/hosts"}),
    ("Bash", {"command": "ls /proc/1"}), ("Bash", {"command": "cat ~/x"}),
    ("Bash", {"command": "cat ../x"}), ("Bash", {"command": "python3 /tmp/x.py"}),
    ("Bash", {"command": "echo $HOME"}), ("Bash", {"command": "cat /proc/self/status | head"}),
    ("Bash", {"command": "cd /tmp && ls"}), ("Bash", {"command": "sed -n 1p ../../x"}),
    ("WebFetch", {"url": "x", "path": "/proc/self/environ"}),
]


@pytest.mark.parametrize(("tool", "tool_input"), OUTSIDE)
def test_always_allow_outside_the_workspace_approves_only_that_call(
        guard: ToolGuard, tool: str, tool_input: dict[str, object]) -> None:
    proposal = propose(guard, tool, tool_input)
    assert proposal.kind == "once" and not proposal.makes_rule, proposal
    assert "only this call" in proposal.covers


@pytest.mark.parametrize("folder", ["/proc", "/proc/1", "/", "/sys", "/dev", "/etc", "/tmp"])
def test_no_stored_path_rule_covers_a_path_outside(guard: ToolGuard, folder: str) -> None:
    for tool, raw in (("Read", f"/proc/{os.getpid()}/environ"), ("Read", "/proc/self/environ"),
                      ("Read", "/etc/passwd"), ("Read", "/dev/stdin"), ("Write", "/tmp/x")):
        assert not matches(guard, rule("path", folder, tool), tool, {"file_path": raw})


def test_a_path_rule_covers_only_literal_paths_under_its_folder(guard: ToolGuard) -> None:
    proposal = propose(guard, "Write", {"file_path": "sub/a.txt", "content": "1"})
    assert proposal.kind == "path"
    made = rule("path", proposal.pattern, "Write")
    assert matches(guard, made, "Write", {"file_path": "sub/b.txt", "content": "2"})
    for raw in ("$HOME/sub/a.txt", "${PWD}/sub/a.txt", "sub/$X", "~/sub/a.txt", "sub/.letta/x",
                "sub/.git/config", "sub/../../x", "/tmp/sub/a.txt", "sub/*.txt", "-sub/a",
                "sub/a\nb"):
        assert not matches(guard, made, "Write", {"file_path": raw, "content": "2"}), raw
    assert not matches(guard, made, "Write", {"file_path": "sub/b.txt", "mode": "x"})
    root = propose(guard, "Write", {"file_path": "a.txt", "content": "1"})
    at_root = rule("path", root.pattern, "Write")
    assert matches(guard, at_root, "Write", {"file_path": "b.txt"})
    assert not matches(guard, at_root, "Write", {"file_path": ".letta/settings.local.json"})
    assert not matches(guard, at_root, "Write", {"file_path": "$HOME/.letta/settings.json"})


def test_rules_follow_the_conversations_directory(guard: ToolGuard) -> None:
    made = approve_always(guard, "cat sub/a.txt")
    (guard.workspace / "sub" / "peek").symlink_to(guard.home)
    assert matches(guard, made, "Bash", {"command": "cat peek/x"}, "conv-1")
    guard.moved("conv-1", {"path": "sub"})
    assert not matches(guard, made, "Bash", {"command": "cat peek/x"}, "conv-1")
    assert matches(guard, made, "Bash", {"command": "cat peek/x"}, "conv-2")


def test_git_rules_need_the_repository_inside_the_workspace(guard: ToolGuard) -> None:
    made = rule("prefix", "git status")
    assert matches(guard, made, "Bash", {"command": "git status"})
    (guard.workspace.parent / ".git").mkdir()  # the workspace sits in someone's checkout
    assert not matches(guard, made, "Bash", {"command": "git status"})
    assert propose(guard, "Bash", {"command": "git log"}).kind == "command"
    (guard.workspace / ".git").mkdir()  # its own repository
    assert matches(guard, made, "Bash", {"command": "git status"})


def test_web_addresses_are_not_paths_outside(guard: ToolGuard) -> None:
    assert propose(guard, "WebFetch", {"url": "https://example.com/a/b"}).kind == "input"
    assert propose(guard, "Bash", {"command": "curl -s https://example.com/x"}).kind == "command"
    assert propose(guard, "WebFetch", {"url": "file:///etc/passwd"}).kind == "once"
