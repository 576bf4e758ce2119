"""Which tool calls lettabot lets run without asking anyone.

The CLI's ``standard`` mode is built for one person at their own terminal: it runs
``Read``/``Grep``/``Glob`` on ANY path and read-only shell commands (``printenv``, ``cat``,
``grep -r … ~``) without asking. In a chat, everyone who may talk would then read what the
bot's host can read: provider keys in the Letta home, every conversation's history under
the local backend, lettabot's config, ``.env`` and store. So the runtime runs every
conversation in the CLI's ``strict`` mode (each tool call reaches the approval broker) and
this guard decides, for the configured ``letta.permission_mode``, what needs no click:

- ``strict``: nothing.
- ``standard``: reading and searching (Read, Glob, Grep, LS, …) inside the workspace
  (``letta.cwd``), never inside lettabot's or Letta's state (protected paths win over the
  workspace); the agent's own memory folder (read, write, and a narrow set of shell commands
  to save it with git); bookkeeping tools that touch nothing (plans, todo lists).
  Shell commands otherwise always ask.
- ``acceptEdits``: ``standard`` plus Write/Edit inside the workspace.
- ``unrestricted``: everything (an explicit, logged choice).

Paths are resolved (symlinks followed, ``~`` and ``..`` expanded) before they are judged.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lettabot import sdk

__all__ = ["EDIT_TOOLS", "READ_TOOLS", "SHELL_TOOLS", "ToolGuard", "plain_shell"]

READ_TOOLS = frozenset({
    "Read", "read_file", "ReadFile", "ViewImage", "view_image", "Glob", "glob", "Grep", "grep",
    "grep_files", "search_file_content", "LS", "ListDir", "list_dir", "list_directory",
})
EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit", "write_file", "replace"})
SHELL_TOOLS = frozenset({"Bash", "shell", "Shell", "run_shell_command", "exec_command"})
BOOKKEEPING_TOOLS = frozenset({
    "TodoWrite", "UpdatePlan", "update_plan", "TaskCreate", "TaskGet", "TaskList", "TaskUpdate",
    "AskUserQuestion", "Skill",
})
"""Tools that read or change nothing outside the conversation itself."""

PATH_KEYS = ("file_path", "filePath", "path", "dir_path", "absolute_path", "notebook_path")
PATTERN_KEYS = ("pattern", "glob", "include")
"""For Glob-like tools these name files too (``../../**`` must not escape)."""

_MEMORY_CD = re.compile(r'^\s*cd\s+(?:"\$MEMORY_DIR"|\$MEMORY_DIR|\'?(?P<abs>/[^\'"\s;&|]+)\'?)'
                        r'\s*&&\s*(?P<rest>.+)$', re.S)
_SAFE_IN_MEMORY = {
    "ls": None, "cat": None, "head": None, "tail": None, "wc": None, "echo": None,
    "printf": None, "mkdir": None, "touch": None, "grep": None,
    "git": {"add", "commit", "status", "log", "diff", "show", "rm", "mv"},
}
_GIT_FLAGS = frozenset({
    "-q", "--quiet", "-m", "-qm", "-am", "-a", "-A", "--all", "-s", "--short", "--stat", "-p",
    "--oneline", "-n", "--no-color", "--cached", "--staged", "-r", "--",
})
"""The only git flags allowed without asking (no ``-c``, ``-C``, ``--output=``, hooks
switches…: each of those can run or write something outside the memory folder)."""


@dataclass(frozen=True)
class ToolGuard:
    """Decides which tool calls run without a click (see the module doc)."""

    mode: str
    workspace: Path
    protected: tuple[Path, ...] = ()
    memory_root: Path | None = None
    """``<backend>/memfs``: the agent's memory folder is ``<memory_root>/<agent_id>/memory``."""
    home: Path = field(default_factory=Path.home)

    @classmethod
    def build(cls, mode: str, workspace: Path, protected: Iterable[Path], *,
              env: Mapping[str, str]) -> ToolGuard:
        home = Path(env.get("HOME") or Path.home())
        backend = sdk.local_backend_dir(env)
        letta_home = home / ".letta"
        paths = {_real(p) for p in (*protected, letta_home, backend)}
        return cls(mode, _real(workspace), tuple(sorted(paths)), _real(backend / "memfs"),
                   _real(home))

    # -- decisions ---------------------------------------------------------------------

    def auto_allow(self, tool: str, tool_input: Mapping[str, Any],
                   agent_id: str | None = None) -> str | None:
        """Why ``tool`` may run with ``tool_input`` without asking, or None (ask)."""
        if self.mode == "unrestricted":
            return "permission_mode unrestricted"
        if self.mode == "strict":
            return None
        memory = self._memory_dir(agent_id)
        if tool == "Memory":
            return "the agent's own memory" if memory is not None else None
        if tool in BOOKKEEPING_TOOLS:
            return "changes nothing outside the conversation"
        if tool in READ_TOOLS:
            paths = self.paths(tool_input, patterns=True)
            if paths is None:
                return None
            if all(self._readable(p, memory) for p in paths):
                return "reads inside the workspace"
            return None
        if tool in EDIT_TOOLS:
            paths = self.paths(tool_input, patterns=False)
            if not paths:
                return None
            if memory is not None and all(_inside(p, memory) and not _in_git(p, memory)
                                          for p in paths):
                return "edits the agent's own memory"
            if self.mode == "acceptEdits" and all(self._readable(p, None) for p in paths):
                return "permission_mode acceptEdits, inside the workspace"
            return None
        if tool in SHELL_TOOLS and memory is not None:
            command = tool_input.get("command")
            if isinstance(command, str) and self._memory_command(command, memory):
                return "saves the agent's own memory"
        return None

    def in_workspace(self, path: Path) -> bool:
        """Inside the workspace and outside every protected path within it."""
        return self._readable(_real(path), None)

    def sendable(self, path: Path) -> bool:
        """Whether the (resolved) ``path`` may be posted to the chat: a file inside the
        workspace and outside lettabot's and Letta's state, as for reads without a click."""
        return self._readable(_real(path), None)

    def protected_path(self, path: Path) -> bool:
        """Whether ``path`` is part of lettabot's or Letta's state."""
        real = _real(path)
        return any(_inside(real, p) for p in self.protected)

    # -- helpers ---------------------------------------------------------------------------

    def _memory_dir(self, agent_id: str | None) -> Path | None:
        if self.memory_root is None or not agent_id or "/" in agent_id or agent_id in (".", ".."):
            return None
        return _real(self.memory_root / agent_id / "memory")

    def resolve(self, raw: str) -> Path:
        """A path as a tool would see it: ``~`` expanded, relative to the workspace, real."""
        if raw == "~" or raw.startswith("~/"):
            raw = str(self.home) + raw[1:]
        path = Path(raw)
        if not path.is_absolute():
            path = self.workspace / path
        return _real(path)

    def paths(self, tool_input: Mapping[str, Any], *, patterns: bool) -> list[Path] | None:
        """The resolved paths a tool input names (the workspace if none); None: unjudgeable."""
        out: list[Path] = []
        for key, value in tool_input.items():
            if key in PATH_KEYS:
                if not isinstance(value, str):
                    return None
                if value.strip():
                    out.append(self.resolve(value.strip()))
            elif patterns and key in PATTERN_KEYS and isinstance(value, str):
                # a glob names files relative to the search root: no way out of it
                if value.startswith(("/", "~")) or ".." in value.replace("\\", "/").split("/"):
                    return None
            elif isinstance(value, str) and (value.startswith(("/", "~")) or "../" in value):
                return None  # a path under a key we do not know: ask
        return out or [self.workspace]

    def _readable(self, path: Path, memory: Path | None) -> bool:
        if memory is not None and _inside(path, memory):
            return True
        if not _inside(path, self.workspace):
            return False
        # protected folders that contain the workspace (e.g. data_dir) do not count
        return not any(_inside(path, p) and not _inside(self.workspace, p)
                       for p in self.protected)

    def _memory_command(self, command: str, memory: Path) -> bool:
        """``cd "$MEMORY_DIR" && <simple commands on relative paths> [&& …]``, nothing else."""
        m = _MEMORY_CD.match(command)
        if not m:
            return False
        if m.group("abs") and _real(Path(m.group("abs"))) != memory:
            return False
        rest = m.group("rest")
        if not plain_shell(rest):
            return False
        try:
            lexer = shlex.shlex(rest, posix=True, punctuation_chars="&;|<>()")
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:
            return False
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if not self._safe_segment(segment):
                    return False
                segment = []
            elif word and all(c in "&;|<>()" for c in word) and word not in (">", ">>"):
                return False
            else:
                segment.append(word)
        return True

    @staticmethod
    def _safe_segment(words: list[str]) -> bool:
        if not words:
            return False
        name, args = words[0], words[1:]
        if name not in _SAFE_IN_MEMORY:
            return False
        subs = _SAFE_IN_MEMORY[name]
        if subs is not None and (not args or args[0] not in subs):
            return False
        redirect = False
        for word in args:
            if word in (">", ">>"):
                if redirect:
                    return False
                redirect = True
                continue
            flag = word.startswith("-") and not redirect
            if flag and name == "git" and word not in _GIT_FLAGS:
                return False
            # a flag's value (``--file=/etc/x``) names a path as much as a bare word does
            value = word.partition("=")[2] if flag else word
            parts = value.split("/")
            if value and (value.startswith(("/", "~")) or ".." in parts or ".git" in parts):
                return False
            redirect = False
        return not redirect


def plain_shell(text: str) -> bool:
    """No expansion, substitution, escape or command separator outside single quotes."""
    quote = ""
    for ch in text:
        if quote == "'":
            if ch == "'":
                quote = ""
            continue
        if ch in "$`\\":
            return False
        if quote == '"':
            if ch == '"':
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in ";|<()\n\r*?[]{}":
            return False
    return quote == ""


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _in_git(path: Path, memory: Path) -> bool:
    return ".git" in path.relative_to(memory).parts
