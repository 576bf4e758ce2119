"""Which tool calls lettabot lets run without asking anyone, and which never run.

The CLI's ``standard`` mode is built for one person at their own terminal: it runs
``Read``/``Grep``/``Glob`` on ANY path and read-only shell commands (``printenv``, ``cat``,
``grep -r … ~``) without asking. In a chat, everyone who may talk would then read what the
bot's host can read: provider keys in the Letta home, every conversation's history under
the local backend, lettabot's config, ``.env`` and store. So the runtime runs every
conversation in the CLI's ``strict`` mode (each tool call reaches the approval broker) and
this guard decides, for the configured ``letta.permission_mode``, what needs no click:

- ``strict``: nothing.
- ``standard``: reading and searching (Read, Glob, Grep, LS, …) inside the workspace
  (``letta.cwd``, or the chat scope's folder: :meth:`ToolGuard.within`), never inside
  lettabot's or Letta's state (protected paths win over the workspace); the agent's own
  memory folder (read, write, and a narrow set of shell commands to save it with git);
  bookkeeping tools that touch nothing (plans, todo lists). Shell commands otherwise always
  ask.
- ``acceptEdits``: ``standard`` plus Write/Edit inside the workspace.
- ``unrestricted``: everything (an explicit, logged choice).

**Paths are judged as the CLI acts on them.** The CLI expands ``$VAR``, ``${VAR}`` and
``~`` in ``Read``/``Write``/``Edit`` paths, resolves relative paths from the conversation's
current directory (``SetWorkingDirectory`` moves it) and passes Grep's ``pattern`` to
ripgrep as an argument. So a path-like value holding ``$``, a backtick, ``~user``, glob
characters where the tool does not glob, a NUL or line break, or a leading ``-`` is never
allowed without a click (nor covered by a rule); unknown tools and unknown input keys of
known tools ask; relative paths are resolved from every directory the conversation may be
in (the workspace, and each allowed ``SetWorkingDirectory`` target).

**Some calls never run, whoever clicks** (:meth:`ToolGuard.forbidden`): a write (Write,
Edit, MultiEdit, NotebookEdit, ApplyPatch, a shell command naming it) to a ``.letta``
folder, the Letta home or a protected path — the CLI honours ``permissions.allow`` in
``<cwd>/.letta/settings*.json`` and ``~/.letta/settings.json`` even in ``strict`` mode, so one
such write switches approvals off — or into a ``.git`` folder (its config and hooks run
code on a later ``git status``); and ``SetWorkingDirectory`` out of the workspace.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lettabot import sdk

__all__ = [
    "CWD_TOOLS", "EDIT_TOOLS", "READ_TOOLS", "SHELL_TOOLS", "ToolGuard", "plain_shell",
    "suspicious",
]


@dataclass(frozen=True)
class ToolInput:
    """What the keys of one file tool's input mean (from the CLI's tool schemas)."""

    kind: str
    """``read`` or ``edit``."""
    paths: tuple[str, ...]
    """Keys naming one file or folder (taken literally by the tool: no globbing)."""
    globs: tuple[str, ...] = ()
    """Keys holding globs matched below the search root (Glob ``pattern``, Grep ``glob``)."""
    words: tuple[str, ...] = ()
    """Keys the tool passes to a program as arguments (Grep ``pattern``): no leading ``-``."""
    data: tuple[str, ...] = ()
    """Keys that name no file: contents, numbers, switches."""


_READ_ALIAS = ToolInput("read", ("file_path", "filePath", "path", "dir_path", "absolute_path"),
                        data=("offset", "limit"))
TOOL_INPUTS: dict[str, ToolInput] = {
    "Read": ToolInput("read", ("file_path",), data=("offset", "limit")),
    "ViewImage": ToolInput("read", ("path",)),
    "LS": ToolInput("read", ("path",), data=("ignore",)),
    "Glob": ToolInput("read", ("path",), globs=("pattern",)),
    "Grep": ToolInput("read", ("path",), globs=("glob",), words=("pattern", "type", "output_mode"),
                      data=("-A", "-B", "-C", "context", "-n", "-i", "head_limit", "offset",
                            "multiline")),
    "read_file": _READ_ALIAS, "ReadFile": _READ_ALIAS, "view_image": _READ_ALIAS,
    "ListDir": _READ_ALIAS, "list_dir": _READ_ALIAS, "list_directory": _READ_ALIAS,
    "glob": ToolInput("read", ("path", "dir_path"), globs=("pattern",)),
    "grep": ToolInput("read", ("path", "dir_path"), globs=("include", "glob"),
                      words=("pattern",)),
    "grep_files": ToolInput("read", ("path", "dir_path"), globs=("include", "glob"),
                            words=("pattern",), data=("limit",)),
    "search_file_content": ToolInput("read", ("path", "dir_path"), globs=("include",),
                                     words=("pattern",)),
    "Write": ToolInput("edit", ("file_path",), data=("content",)),
    "Edit": ToolInput("edit", ("file_path",), data=("old_string", "new_string", "replace_all")),
    "MultiEdit": ToolInput("edit", ("file_path",), data=("edits",)),
    "NotebookEdit": ToolInput("edit", ("notebook_path",),
                              data=("new_source", "cell_id", "cell_type", "edit_mode")),
    "write_file": ToolInput("edit", ("file_path", "path"), data=("content",)),
    "replace": ToolInput("edit", ("file_path",),
                         data=("old_string", "new_string", "expected_replacements",
                               "instruction")),
}
"""The file tools the guard knows, and what each key of their input is."""

READ_TOOLS = frozenset(t for t, s in TOOL_INPUTS.items() if s.kind == "read")
EDIT_TOOLS = frozenset(t for t, s in TOOL_INPUTS.items() if s.kind == "edit")
SHELL_TOOLS = frozenset({"Bash", "shell", "Shell", "run_shell_command", "exec_command"})
CWD_TOOLS = frozenset({"SetWorkingDirectory"})
"""Tools that move the conversation's current directory (``path``)."""
PATCH_TOOLS = frozenset({"ApplyPatch", "apply_patch"})
NEVER_TOOLS = {
    "EnterWorktree": "it creates a folder anywhere and moves the working directory there",
    "Workflow": "it runs a script inside the Letta CLI's own process, outside the shell "
                "sandbox",
}
BOOKKEEPING_TOOLS = frozenset({
    "TodoWrite", "UpdatePlan", "update_plan", "TaskCreate", "TaskGet", "TaskList", "TaskUpdate",
    "AskUserQuestion", "Skill",
})
"""Tools that read or change nothing outside the conversation itself."""

