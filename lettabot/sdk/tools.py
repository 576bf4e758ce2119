"""Custom tools: Python functions the model can call, executed in the SDK's process.

::

    @tool("add", "Add two numbers", {"a": int, "b": int})
    async def add(args):
        return args["a"] + args["b"]

The CLI is told about the tool (``register_external_tools``) and asks the SDK to run
it (``execute_external_tool``) whenever the model calls it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Tool", "ToolResult", "tool"]

_PY_TO_JSON = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


class ToolResult(BaseModel):
    """What a tool returns to the model; a plain return value becomes text."""

    content: list[dict[str, Any]]
    is_error: bool = False

    @classmethod
    def of(cls, value: Any) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value)
            except TypeError:
                text = str(value)
        return cls(content=[{"type": "text", "text": text}])

    @classmethod
    def error(cls, message: str) -> ToolResult:
        return cls(content=[{"type": "text", "text": message}], is_error=True)


ToolHandler = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class Tool(BaseModel):
    """A tool definition plus the function that runs it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    description: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    label: str | None = None
    handler: ToolHandler = Field(exclude=True)

    def definition(self) -> dict[str, Any]:
        """The wire form the CLI expects."""
        return {
            "name": self.name,
            "label": self.label or self.name,
            "description": self.description,
            "parameters": self.parameters,
        }

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        """Run the handler; an exception becomes an error result the model sees."""
        try:
            value = self.handler(arguments)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            return ToolResult.error(f"{type(exc).__name__}: {exc}")
        return ToolResult.of(value)


def _schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """Accept either a JSON schema or a ``{name: python_type}`` shorthand."""
    if parameters.get("type") == "object":
        return parameters
    props = {}
    for name, kind in parameters.items():
        props[name] = {"type": _PY_TO_JSON[kind]} if kind in _PY_TO_JSON else dict(kind)
    return {"type": "object", "properties": props, "required": list(props)}


def tool(
    name: str, description: str, parameters: dict[str, Any] | None = None
) -> Callable[[ToolHandler], Tool]:
    """Decorate a function (sync or async, taking the arguments dict) to make a :class:`Tool`."""

    def wrap(func: ToolHandler) -> Tool:
        return Tool(
            name=name, description=description, parameters=_schema(parameters or {}), handler=func
        )

    return wrap
