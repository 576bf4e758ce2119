"""The user-facing docs stay runnable: every ``lettabot …`` command they show has that
subcommand and those flags (asked of ``lettabot <cmd> --help``), every repository path they name
exists, every ``docker compose`` command names ``-f deploy/compose.yaml``, links stay inside the
repository, and the schema revision they mention is the newest migration."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "adapters").glob("*/README.md")])
LETTABOT = Path(sys.executable).parent / "lettabot"
MIGRATIONS = ROOT / "lettabot" / "runtime" / "store" / "migrations" / "versions"
TOP = ("deploy/", "config/", "docs/", "scripts/", "adapters/", "lettabot/", "tests/", "bench/")
SHELLS = {"bash", "sh", "shell", "console"}
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _name(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def _blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced blocks as (language, body), and the text outside them."""
    blocks: list[tuple[str, str]] = []
    prose: list[str] = []
    fence: tuple[str, str, list[str]] | None = None
    for line in text.splitlines():
        mark = re.match(r"\s*(```+|~~~+)\s*(\w*)", line)
        if fence is None and mark:
            fence = (mark.group(1), mark.group(2), [])
        elif fence is not None and line.strip() == fence[0]:
            blocks.append((fence[1], "\n".join(fence[2])))
            fence = None
        elif fence is not None:
            fence[2].append(line)
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def _shell_lines(text: str) -> list[str]:
    """Command lines of the fenced shell blocks, comments dropped, continuations joined."""
    out = []
    for language, block in _blocks(text)[0]:
        if language not in SHELLS:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _spans(text: str) -> list[str]:
    """Inline code outside fenced blocks."""
    return SPAN.findall(_blocks(text)[1])


def _commands(text: str) -> list[list[str]]:
    """Each simple command (split at ``&&``, ``||``, ``;``, pipes) of the shell blocks and of
    the inline code that starts with a command, as words."""
    lines = _shell_lines(text) + [s for s in _spans(text)
                                  if re.match(r"(\S*/)?lettabot |docker compose", s)]
    out = []
    for line in lines:
        for part in re.split(r"&&|\|\||;|(?<![|\w])\|(?![|\w])", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            if words:
                out.append(words)
    return out


@functools.cache
def _help(*args: str) -> str:
    done = subprocess.run([str(LETTABOT), *args, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _choices(help_text: str) -> set[str]:
    """A parser's subcommands (``COMMAND`` and its list) or positional choices (``{a,b}``)."""
    found = re.search(r"\{([\w,-]+)\}", help_text)
    if found:
        return set(found.group(1).split(","))
    listed = help_text.partition("positional arguments:")[2].partition("\n\n")[0]
    return set(re.findall(r"^    (\w[\w-]*)", listed, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_lettabot_command_in_the_docs_exists_with_its_flags(doc: Path) -> None:
    text = doc.read_text()
    for words in _commands(text):
        if words[0] != "lettabot" and not words[0].endswith("/bin/lettabot"):
            continue  # not the CLI (`/lettabot reset` is Slack's slash command)
        rest = [w.strip("[]") for w in words[1:]]
        if not rest or rest[0].startswith("-"):  # `lettabot --version`, `lettabot [-h]`
            flags, sub = rest, []
        else:
            sub = [rest[0]]
            assert rest[0] in _choices(_help()), (_name(doc), words)
            flags = rest[1:]
            # a word right after a flag is that flag's value (`--provider-url URL`)
            positional = [w for i, w in enumerate(flags) if w and not w.startswith("-")
                          and not (i and flags[i - 1].startswith("-")
                                   and "=" not in flags[i - 1])]
            choices = _choices(_help(*sub))
            if choices and positional:  # `db current|upgrade`, `schedules cancel ID`
                assert set(positional[0].split("|")) <= choices, (_name(doc), words)
        usage = _help(*sub)
        for flag in flags:
            if flag.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(flag.split('=')[0])}(?![\w-])",
                                 usage), (_name(doc), words, flag)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_compose_command_names_the_compose_file(doc: Path) -> None:
    for words in _commands(doc.read_text()):
        if words[:2] == ["docker", "compose"]:
            assert "deploy/compose.yaml" in words and words[words.index(
                "deploy/compose.yaml") - 1] == "-f", (_name(doc), " ".join(words))


def _repo_path(word: str) -> str | None:
    word = word.strip("'\"`,.;:()[]")
    word = word.removeprefix("./")
    if not word.startswith(TOP) or re.search(r"[<>…*{}$]", word):
        return None
    return word


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_repository_path_and_link_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text()
    named = [w for words in _commands(text) for w in words]
    named += [w for span in _spans(text) for w in span.split()]
    for word in named:
        path = _repo_path(word)
        if path is None:
            continue
        # from the repository or the doc's folder; or a file the reader makes from its
        # example (`cp deploy/lettabot.env.example …`)
        assert any((base / name).exists() for base in (ROOT, doc.parent)
                   for name in (path, f"{path}.example")), (_name(doc), path)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (doc.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), (_name(doc), target, "outside the repository")
        assert resolved.exists(), (_name(doc), target)
    for span in _spans(text):  # no "see ../somewhere" outside the repository either
        assert not re.match(r"\.\./\w", span) or (doc.parent / span).resolve().is_relative_to(
            ROOT), (_name(doc), span)


def test_the_schema_revision_the_docs_mention_is_the_newest_migration() -> None:
    newest = max(p.name[:4] for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    mentioned = 0
    for doc in DOCS:
        for found in re.finditer(r"(?:schema at|needs) (\d{4})\b", doc.read_text()):
            mentioned += 1
            assert found.group(1) == newest, (_name(doc), found.group(0), newest)
    assert mentioned, "no doc shows `lettabot db current` any more: drop this test"


def test_the_checks_can_fail() -> None:
    """The parsers see what they are meant to see."""
    text = ("```bash\nlettabot db currrent --config x\ndocker compose up -d  # no -f\n```\n"
            "Then `docker compose --profile web up` or `lettabot run --nope`; "
            "see `../shared/DESIGN.md` and `deploy/nowhere.yaml`.\n")
    commands = [" ".join(w) for w in _commands(text)]
    assert commands == ["lettabot db currrent --config x", "docker compose up -d",
                        "docker compose --profile web up", "lettabot run --nope"]
    assert "currrent" not in _choices(_help("db"))
    assert "--nope" not in _help("run")
    assert _repo_path("`deploy/nowhere.yaml`.") == "deploy/nowhere.yaml"
    assert "../shared/DESIGN.md" in _spans(text)
