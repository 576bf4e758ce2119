"""Values as TOML text, secrets masked: what :meth:`Config.describe` prints and the
example's values are written with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "********"
SECRETISH = re.compile(r"(token|secret|password|api_key|key)$", re.IGNORECASE)


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", rf"\1{MASK}@", url)


def masked_fields(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out[name] = MASK if value.get_secret_value() else ""
        elif isinstance(value, BaseModel):
            out[name] = masked_fields(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[name] = [masked_fields(v) for v in value]
        elif isinstance(value, Path):
            out[name] = str(value)
        elif name == "url" and isinstance(value, str):
            out[name] = mask_url(value)
        elif name == "env" and isinstance(value, dict):
            out[name] = {k: MASK if v else "" for k, v in value.items()}  # keys, mostly
        elif isinstance(value, dict):
            out[name] = mask_secretish(value)
        else:
            out[name] = value
    return out


def mask_secretish(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (MASK if SECRETISH.search(k) and v else v) if not isinstance(v, Mapping)
        else mask_secretish(v)
        for k, v in settings.items()
    }


def toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_value(str(value))


def toml_lines(values: Mapping[str, Any]) -> list[str]:
    return [
        f"# {k} = (not set)" if v is None else f"{k} = {toml_value(v)}" for k, v in values.items()
    ]