PATH_KEYS = ("file_path", "filePath", "path", "dir_path", "absolute_path", "notebook_path")
GLOB_CHARS = frozenset("*?[]{}")
_LETTA_MENTION = re.compile(r"\.letta(?![A-Za-z0-9_-])")

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


def suspicious(raw: str, *, globs: bool = False) -> str | None:
    """Why the CLI (or the program it calls) may not take ``raw`` as the literal path it
    looks like, or None. ``globs``: the tool expands glob characters itself."""
    if any(c in raw for c in "\x00\n\r"):
        return "a NUL or line break"
    if "$" in raw or "`" in raw:
        return "a `$` or backtick (the CLI expands variables)"
    if raw.startswith("-"):
        return "a leading `-` (a program takes it for an option)"
    if raw.startswith("~") and raw != "~" and not raw.startswith("~/"):
        return "a `~user` (another user's home)"
    if not globs and any(c in GLOB_CHARS for c in raw):
        return "glob characters where the tool takes the path literally"
    return None


class _Cwds:
    """Where each conversation's CLI may be now: the workspace it started in, and every
    folder an allowed ``SetWorkingDirectory`` named (a move may fail, so all are kept)."""

    def __init__(self) -> None:
        self._moves: dict[str, list[Path]] = {}

    def moves(self, conversation: str | None) -> tuple[Path, ...]:
        return tuple(self._moves.get(conversation or "", ()))

    def add(self, conversation: str, folders: Iterable[Path]) -> None:
        known = self._moves.setdefault(conversation, [])
        known.extend(f for f in folders if f not in known)

    def forget(self, conversation: str) -> None:
        self._moves.pop(conversation, None)


