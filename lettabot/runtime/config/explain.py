"""pydantic's validation errors explained as :class:`Problem`: the dotted key, what is
wrong, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from lettabot.runtime.config.keys import close_key
from lettabot.runtime.config.problems import EVERY_KEY, Problem, ValidationProblems, env_var
from lettabot.runtime.config.root import composed
from lettabot.runtime.config.toml_text import SECRETISH


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_FIXES = {
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "string_type": 'write a quoted string, e.g. "text"',
    "list_type": 'write a list, e.g. ["a", "b"] (in the environment: JSON)',
    "dict_type": "write a table",
    "model_type": "write a table ([section] in the file)",
    "model_attributes_type": "write a table ([section] in the file)",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "literal_error": "use one of the listed values",
}


def explain_error(err: Mapping[str, Any]) -> list[Problem]:
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, ValidationProblems):
        out = []
        for p in cause.problems:
            key = _loc((*loc, *(p.key.split(".") if p.key else ())))
            fix = p.fix.replace("$ENV", env_var(key)).replace("$KEY", key)
            out.append(Problem(key, p.what, fix))
        return out
    key = _loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1 and isinstance(err.get("input"), dict):
            close = difflib.get_close_matches(key, list(composed().model_fields), n=1)
            if close:
                return [Problem(key, "unknown key", f"did you mean [{close[0]}]? ({EVERY_KEY})")]
            return [Problem(key, "unknown key: no installed adapter reads this section",
                            f"install the adapter that does (pip install lettabot-{key} "
                            "for a built-in one), or remove the section")]
        if (near := close_key(key)) is not None:
            return [Problem(key, "unknown key",
                            f"did you mean {near.rsplit('.', 1)[-1]}? ({EVERY_KEY})")]
        return [Problem(key, "unknown key", f"remove it or fix its spelling ({EVERY_KEY})")]
    if kind == "missing":
        return [Problem(key, "is required", f"set it in the file or as {env_var(key)}")]
    what = str(err["msg"])
    what = what[:1].lower() + what[1:]
    what = what.removeprefix("value error, ")
    secret = bool(SECRETISH.search(str(loc[-1]))) if loc else False
    if "input" in err and not secret and not isinstance(err["input"], dict | list):
        what += f" (got {err['input']!r})"
    fix = _FIXES.get(kind, f"see this key's comment ({EVERY_KEY})")
    return [Problem(key, what, fix)]
