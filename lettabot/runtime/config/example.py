"""The example config, generated from the models: every key commented out after its
docstring (``lettabot example-config``; ``config/lettabot.example.toml`` is its output)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, SecretStr

from lettabot.runtime.config.keys import json_kind, model_of
from lettabot.runtime.config.plugins import AdapterSettings
from lettabot.runtime.config.root import adapter_section_models, composed
from lettabot.runtime.config.toml_text import toml_value

EXAMPLE_FILE = "config/lettabot.example.toml"
"""The example in a source checkout; what hints name instead is :data:`EVERY_KEY` (a wheel
install has no ``config/`` folder)."""


GENERATED_BEGIN = ("# ---- adapter sections: generated from the adapters' settings models by "
                   "`lettabot example-config` ----")
GENERATED_END = "# ---- end of the generated adapter sections ----"


def section_example(name: str, model: type[AdapterSettings]) -> str:
    """``[name]`` with every key commented out: the field's docstring, then ``key =`` its
    first example (else its default)."""
    lines = [f"[{name}]"]
    for key, field in model.model_fields.items():
        lines += _comment(field.description)
        if field.examples:
            value = field.examples[0]
        else:
            value = field.get_default(call_default_factory=True)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        lines.append(f"# {key} = {toml_value(value)}" if value is not None
                     else f"# {key} =")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def adapter_examples() -> str:
    """Every installed adapter's section, between the markers the example file keeps."""
    parts = [section_example(name, model)
             for name, model in sorted(adapter_section_models().items())]
    return "\n".join([GENERATED_BEGIN, "", "\n".join(parts), GENERATED_END]) + "\n"


EXAMPLE_HEADER = """\
# lettabot configuration — every key, with its default (or an example value), generated
# from lettabot's settings models by `lettabot example-config`.
#
# Save as ./lettabot.toml (or pass --config PATH, or set LETTABOT_CONFIG) and uncomment what
# you need. Every key can be set from the environment or .env instead:
# LETTABOT_<SECTION>__<KEY>, e.g. LETTABOT_SLACK__BOT_TOKEN=xoxb-... (lists and tables are
# JSON there). Precedence: environment, then .env, then this file, then defaults.
# Keep tokens out of this file if you can: put them in the environment or in .env.
# `lettabot check-config` shows what would run; --verbose the effective config.
"""


def _comment(doc: str | None) -> list[str]:
    text = " ".join((doc or "").split()).replace("``", "`")
    return textwrap.wrap(text, width=92, initial_indent="# ", subsequent_indent="# ",
                         break_long_words=False, break_on_hyphens=False) if text else []


def _example_keys(model: type[BaseModel], skip: Iterable[str] = ()) -> list[str]:
    """``model``'s plain keys, each commented out after its docstring."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        if json_kind(field.annotation) is not None and model_of(field.annotation):
            continue  # a table of its own
        lines += _comment(field.description)
        if field.examples:
            value = field.examples[0]
        elif field.is_required():
            value = None
        else:
            value = field.get_default(call_default_factory=True)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, Path):
            value = str(value)
        lines.append(f"# {key} = {toml_value(value)}" if value is not None
                     else f"# {key} =")
        lines.append("")
    return lines


def _example_tables(model: type[BaseModel], path: str, skip: Iterable[str] = ()) -> list[str]:
    """The tables under ``model`` (``[section]`` / ``# [[list]]``), each with its keys."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        sub = model_of(field.annotation)
        if sub is None or json_kind(field.annotation) is None:
            continue
        name = f"{path}.{key}" if path else key
        many = json_kind(field.annotation) == "list"
        lines += _comment(field.description)
        lines.append(f"# [[{name}]]" if many else f"[{name}]")
        if about := _comment(sub.__doc__):
            lines += [*about, ""]
        lines += _example_keys(sub)
        lines += _example_tables(sub, name)
    return lines


def full_example() -> str:
    """The whole config, every key commented: core sections, then the installed adapters'
    (what ``lettabot example-config`` prints)."""
    adapters = set(adapter_section_models())
    lines = [EXAMPLE_HEADER, *_example_keys(composed(), adapters),
             *_example_tables(composed(), "", adapters)]
    return "\n".join(lines).rstrip() + "\n\n" + adapter_examples()
