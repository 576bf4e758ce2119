"""What is wrong with a config: :class:`Problem` (key, problem, fix), :class:`ConfigError`
(every problem at once) and :class:`ValidationProblems` (raised by validators, keys relative
to their section). Also how a dotted key is named in the environment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ENV_PREFIX = "LETTABOT_"
EVERY_KEY = "`lettabot example-config` prints every key with its comment"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: which key, what is wrong, how to fix it."""

    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what} — {self.fix}"


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists every issue found."""

    def __init__(self, problems: Sequence[Problem | str], source: str | None = None) -> None:
        self.problems = [str(p) for p in problems]
        self.source = source
        where = f" ({source})" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid lettabot config{where}:\n{lines}")


class ValidationProblems(ValueError):
    """Raised by validators; carries problems whose keys are relative to the model."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def env_var(key: str) -> str:
    """The variable for a dotted key: ``slack.bot_token`` → ``LETTABOT_SLACK__BOT_TOKEN``."""
    return ENV_PREFIX + key.replace(".", "__").upper()


def missing(key: str, what: str) -> Problem:
    """``key`` must be set because of ``what``; the fix names its variable and key."""
    # $ENV and $KEY are filled in with the full dotted key once the section is known.
    return Problem(key, f"is not set but {what}", "set $ENV (or $KEY in the file)")
