"""What an "Always allow" click covers, and whether a later call falls under it.

A rule is never "this tool, any input". It is what the approver saw, widened only as the
prompt said, and only inside the workspace:

- a plain shell command (no pipes, chaining, redirects, expansion) of a CURATED command —
  one known not to run code, write files or follow links through its arguments (see
  :data:`CURATED`) — whose arguments pass that command's argument rules → commands starting
  with the same word (``git``: the same read-only subcommand) whose arguments pass them too,
  every operand judged as a path inside the workspace;
- any other shell command (``sed``, ``python3 -c``, ``env``, ``xargs``, ``find -exec``…) →
  exactly that command;
- a file tool on a folder inside the workspace → that tool on paths under that folder;
- anything else inside the workspace → exactly that input;
- a call reaching outside the workspace (``/proc``, ``/sys``, ``/dev``, the home folder, any
  absolute path outside, a ``$VAR``), or into a ``.letta`` / ``.git`` folder → no rule: the
  click approves that one call (kind ``once``) and the prompt says so.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lettabot.runtime.store import AllowRule, input_digest
from lettabot.runtime.tool_guard import (
    EDIT_TOOLS,
    READ_TOOLS,
    SHELL_TOOLS,
    TOOL_INPUTS,
    ToolGuard,
    plain_shell,
    suspicious,
)

__all__ = ["CURATED", "Cmd", "RuleProposal", "matches", "propose"]

ONCE = "once"
ONCE_COVERS = ("only this call — it reaches outside the workspace (or into Letta's or "
               "lettabot's state), so no rule is made")


@dataclass(frozen=True)
class Cmd:
    """How the arguments of one curated command are judged.

    Every word is a flag this table lists (or its value) or an operand; anything else and
    the rule does not cover the call. Kinds of values and operands: ``path`` (a file or
    folder inside the workspace), ``glob`` (a name pattern below the search root),
    ``regex`` / ``text`` (never opened as a file)."""

    flags: str = ""
    """Single-letter flags without a value; they may be clustered (``-rn``)."""
    long: frozenset[str] = frozenset()
    """Long flags (``--oneline``; ``find``'s ``-empty``) without a value."""
    valued: Mapping[str, str] = field(default_factory=dict)
    """Flags taking a value (next word, ``--x=value`` or ``-n5``) → the value's kind."""
    operands: str = "path"
    """The kind of the operands; ``regex-then-path``: the first is a pattern unless
    ``-e``/``-f`` gave one (grep, rg)."""
    max_operands: int | None = None
    numeric: bool = False
    """``-5`` means a count (``head -5``, ``git log -3``)."""
    expressions: bool = False
    """``find``: operands (paths) first, then an expression of :attr:`valued`/:attr:`long`."""


def _c(flags: str = "", long: str = "", valued: Mapping[str, str] | None = None,
       **kw: Any) -> Cmd:
    return Cmd(flags, frozenset(long.split()), dict(valued or {}), **kw)


_COUNT = {"-n": "text", "--lines": "text", "-c": "text", "--bytes": "text"}
_GIT_LOG = _c("p", "--oneline --stat --shortstat --numstat --name-only --name-status --graph "
              "--decorate --all --patch --no-patch --no-color --reverse --no-merges --merges "
              "--first-parent --follow --abbrev-commit --no-abbrev-commit --full-history "
              "--no-ext-diff --no-textconv --",
              {"-n": "text", "--max-count": "text", "--format": "text", "--pretty": "text",
               "--since": "text", "--until": "text", "--after": "text", "--before": "text",
               "--author": "text", "--grep": "text", "--date": "text", "--skip": "text"},
              numeric=True)
_GIT_DIFF = _c("", "--stat --shortstat --numstat --name-only --name-status --cached --staged "
               "--no-color --patch --word-diff --ignore-all-space --no-ext-diff --no-textconv "
               "--check --",
               {"-U": "text", "--unified": "text", "--diff-filter": "text"})

CURATED: dict[str, Cmd | dict[str, Cmd]] = {
    # command      flags (no value) / long flags / flags with a value → kind / operands
    "ls":     _c("1aAlhrtSdFpigGnosUXvcuQ", "--all --almost-all --human-readable --reverse "
                 "--directory --classify --size --inode --no-group --color=never --"),
    "cat":    _c("nbAEsTvet", "--number --number-nonblank --show-all --squeeze-blank --"),
    "head":   _c("qv", "--quiet --verbose --", _COUNT, numeric=True),
    "tail":   _c("qv", "--quiet --verbose --", _COUNT, numeric=True),  # no -f: it never ends
    "wc":     _c("lwcmL", "--lines --words --bytes --chars --max-line-length --"),
    "grep":   _c("rinlvcwxEFGHhosqILabzTU", "--recursive --ignore-case --line-number "
                 "--files-with-matches --files-without-match --count --word-regexp "
                 "--line-regexp --extended-regexp --fixed-strings --with-filename "
                 "--no-filename --only-matching --no-messages --quiet --color=never --",
                 {"-e": "regex", "--regexp": "regex", "-f": "path", "--file": "path",
                  "-A": "text", "-B": "text", "-C": "text", "-m": "text", "--max-count": "text",
                  "--after-context": "text", "--before-context": "text", "--context": "text",
                  "--include": "glob", "--exclude": "glob", "--exclude-dir": "glob"},
                 operands="regex-then-path"),  # no -R: it follows links out of the workspace
    "rg":     _c("inlwcvFSsHNouUx.", "--ignore-case --smart-case --line-number --no-line-number "
                 "--files-with-matches --files-without-match --count --word-regexp "
                 "--line-regexp --fixed-strings --invert-match --hidden --no-ignore "
                 "--with-filename --no-filename --only-matching --files --no-messages "
                 "--color=never --no-heading --heading --multiline --json --stats --",
                 {"-e": "regex", "--regexp": "regex", "-f": "path", "--file": "path",
                  "-g": "glob", "--glob": "glob", "--iglob": "glob", "-t": "text",
                  "--type": "text", "-T": "text", "--type-not": "text", "-A": "text",
                  "-B": "text", "-C": "text", "-m": "text", "--max-count": "text",
                  "--max-depth": "text", "-d": "text", "--context": "text"},
                 operands="regex-then-path"),  # no --pre/--pre-glob/-z/-L/--hostname-bin
    "find":   _c("", "-empty -print -print0 -prune -not ! -a -o -and -or ( ) -true -false "
                 "-readable -writable -executable -depth -nowarn",
                 {"-name": "glob", "-iname": "glob", "-path": "glob", "-ipath": "glob",
                  "-wholename": "glob", "-iwholename": "glob", "-lname": "glob",
                  "-regex": "regex", "-iregex": "regex", "-type": "text", "-xtype": "text",
                  "-maxdepth": "text", "-mindepth": "text", "-size": "text", "-mtime": "text",
                  "-mmin": "text", "-atime": "text", "-amin": "text", "-ctime": "text",
                  "-cmin": "text", "-perm": "text", "-newer": "path", "-links": "text",
                  "-user": "text", "-group": "text", "-uid": "text", "-gid": "text"},
                 expressions=True),  # no -exec/-execdir/-ok/-okdir/-delete/-fprint*/-fls/-L
    "git": {
        "status": _c("sbvz", "--short --branch --long --porcelain --porcelain=v1 "
                     "--porcelain=v2 --ignored --untracked-files=no --untracked-files=normal "
                     "--untracked-files=all -uno -unormal -uall --no-ahead-behind "
                     "--show-stash --"),
        "log": _GIT_LOG,
        "show": _GIT_LOG,
        "diff": _GIT_DIFF,
        "branch": _c("arv", "--all --remotes --list --verbose -vv --show-current --no-color",
                     {"--contains": "text", "--merged": "text", "--no-merged": "text"},
                     max_operands=0),  # a name would create a branch
        "ls-files": _c("cdmoiskuvtz", "--cached --deleted --modified --others --ignored "
                       "--stage --unmerged --exclude-standard --full-name --directory --",
                       {"-x": "glob", "--exclude": "glob"}),
        "rev-parse": _c("q", "--show-toplevel --show-prefix --show-cdup --is-inside-work-tree "
                        "--abbrev-ref --short --verify --symbolic-full-name --",
                        operands="text"),
        "blame": _c("lstwfnecp", "--porcelain --line-porcelain --show-email --",
                    {"-L": "text"}),
    },  # never -c, -C, --git-dir, --work-tree, --exec-path, --upload-pack, --output, -p pagers
    "stat":   _c("Ltf", "--dereference --terse --file-system --",
                 {"-c": "text", "--format": "text", "--printf": "text"}),
    "file":   _c("bhiLNkr", "--brief --mime --mime-type --mime-encoding --no-pad "
                 "--dereference --no-dereference --keep-going --raw --"),  # no -m, -z, -f
    "du":     _c("sahckmbxl0", "--summarize --human-readable --all --total "
                 "--apparent-size --one-file-system --",
                 {"-d": "text", "--max-depth": "text"}),  # no -L, --files0-from
    "tree":   _c("adfhsDpugFCnAQiJ", "--noreport --dirsfirst --du --prune",
                 {"-L": "text", "-I": "glob", "-P": "glob"}),  # no -o (writes), -l, -R
    "pwd":    _c("LP", max_operands=0),
    "echo":   _c("neE", operands="text"),
    "printf": _c("", "--", operands="text"),  # no -v
    "date":   _c("uRI", "--utc --rfc-3339=date --rfc-3339=seconds --iso-8601 "
                 "--iso-8601=seconds", {"-d": "text", "--date": "text", "-r": "path",
                                        "--reference": "path"}, operands="text"),  # no -s
    "diff":   _c("uqNwbBiEtTasy", "--brief --unified --ignore-all-space --ignore-case "
                 "--text --side-by-side --color=never --no-dereference --",
                 {"-U": "text", "--unified": "text"}, max_operands=2),  # no -r: follows links
    "sort":   _c("rnuhVfbsdgiMRcCz", "--reverse --numeric-sort --unique "
                 "--human-numeric-sort --version-sort --ignore-case --stable --check --",
                 {"-k": "text", "--key": "text", "-t": "text", "--field-separator": "text"}),
    # no -o/--output, -T, --compress-program, --files0-from, --random-source
    "uniq":   _c("cdDuiz", "--count --repeated --unique --ignore-case --",
                 {"-f": "text", "-s": "text", "-w": "text"},
                 max_operands=1),  # a second operand is a file it writes
    "cut":    _c("sz", "--complement --only-delimited --",
                 {"-d": "text", "--delimiter": "text", "-f": "text", "--fields": "text",
                  "-c": "text", "--characters": "text", "-b": "text", "--bytes": "text"}),
    "tr":     _c("dsc", "--delete --squeeze-repeats --complement", operands="text"),
}
"""The only commands an "Always allow" widens into a prefix rule, with the flags each may
carry (anything not listed: the rule does not cover it). Every other command — ``sed``
(``e``), ``awk``, ``python3 -c``, ``node``, ``tar --to-command``, ``env``, ``timeout``,
``nice``, ``xargs``, ``sh``, ``make``, ``npm``, other ``git`` subcommands… — gets an
exact-command rule."""


@dataclass(frozen=True)
class RuleProposal:
    kind: str
    pattern: str
    covers: str
    """For the prompt: "Always allow" covers …"""

    @property
    def makes_rule(self) -> bool:
        return self.kind != ONCE


def _words(command: str) -> list[str] | None:
    if not plain_shell(command) or any(c in command for c in "&>"):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words or None


def _curated(words: list[str]) -> tuple[list[str], Cmd] | None:
    """The rule prefix and argument rules of a curated command, or None."""
    entry = CURATED.get(words[0])
    if isinstance(entry, Cmd):
        return words[:1], entry
    if isinstance(entry, dict) and len(words) > 1 and isinstance(entry.get(words[1]), Cmd):
        return words[:2], entry[words[1]]
    return None


def propose(guard: ToolGuard, tool: str, tool_input: Mapping[str, Any],
            conversation: str | None = None) -> RuleProposal:
    """The rule an "Always allow" click on this request would create."""
    once = RuleProposal(ONCE, "", ONCE_COVERS)
    command = tool_input.get("command")
    if tool in SHELL_TOOLS and isinstance(command, str):
        words = _words(command)
        if words is not None and (cur := _curated(words)) is not None and _arguments_ok(
                guard, cur[1], words[len(cur[0]):], conversation) and _repository_ok(
                guard, words, conversation):
            prefix = shlex.join(cur[0])
            return RuleProposal("prefix", prefix,
                                f"`{prefix} …` commands with the same kind of arguments, on "
                                "paths in the workspace (no pipes, chaining or redirects)")
        if _reaches_out(guard, command, conversation):
            return once
        return RuleProposal("command", command, "exactly this command")
    if tool in READ_TOOLS | EDIT_TOOLS:
        paths = guard.judged(tool, tool_input, conversation)
        if not paths or not all(guard.ruleable(p) for p in paths):
            return once
        first = paths[0]
        folder = first if first.is_dir() else first.parent
        if not guard.ruleable(folder):
            folder = guard.workspace
        return RuleProposal("path", str(folder), f"{tool} under `{folder}`")
    if _input_reaches_out(guard, tool_input, conversation):
        return once
    return RuleProposal("input", input_digest(dict(tool_input)), "exactly this input")


def matches(guard: ToolGuard, rule: AllowRule, tool: str, tool_input: Mapping[str, Any],
            conversation: str | None = None) -> bool:
    """Whether ``rule`` covers this call."""
    if rule.tool_name != tool:
        return False
    command = tool_input.get("command")
    if rule.kind == "command":
        return command == rule.pattern and not _reaches_out(guard, command, conversation)
    if rule.kind == "prefix":
        if tool not in SHELL_TOOLS or not isinstance(command, str):
            return False
        if (words := _words(command)) is None or (cur := _curated(words)) is None:
            return False
        if cur[0] != shlex.split(rule.pattern):
            return False  # also: a stored rule for a command no longer curated
        return _arguments_ok(guard, cur[1], words[len(cur[0]):], conversation) and (
            _repository_ok(guard, words, conversation))
    if rule.kind == "path":
        if tool not in READ_TOOLS | EDIT_TOOLS:
            return False
        paths = guard.judged(tool, tool_input, conversation)
        if not paths:
            return False
        folder = Path(rule.pattern)
        return all(_inside(p, folder) and guard.ruleable(p) for p in paths)
    if rule.kind == "input":
        return (input_digest(dict(tool_input)) == rule.pattern
                and not _input_reaches_out(guard, tool_input, conversation))
    return False


# -- judging the arguments of a curated command -------------------------------------------


def _arguments_ok(guard: ToolGuard, cmd: Cmd, args: list[str],
                  conversation: str | None) -> bool:
    """Every argument is a listed flag (with a value of the right kind) or an operand of
    the command's kind; operands that are paths stay inside the workspace."""
    operands: list[str] = []
    pattern_given = False
    in_expression = False
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--" and "--" in cmd.long and not in_expression:
            operands += args[i:]
            break
        if cmd.expressions and (in_expression or word.startswith("-") or word in ("!", "(", ")")):
            # find: after the paths, every word is a primary (or its value)
            in_expression = True
            if word in cmd.long:
                continue
            kind = cmd.valued.get(word)
            if kind is None or i >= len(args) or not _value_ok(guard, kind, args[i],
                                                                 conversation):
                return False
            i += 1
            continue
        if not word.startswith("-") or word == "-":
            operands.append(word)
            continue
        if word in cmd.long:
            continue
        name, eq, value = word.partition("=")
        if word.startswith("--"):
            kind = cmd.valued.get(name)
            if kind is None:
                return False
            if not eq:
                if i >= len(args):
                    return False
                value, i = args[i], i + 1
            if not _value_ok(guard, kind, value, conversation):
                return False
            pattern_given |= name in ("--regexp", "--file")
            continue
        if cmd.numeric and word[1:].isdigit():
            continue
        # a cluster of single-letter flags; a letter taking a value takes the rest
        j = 1
        while j < len(word):
            letter = "-" + word[j]
            if word[j] in cmd.flags:
                j += 1
                continue
            kind = cmd.valued.get(letter)
            if kind is None:
                return False
            value = word[j + 1:]
            if not value:
                if i >= len(args):
                    return False
                value, i = args[i], i + 1
            if not _value_ok(guard, kind, value, conversation):
                return False
            pattern_given |= letter in ("-e", "-f")
            break
    if cmd.max_operands is not None and len(operands) > cmd.max_operands:
        return False
    kinds = [cmd.operands] * len(operands)
    if cmd.operands == "regex-then-path":
        kinds = ["path"] * len(operands)
        if not pattern_given and kinds:
            kinds[0] = "regex"
    return all(_value_ok(guard, kind, word, conversation) for kind, word in zip(
        kinds, operands, strict=True))


def _repository_ok(guard: ToolGuard, words: list[str], conversation: str | None) -> bool:
    """``git``: the repository it would find (the nearest ``.git`` up from the current
    directory) is inside the workspace — not, say, lettabot's own checkout around it, whose
    history and config lie outside."""
    if words[0] != "git":
        return True
    for cwd in guard.cwd_candidates(conversation):
        for folder in (cwd, *cwd.parents):
            if (folder / ".git").exists():
                if not guard.in_workspace(folder):
                    return False
                break
    return True


def _value_ok(guard: ToolGuard, kind: str, value: str, conversation: str | None) -> bool:
    if "\x00" in value:
        return False
    if kind == "text":
        return True
    if kind == "regex":
        return not value.startswith("-")
    if kind == "glob":
        if suspicious(value, globs=True) is not None:
            return False
        parts = value.removeprefix("!").split("/")
        return not value.startswith(("/", "~")) and ".." not in parts and ".letta" not in parts
    return _path_ok(guard, value, conversation)


def _path_ok(guard: ToolGuard, word: str, conversation: str | None) -> bool:
    """A command argument judged as a path: literal, inside the workspace, unprotected,
    no ``.letta`` / ``.git`` folder on the way (from every directory it may be in)."""
    if not word or suspicious(word) is not None or "~" in word:
        return False
    if word.startswith("/"):
        return guard.ruleable(guard.resolve(word))
    return all(guard.ruleable(guard.resolve(str(cwd / word)))
               for cwd in guard.cwd_candidates(conversation))


_WEB_URL = re.compile(r"\bhttps?://[^\s'\"]*")
_TOKEN_SPLIT = re.compile(r"""[\s'"=:;|&<>(),]+""")


def _reaches_out(guard: ToolGuard, command: str, conversation: str | None) -> bool:
    """Whether a command names something outside the workspace: an absolute or home path
    that resolves outside, a ``..`` climbing out, a variable or substitution, ``/proc``,
    ``/sys``, ``/dev``, a ``.letta`` or ``.git`` folder."""
    if any(s in command for s in ("/proc", "/sys", "/dev", "`", "$", "~")):
        return True
    command = _WEB_URL.sub(" ", command)  # a web address names no file here
    for token in _TOKEN_SPLIT.split(command):
        if ("/" in token or token.startswith("..")) and not _path_ok(
                guard, token, conversation):
            return True
    return False


def _input_reaches_out(guard: ToolGuard, tool_input: Mapping[str, Any],
                       conversation: str | None) -> bool:
    """Whether any string of a tool input looks like a path outside the workspace."""
    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, Mapping):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list | tuple):
            return [s for v in value for s in strings(v)]
        return []
    return any(_reaches_out(guard, s, conversation) for s in strings(dict(tool_input)))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


__all__ += ["ONCE", "TOOL_INPUTS"]
