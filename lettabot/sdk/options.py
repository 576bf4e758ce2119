"""Session and agent options, validated by pydantic.

Options are keyword arguments of :func:`create_agent`, :func:`create_session`,
:func:`resume_session` and :func:`prompt`; a bad value raises
:class:`pydantic.ValidationError` naming the option.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from lettabot.sdk.mcp import McpServer
from lettabot.sdk.tools import Tool
from lettabot.sdk.types import PermissionResult

__all__ = [
    "SYSTEM_PROMPT_PRESETS",
    "AgentOptions",
    "BlockRef",
    "CanUseTool",
    "MemoryBlock",
    "PermissionMode",
    "SessionOptions",
    "SkillSource",
    "SystemPromptPreset",
    "TransportName",
]

# The TypeScript SDK's preset names, and what CLI 0.34 calls them (it accepts only
# default, letta, source-claude, source-codex, source-gemini).
PRESET_TO_CLI = {
    "default": "default",
    "letta-claude": "letta",
    "letta-codex": "letta",
    "letta-gemini": "letta",
    "claude": "source-claude",
    "codex": "source-codex",
    "gemini": "source-gemini",
    "letta": "letta",
    "source-claude": "source-claude",
    "source-codex": "source-codex",
    "source-gemini": "source-gemini",
}
SYSTEM_PROMPT_PRESETS = tuple(PRESET_TO_CLI)
PresetName = Literal[
    "default",
    "letta-claude",
    "letta-codex",
    "letta-gemini",
    "claude",
    "codex",
    "gemini",
    "letta",
    "source-claude",
    "source-codex",
    "source-gemini",
]
MEMORY_PRESETS = ("persona", "human", "project")

PermissionMode = Literal[
    # the TypeScript SDK's names
    "default",
    "acceptEdits",
    "bypassPermissions",
    # the CLI's own names
    "standard",
    "strict",
    "unrestricted",
]
_CLI_MODE = {
    "default": "standard",
    "standard": "standard",
    "acceptEdits": "acceptEdits",
    "strict": "strict",
    "bypassPermissions": "unrestricted",
    "unrestricted": "unrestricted",
}

TransportName = Literal["app_server", "subprocess"]
SkillSource = Literal["bundled", "global", "agent", "project"]

CanUseTool = Callable[[str, dict[str, Any]], "PermissionResult | Awaitable[PermissionResult]"]


class SystemPromptPreset(BaseModel):
    """``{"type": "preset", "preset": "letta-claude", "append": "..."}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["preset"] = "preset"
    preset: PresetName
    append: str | None = None

    @property
    def cli_name(self) -> str:
        return PRESET_TO_CLI[self.preset]


class MemoryBlock(BaseModel):
    """A memory block: becomes a root memory file ``<label>.md`` (in the system prompt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    value: str
    description: str | None = None


class BlockRef(BaseModel):
    """A reference to an existing shared block (Letta Cloud / server backends only)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    block_id: str = Field(alias="blockId", min_length=1)


MemoryItem = MemoryBlock | BlockRef | str


