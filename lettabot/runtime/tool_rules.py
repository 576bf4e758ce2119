"""What an "Always allow" click covers, and whether a later call falls under it.

A rule is never "this tool, any input". It is what the approver saw, widened only as the
prompt said:

- a plain shell command (no pipes, chaining, redirects, expansion) → commands starting with
  its first word (two for tools with subcommands: ``git status``, ``npm test``) whose path
  arguments stay inside the workspace;
- any other shell command → exactly that command;
- a file tool → that tool on paths under the same folder (never a protected one);
- anything else → exactly that input.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lettabot.runtime.store import AllowRule, input_digest
from lettabot.runtime.tool_guard import EDIT_TOOLS, READ_TOOLS, SHELL_TOOLS, ToolGuard, plain_shell

__all__ = ["RuleProposal", "matches", "propose"]

SUBCOMMAND_TOOLS = frozenset({
    "git", "npm", "pnpm", "yarn", "npx", "uv", "pip", "cargo", "go", "docker", "kubectl",
    "make", "gh", "poetry", "bun", "deno", "terraform", "helm", "systemctl", "just",
})


@dataclass(frozen=True)
class RuleProposal:
    kind: str
    pattern: str
    covers: str
    """For the prompt: "Always allow" covers …"""


def _words(command: str) -> list[str] | None:
    if not plain_shell(command) or any(c in command for c in "&>"):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words or None


def _prefix(words: list[str]) -> list[str]:
    if words[0] in SUBCOMMAND_TOOLS and len(words) > 1 and not words[1].startswith("-"):
        return words[:2]
    return words[:1]


def propose(guard: ToolGuard, tool: str, tool_input: Mapping[str, Any]) -> RuleProposal:
    """The rule an "Always allow" click on this request would create."""
    command = tool_input.get("command")
    if tool in SHELL_TOOLS and isinstance(command, str):
        words = _words(command)
        if words is not None:
            prefix = shlex.join(_prefix(words))
            return RuleProposal("prefix", prefix,
                                f"`{prefix} …` commands on paths in the workspace "
                                "(no pipes, chaining or redirects)")
        return RuleProposal("command", command, "exactly this command")
    if tool in READ_TOOLS | EDIT_TOOLS:
        paths = guard.paths(tool_input, patterns=tool in READ_TOOLS)
        if paths:
            first = paths[0]
            folder = first if first.is_dir() or first == guard.workspace else first.parent
            if guard.in_workspace(folder) or not guard.protected_path(folder):
                return RuleProposal("path", str(folder), f"{tool} under `{folder}`")
    return RuleProposal("input", input_digest(dict(tool_input)), "exactly this input")


def matches(guard: ToolGuard, rule: AllowRule, tool: str, tool_input: Mapping[str, Any]) -> bool:
    """Whether ``rule`` covers this call."""
    if rule.tool_name != tool:
        return False
    command = tool_input.get("command")
    if rule.kind == "command":
        return command == rule.pattern
    if rule.kind == "prefix":
        if not isinstance(command, str) or (words := _words(command)) is None:
            return False
        prefix = shlex.split(rule.pattern)
        if words[: len(prefix)] != prefix:
            return False
        return all(_inside_workspace(guard, _path_of(w)) for w in words[len(prefix):]
                   if _path_of(w))
    if rule.kind == "path":
        paths = guard.paths(tool_input, patterns=tool in READ_TOOLS)
        if not paths:
            return False
        folder = Path(rule.pattern)
        inside = all(p == folder or folder in p.parents for p in paths)
        return inside and not any(
            guard.protected_path(p) and not guard.in_workspace(p) for p in paths)
    if rule.kind == "input":
        return input_digest(dict(tool_input)) == rule.pattern
    return False


def _path_of(word: str) -> str:
    """What a command argument names as a path: itself, a flag's ``=value``, or nothing."""
    if word.startswith("-"):
        return word.partition("=")[2]
    return word


def _inside_workspace(guard: ToolGuard, word: str) -> bool:
    """A command argument is judged as a path: it must stay in the workspace, unprotected."""
    return guard.in_workspace(guard.resolve(word))
