"""The dotted keys of the composed config: which exist, what type each holds, and which
real key a misspelt one meant."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from lettabot.runtime.config.root import composed


def model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def json_kind(annotation: Any) -> str | None:
    """``"list"`` or ``"object"`` for a field the environment gives as JSON, else None."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        origin = getattr(candidate, "__origin__", candidate)
        if origin in (list, tuple, set):
            return "list"
        if origin is dict or model_of(candidate) is not None:
            return "object"
    return None


def setting_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key (sections and their keys) a variable may name."""
    out = []
    for name, field in (model or composed()).model_fields.items():
        key = prefix + name
        out.append(key)
        sub = model_of(field.annotation)
        if sub is not None and json_kind(field.annotation) == "object":
            out += setting_keys(sub, key + ".")
    return out


def _squash(text: str) -> str:
    return text.replace("_", "").replace(".", "").upper()


def close_key(key: str) -> str | None:
    """The real dotted key ``key`` most likely meant (a typo, or ``_`` for ``__``)."""
    keys = setting_keys()
    same = [k for k in keys if _squash(k) == _squash(key)]
    if same:
        return same[0]
    parent = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(key, siblings or keys, n=1, cutoff=0.75)
    return close[0] if close else None


def field_at(key: str) -> tuple[Any, bool]:
    """(the annotation at dotted ``key``, whether every part of it names a field); a key
    below a dict-valued field (``letta.env.X``) counts as found."""
    model: type[BaseModel] | None = composed()
    annotation: Any = None
    for part in key.split("."):
        if model is None:
            return annotation, json_kind(annotation) == "object"
        field = model.model_fields.get(part)
        if field is None:
            return None, False
        annotation = field.annotation
        model = model_of(annotation) if json_kind(annotation) == "object" else None
    return annotation, True