class AgentOptions(BaseModel):
    """What defines a new agent: model, system prompt and memory."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str | None = None
    system_prompt: SystemPromptPreset | str | None = None
    memory: list[MemoryItem] | None = None
    persona: str | None = None
    human: str | None = None
    project: str | None = None
    tags: list[str] | None = None

    @field_validator("system_prompt", mode="before")
    @classmethod
    def _preset_name(cls, value: Any) -> Any:
        # A bare preset name selects that preset; any other string is a custom prompt.
        if isinstance(value, str) and value in SYSTEM_PROMPT_PRESETS:
            return SystemPromptPreset(preset=value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("system_prompt must not be empty")
        return value

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_items(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise ValueError("memory must be a list of preset names, blocks or block refs")
        items: list[Any] = []
        for item in value:
            if isinstance(item, str):
                if item not in MEMORY_PRESETS:
                    raise ValueError(
                        f"unknown memory preset {item!r}; presets are {', '.join(MEMORY_PRESETS)}"
                    )
                items.append(item)
            elif isinstance(item, dict) and ("block_id" in item or "blockId" in item):
                items.append(BlockRef.model_validate(item))
            elif isinstance(item, dict):
                items.append(MemoryBlock.model_validate(item))
            else:
                items.append(item)
        return items

    @model_validator(mode="after")
    def _convenience_blocks_need_presets(self) -> AgentOptions:
        if self.memory is None:
            return self
        labels = {i if isinstance(i, str) else getattr(i, "label", None) for i in self.memory}
        for name in MEMORY_PRESETS:
            if getattr(self, name) is not None and name not in labels:
                raise ValueError(
                    f"{name}= was given but memory does not include {name!r}; "
                    f"add {name!r} to memory or leave memory unset"
                )
        return self

    def blocks(self) -> list[MemoryBlock]:
        """The memory blocks to write for a new agent (presets with given values, custom blocks)."""
        out: list[MemoryBlock] = []
        seen: set[str] = set()
        for item in self.memory or list(MEMORY_PRESETS):
            if isinstance(item, MemoryBlock):
                value = getattr(self, item.label, None) if item.label in MEMORY_PRESETS else None
                out.append(item if value is None else item.model_copy(update={"value": value}))
                seen.add(item.label)
            elif isinstance(item, str) and (value := getattr(self, item)) is not None:
                out.append(MemoryBlock(label=item, value=value))
                seen.add(item)
        return out

    def block_refs(self) -> list[BlockRef]:
        return [i for i in self.memory or [] if isinstance(i, BlockRef)]

    @property
    def custom_system(self) -> str | None:
        return self.system_prompt if isinstance(self.system_prompt, str) else None

    @property
    def preset(self) -> SystemPromptPreset | None:
        return self.system_prompt if isinstance(self.system_prompt, SystemPromptPreset) else None

    def has_agent_settings(self) -> bool:
        return any(
            v is not None
            for v in (self.system_prompt, self.memory, self.persona, self.human, self.project)
        )


class SessionOptions(AgentOptions):
    """Everything a session can be configured with."""

    cwd: Path | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: PermissionMode = "default"
    can_use_tool: CanUseTool | None = None
    max_turns: int | None = Field(default=None, ge=1)
    tools: list[Tool] = Field(default_factory=list)
    mcp_servers: list[McpServer] = Field(default_factory=list)
    """MCP servers whose tools become the agent's (``mcp__<server>__<tool>``), run by the
    SDK: see :mod:`lettabot.sdk.mcp`."""
    skill_sources: list[SkillSource] | None = None
    """Where the agent finds skills (``bundled``, ``global``, ``agent``, ``project``); None:
    all of them (the CLI default); ``[]``: no skills."""
    include_partial_messages: bool = False
    transport: TransportName | None = None
    cli_path: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the CLI; it gets only a minimal part of ours (see ``cli_env``)."""
    app_server_url: str | None = None
    """An App Server someone else runs (else ``$LETTA_APP_SERVER_URL``, else a local one)."""
    app_server_token: SecretStr | None = Field(default=None, repr=False)
    """Its capability token (else ``$LETTA_APP_SERVER_TOKEN``)."""
    app_server_idle: float | None = Field(default=None, ge=0)
    """Seconds a local App Server the SDK started for its process-wide sessions stays up
    after its last session closes, so the next one starts warm (else
    ``$LETTABOT_SDK_APP_SERVER_IDLE``, else 60); 0: it stops with its last session."""
    request_timeout: float = Field(default=60.0, gt=0)

    @field_validator("cwd")
    @classmethod
    def _cwd_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"cwd {str(value)!r} is not a directory")
        return value.resolve() if value is not None else None

    @field_validator("can_use_tool")
    @classmethod
    def _callable(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise ValueError("can_use_tool must be a callable (tool_name, tool_input) -> result")
        return value

    @model_validator(mode="after")
    def _unique_tool_names(self) -> SessionOptions:
        names = [t.name for t in self.tools]
        if len(names) != len(set(names)):
            raise ValueError(f"tool names must be unique, got {names}")
        servers = [s.name for s in self.mcp_servers]
        if len(servers) != len(set(servers)):
            raise ValueError(f"MCP server names must be unique, got {servers}")
        return self

    @property
    def cli_permission_mode(self) -> str:
        """The mode the CLI gets. Always passed: the CLI's own default is unrestricted."""
        return _CLI_MODE[self.permission_mode]

    def agent_options(self) -> AgentOptions:
        return AgentOptions.model_validate({k: getattr(self, k) for k in AgentOptions.model_fields})
