"""The variables lettabot reads (the environment over ``.env``): problems with
``LETTABOT_*`` values, warnings about ones it ignores, and where a bad value came from."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from lettabot.runtime.config.keys import close_key, field_at, json_kind, model_of
from lettabot.runtime.config.problems import ENV_PREFIX, EVERY_KEY, Problem, env_var
from lettabot.runtime.config.root import composed

CONFIG_ENV = "LETTABOT_CONFIG"

_NOT_SETTINGS = {CONFIG_ENV, "LETTABOT_SDK_TRANSPORT"}
"""``LETTABOT_*`` variables that are read elsewhere, not settings."""

FOREIGN_NAMES = {
    "SLACK_BOT_TOKEN": "slack.bot_token",
    "SLACK_APP_TOKEN": "slack.app_token",
    "SLACK_SIGNING_SECRET": "slack.signing_secret",
    "DISCORD_TOKEN": "discord.token",
    "DISCORD_BOT_TOKEN": "discord.token",
}
"""The names other tools (slack-bolt's examples, discord.py's) use, and the key they mean."""


@dataclass(frozen=True)
class _Var:
    name: str  # as written
    value: str
    where: str  # "the environment variable X" / "X in .env"


def _variables(dotenv: Path | None) -> dict[str, _Var]:
    """Every variable lettabot could read, by upper-case name: the environment over ``.env``."""
    out: dict[str, _Var] = {}
    if dotenv is not None and dotenv.is_file():
        for name, value in dotenv_values(dotenv).items():
            if name:
                out[name.upper()] = _Var(name, value or "", f"{name} in {dotenv}")
    for name, value in os.environ.items():
        out[name.upper()] = _Var(name, value, f"the environment variable {name}")
    return out


def _json_fix(var: _Var, kind: str, annotation: Any) -> str:
    if kind == "list" and model_of(getattr(annotation, "__args__", (None,))[0]) is None:
        items = [i.strip().strip("'\"") for i in var.value.strip().strip("[]").split(",")]
        example = json.dumps([i for i in items if i] or ["slack:U0123ABCD"])
        return f"write {var.name}='{example}' (lists are JSON in the environment and .env)"
    if kind == "list":
        return (f"write a JSON list of tables, e.g. {var.name}='[{{\"key\": \"value\"}}]', "
                "or set it in the TOML file")
    return (f"write a JSON object, e.g. {var.name}='{{\"key\": \"value\"}}', or set it in "
            "the TOML file")


def check_variables(dotenv: Path | None,
                     data: Mapping[str, Any]) -> tuple[list[Problem], list[str]]:
    """Problems with ``LETTABOT_*`` values pydantic-settings would only raise as a traceback
    (a list or table that is not JSON), and warnings about variables lettabot ignores:
    unknown ``LETTABOT_*`` names and the names other tools use (``SLACK_BOT_TOKEN``)."""
    variables = _variables(dotenv)
    problems: list[Problem] = []
    warnings: list[str] = []
    sections = composed().model_fields
    for upper, var in sorted(variables.items()):
        if upper in FOREIGN_NAMES:
            key = FOREIGN_NAMES[upper]
            section, _, leaf = key.partition(".")
            if (section in sections and env_var(key) not in variables
                    and leaf not in (data.get(section) or {})):
                warnings.append(f"{var.where} is set, but lettabot reads {env_var(key)} "
                                f"({key}): did you mean {env_var(key)}?")
            continue
        if (not upper.startswith(ENV_PREFIX) or upper in _NOT_SETTINGS
                or upper.startswith(ENV_PREFIX + "TEST_")):
            continue
        key = upper.removeprefix(ENV_PREFIX).lower().replace("__", ".")
        annotation, found = field_at(key)
        if not found:
            if key.partition(".")[0] in sections and "." in key:
                continue  # an unknown key in a known section: validation names it (an error)
            near = close_key(key)
            hint = (f"did you mean {env_var(near)}?" if near else
                    f"spelling? LETTABOT_<SECTION>__<KEY>; {EVERY_KEY}")
            warnings.append(f"{var.where} is set but is not a lettabot setting, so it is "
                            f"ignored: {hint}")
            continue
        kind = json_kind(annotation)
        if kind is None or not var.value.strip():
            continue
        try:
            parsed = json.loads(var.value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list if kind == "list" else dict):
            problems.append(Problem(key, f"is not a JSON {kind} (from {var.where})",
                                    _json_fix(var, kind, annotation)))
    return problems, warnings


def blame(problem: Problem, dotenv: Path | None) -> Problem:
    """Say where a bad value came from when it was not the TOML file: the environment
    (which wins) or the ``.env`` file; a misspelt variable's fix names the right one."""
    key = problem.key.split("[")[0]
    if not key or "/" in key:
        return problem
    var = _variables(dotenv).get(env_var(key))
    if var is None:
        return problem
    fix = problem.fix
    if problem.what == "unknown key" and (near := close_key(key)) is not None:
        fix = f"did you mean {env_var(near)}? ({EVERY_KEY})"
    return Problem(problem.key, f"{problem.what} (from {var.where})", fix)
