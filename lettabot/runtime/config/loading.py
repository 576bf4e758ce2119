"""Reading the config: the TOML file (``--config``, ``$LETTABOT_CONFIG`` or
``./lettabot.toml``), then ``.env`` and the environment; every problem reported at once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from lettabot.runtime.config.environment import CONFIG_ENV, blame, check_variables
from lettabot.runtime.config.explain import explain_error
from lettabot.runtime.config.problems import ConfigError, Problem
from lettabot.runtime.config.root import Config

DEFAULT_CONFIG_FILE = "lettabot.toml"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(str(path), f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
                     "save it as UTF-8 (TOML files must be)")],
            str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [Problem(str(path), f"is not valid TOML: {exc}", "fix the syntax at that line")],
            str(path),
        ) from None
    except OSError as exc:
        raise ConfigError(
            [Problem(str(path), f"cannot be read: {exc.strerror}", "check path and permissions")],
            str(path),
        ) from None


def resolve_path(explicit: str | Path | None) -> Path | None:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            example = path / "lettabot.toml"
            raise ConfigError([Problem(str(path), "is a directory, not a config file",
                                       f"pass the TOML file itself, e.g. {example}")])
        if not path.is_file():
            raise ConfigError(
                [Problem(str(path), "does not exist", "pass the path of an existing TOML file")]
            )
        return path
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(
                [
                    Problem(
                        CONFIG_ENV,
                        f"names {path}, which does not exist",
                        "point it at an existing TOML file or unset it",
                    )
                ]
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_config(path: str | Path | None = None, *, env_file: str | Path | None = ".env") -> Config:
    """Read the config: ``path``, else ``$LETTABOT_CONFIG``, else ``./lettabot.toml`` if it
    exists (else defaults), then apply ``.env`` and ``LETTABOT_*`` environment overrides.

    Relative ``data_dir`` and ``letta.cwd`` are resolved against the config file's folder
    (the working directory when there is no file). Raises :class:`ConfigError` listing every
    problem.
    """
    file = resolve_path(path)
    data = read_toml(file) if file else {}
    dotenv = Path(env_file) if env_file is not None else None
    source = str(file) if file else None
    env_problems, env_warnings = check_variables(dotenv, data)
    try:
        config = Config(_env_file=dotenv, **data)
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in explain_error(err)]
        raise ConfigError([*env_problems, *(blame(p, dotenv) for p in problems)],
                          source) from None
    except SettingsError as exc:  # a value the sources could not parse; named above
        raise ConfigError(env_problems or [Problem(
            "environment", f"a LETTABOT_* value could not be read ({exc})",
            "lists and tables are JSON there, e.g. LETTABOT_ACCESS__APPROVERS="
            "'[\"slack:U0123ABCD\"]'")], source) from None
    if env_problems:
        raise ConfigError(env_problems, source)
    base = file.parent.absolute() if file else Path.cwd()

    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    letta = config.letta
    if letta.cwd is not None:
        letta = letta.model_copy(update={"cwd": resolve(letta.cwd)})
    config = config.model_copy(update={"data_dir": resolve(config.data_dir), "letta": letta})
    config._config_file = file.absolute() if file else None
    config._load_warnings = env_warnings
    return config