@dataclass(frozen=True)
class ToolGuard:
    """Decides which tool calls run without a click (see the module doc)."""

    mode: str
    workspace: Path
    protected: tuple[Path, ...] = ()
    memory_root: Path | None = None
    """``<backend>/memfs``: the agent's memory folder is ``<memory_root>/<agent_id>/memory``."""
    home: Path = field(default_factory=Path.home)
    letta_home: Path | None = None
    """``~/.letta``: settings (``permissions.allow``), provider keys; never written."""
    cwds: _Cwds = field(default_factory=_Cwds, compare=False, hash=False, repr=False)
    """Shared by :meth:`within` copies: the directories each conversation may be in."""

    @classmethod
    def build(cls, mode: str, workspace: Path, protected: Iterable[Path], *,
              env: Mapping[str, str]) -> ToolGuard:
        home = Path(env.get("HOME") or Path.home())
        backend = sdk.local_backend_dir(env)
        letta_home = home / ".letta"
        paths = {_real(p) for p in (*protected, letta_home, backend)}
        return cls(mode, _real(workspace), tuple(sorted(paths)), _real(backend / "memfs"),
                   _real(home), _real(letta_home))

    def within(self, workspace: Path) -> ToolGuard:
        """The same guard, judging against another workspace folder (a chat scope's)."""
        return replace(self, workspace=_real(workspace))

    # -- decisions ---------------------------------------------------------------------

    def auto_allow(self, tool: str, tool_input: Mapping[str, Any],
                   agent_id: str | None = None, conversation: str | None = None) -> str | None:
        """Why ``tool`` may run with ``tool_input`` without asking, or None (ask)."""
        if self.mode == "unrestricted":
            return "permission_mode unrestricted"
        if self.mode == "strict":
            return None
        if self.forbidden(tool, tool_input, agent_id, conversation) is not None:
            return None
        memory = self._memory_dir(agent_id)
        if tool == "Memory":
            return "the agent's own memory" if memory is not None else None
        if tool in BOOKKEEPING_TOOLS:
            return "changes nothing outside the conversation"
        spec = TOOL_INPUTS.get(tool)
        if spec is not None and spec.kind == "read":
            paths = self.judged(tool, tool_input, conversation)
            if paths is not None and all(self._readable(p, memory) for p in paths):
                return "reads inside the workspace"
            return None
        if spec is not None and spec.kind == "edit":
            paths = self.judged(tool, tool_input, conversation)
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

    def forbidden(self, tool: str, tool_input: Mapping[str, Any], agent_id: str | None = None,
                  conversation: str | None = None) -> str | None:
        """Why this call may never run, whoever clicks (see the module doc), or None."""
        if self.mode == "unrestricted":
            return None
        if tool in NEVER_TOOLS:
            return f"{tool} is never allowed here: {NEVER_TOOLS[tool]}"
        if tool in CWD_TOOLS:
            return self._cwd_forbidden(tool_input, conversation)
        spec = TOOL_INPUTS.get(tool)
        if spec is not None and (why := self._private_state(tool_input, spec.paths,
                                                            conversation)):
            return why
        if spec is not None and spec.kind == "edit":
            for key in spec.paths:
                value = tool_input.get(key)
                if isinstance(value, str) and (why := self._write_forbidden(
                        value.strip(), conversation, self._memory_dir(agent_id))):
                    return why
            return None
        if tool in PATCH_TOOLS:
            text = " ".join(str(v) for v in tool_input.values())
            if _LETTA_MENTION.search(text) or re.search(r"(^|[\s/])\.git(/|\s|$)", text):
                return ("it names a `.letta` or `.git` folder (a patch there could switch "
                        "approvals off or plant code)")
            return None
        if tool in SHELL_TOOLS:
            command = tool_input.get("command")
            if not isinstance(command, str):
                return None
            memory = self._memory_dir(agent_id)
            if memory is not None and self._memory_command(command, memory):
                return None
            text = command.replace(str(memory), "") if memory is not None else command
            if _LETTA_MENTION.search(text) or str(self.letta_home or "\x00") in text:
                return ("the command names a `.letta` folder: the CLI's permission files live "
                        "there, and one write to them switches approvals off")
        return None

    def _private_state(self, tool_input: Mapping[str, Any], keys: Iterable[str],
                       conversation: str | None) -> str | None:
        """Every conversation's history and the provider keys in the local backend: no
        click opens them (``$HOME``, ``${HOME}`` and ``~`` expanded as the CLI would)."""
        if self.memory_root is None:
            return None
        backend = self.memory_root.parent
        private = (backend / "conversations", backend / "providers")
        home = str(self.home)
        for key in keys:
            value = tool_input.get(key)
            if not isinstance(value, str) or "\x00" in value:
                continue  # unjudgeable values ask (see judged)
            raw = value.strip().replace("${HOME}", home).replace("$HOME", home)
            for path in self._resolve_all(raw, conversation):
                if any(_inside(path, p) or _inside(p, path) for p in private):
                    return ("it reaches the local backend's conversations or provider keys "
                            "(other people's chats, the model key): never a tool's to read")
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

    def ruleable(self, path: Path) -> bool:
        """Whether a rule may ever cover ``path`` (resolved): inside the workspace, outside
        every protected path, no ``.letta`` or ``.git`` folder on the way."""
        if not self._readable(path, None):
            return False
        rel = path.relative_to(self.workspace).parts
        return ".letta" not in rel and ".git" not in rel

    # -- the conversation's current directory ------------------------------------------

    def cwd_candidates(self, conversation: str | None = None) -> tuple[Path, ...]:
        """Every directory the conversation's CLI may be in now (the workspace first)."""
        return (self.workspace, *(m for m in self.cwds.moves(conversation)
                                  if m != self.workspace))

    def moved(self, conversation: str, tool_input: Mapping[str, Any]) -> None:
        """An allowed ``SetWorkingDirectory``: relative paths may now mean another folder."""
        raw = tool_input.get("path")
        if isinstance(raw, str) and raw.strip():
            self.cwds.add(conversation, self._resolve_all(raw.strip(), conversation))

    def forget(self, conversation: str) -> None:
        """The conversation is gone (reset): forget where it moved."""
        self.cwds.forget(conversation)

    # -- helpers ---------------------------------------------------------------------------

    def _memory_dir(self, agent_id: str | None) -> Path | None:
        if self.memory_root is None or not agent_id or "/" in agent_id or agent_id in (".", ".."):
            return None
        return _real(self.memory_root / agent_id / "memory")

    def resolve(self, raw: str, conversation: str | None = None) -> Path:
        """A path as a tool would see it: ``~`` expanded, relative to the (first) current
        directory, real. Use :meth:`judged` to decide on a tool call."""
        return self._resolve_all(raw, conversation)[0]

    def _resolve_all(self, raw: str, conversation: str | None) -> list[Path]:
        if raw == "~" or raw.startswith("~/"):
            raw = str(self.home) + raw[1:]
        path = Path(raw)
        if path.is_absolute():
            return [_real(path)]
        return [_real(cwd / path) for cwd in self.cwd_candidates(conversation)]

    def judged(self, tool: str, tool_input: Mapping[str, Any],
               conversation: str | None = None) -> list[Path] | None:
        """The resolved paths a file tool's input names (the current directory if none), as
        the CLI would act on them from every directory the conversation may be in; None:
        unjudgeable (an unknown tool or key, an expansion, a flag-like word: ask)."""
        spec = TOOL_INPUTS.get(tool)
        if spec is None:
            return None
        out: list[Path] = []
        for key, value in tool_input.items():
            if key in spec.paths:
                if not isinstance(value, str) or suspicious(value.strip()) is not None:
                    return None
                if value.strip():
                    out += self._resolve_all(value.strip(), conversation)
            elif key in spec.globs:
                if value is None:
                    continue
                if not isinstance(value, str) or not _glob_ok(value):
                    return None
            elif key in spec.words:
                if value is None:
                    continue
                if not isinstance(value, str) or value.startswith("-") or "\x00" in value:
                    return None
            elif key not in spec.data:
                return None  # a key we do not know: ask
        if spec.kind == "edit" and not out:
            return None
        return out or list(self.cwd_candidates(conversation))

    def paths(self, tool_input: Mapping[str, Any], *, patterns: bool,
              tool: str | None = None, conversation: str | None = None) -> list[Path] | None:
        """The resolved paths a tool input names (the workspace if none); None: unjudgeable.

        With ``tool``: as :meth:`judged`. Without: any key naming a path is judged, and a
        string under any other key that looks like a path makes the input unjudgeable."""
        if tool is not None:
            return self.judged(tool, tool_input, conversation)
        out: list[Path] = []
        for key, value in tool_input.items():
            if key in PATH_KEYS:
                if not isinstance(value, str) or suspicious(value.strip()) is not None:
                    return None
                if value.strip():
                    out += self._resolve_all(value.strip(), conversation)
            elif patterns and key in ("pattern", "glob", "include"):
                if not isinstance(value, str) or not _glob_ok(value):
                    return None
            elif isinstance(value, str) and (suspicious(value, globs=True) or value.startswith(
                    ("/", "~")) or ".." in value.replace("\\", "/").split("/")):
                return None
        return out or list(self.cwd_candidates(conversation))

    def _readable(self, path: Path, memory: Path | None) -> bool:
        if memory is not None and _inside(path, memory):
            return True
        if not _inside(path, self.workspace):
            return False
        # protected folders that contain the workspace (e.g. data_dir) do not count
        return not any(_inside(path, p) and not _inside(self.workspace, p)
                       for p in self.protected)

    def _never_written(self, path: Path) -> bool:
        """The Letta home, a protected path (but the folders holding the workspace), or a
        path with a ``.letta`` / ``.git`` folder on the way."""
        if ".letta" in path.parts or ".git" in path.parts:
            return True
        if self.letta_home is not None and _inside(path, self.letta_home):
            return True
        return any(_inside(path, p) and not _inside(self.workspace, p) for p in self.protected)

    def _write_forbidden(self, raw: str, conversation: str | None,
                         memory: Path | None) -> str | None:
        if not raw:
            return None
        if memory is not None and suspicious(raw) is None and all(
                _inside(p, memory) and not _in_git(p, memory)
                for p in self._resolve_all(raw, conversation)):
            return None  # the agent's own memory (under the Letta home) is its to edit
        parts = raw.replace("\\", "/").split("/")
        if ".letta" in parts or ".git" in parts:
            return (f"it writes into a `{'.letta' if '.letta' in parts else '.git'}` folder: "
                    "permission files and repository hooks there would switch approvals off "
                    "or run code")
        why = suspicious(raw, globs=True)
        if why is not None and "glob" not in why:
            return (f"its path holds {why}: the CLI would write somewhere other than the path "
                    "shown (it could be a permission file)")
        for path in self._resolve_all(raw, conversation):
            if self._never_written(path):
                return (f"it writes to `{path}`, part of Letta's or lettabot's state (a "
                        "permission file there would switch approvals off)")
        return None

    def _cwd_forbidden(self, tool_input: Mapping[str, Any],
                       conversation: str | None) -> str | None:
        raw = tool_input.get("path")
        if not isinstance(raw, str) or not raw.strip() or set(tool_input) - {"path"}:
            return "SetWorkingDirectory needs exactly one plain `path`"
        raw = raw.strip()
        if (why := suspicious(raw)) is not None:
            return f"SetWorkingDirectory is denied: its path holds {why}"
        for path in self._resolve_all(raw, conversation):
            if not self._readable(path, None):
                return (f"SetWorkingDirectory to `{path}` is denied: the conversation stays "
                        f"inside its workspace `{self.workspace}`")
            if not self.ruleable(path) or (path != self.workspace
                                           and (path / ".letta").exists()):
                return (f"SetWorkingDirectory to `{path}` is denied: the CLI would take "
                        "settings (permissions) from a `.letta` folder there")
        return None

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
            if value and (value.startswith(("/", "~")) or ".." in parts or ".git" in parts
                          or ".letta" in parts):
                return False
            redirect = False
        return not redirect


def _glob_ok(value: str) -> bool:
    """A glob matched below the search root: no expansion, flag, escape or way out."""
    if suspicious(value, globs=True) is not None:
        return False
    value = value.removeprefix("!")
    parts = value.replace("\\", "/").split("/")
    return not value.startswith(("/", "~")) and ".." not in parts and ".letta" not in parts


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
