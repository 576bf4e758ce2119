"""What every config section shares: the :class:`Section` base (unknown keys refused,
booleans strict) and small helpers section validators use."""

from __future__ import annotations

import ipaddress
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator

from lettabot.runtime.config.problems import Problem, ValidationProblems


def is_blank(secret: SecretStr | None) -> bool:
    """No secret, or only whitespace."""
    return secret is None or not secret.get_secret_value().strip()



def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _is_bool_field(annotation: Any) -> bool:
    return annotation is bool or bool in getattr(annotation, "__args__", ())


def _strict_bool(value: Any) -> Any:
    """Booleans are true/false (from the environment also "true"/"false"/"1"/"0"): pydantic
    alone reads "yes", "on" or "y" as true, so a typo'd string would pass silently."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        if word != "auto":
            raise ValidationProblems([Problem("", f"is not a boolean (got {value!r})",
                                     "write true or false")])
    return value


class Section(BaseModel):
    """A config section: unknown keys refused, booleans strict (``"yes"`` is an error)."""

    model_config = ConfigDict(extra="forbid", validate_default=True,
                              use_attribute_docstrings=True)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _is_bool_field(field.annotation):
            return _strict_bool(value)
        return value

    def raise_problems(self, problems: list[Problem]) -> Self:
        """Raise ``problems`` (keys relative to this section) if there are any."""
        if problems:
            raise ValidationProblems(problems)
        return self
