"""The root model: :class:`Config` (every section, its cross-section checks, the resolved
values) and :func:`composed`, the class with one field per installed adapter's section."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal, Self, cast

from pydantic import BaseModel, Field, PrivateAttr, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lettabot.runtime.config.budgets import BudgetsConfig
from lettabot.runtime.config.plugins import AdapterSettings, plugin_sections
from lettabot.runtime.config.problems import ENV_PREFIX, Problem, ValidationProblems
from lettabot.runtime.config.sections import (
    AccessConfig,
    AgentConfig,
    ApprovalsConfig,
    ChatToolsConfig,
    ClusterConfig,
    FilesConfig,
    HealthConfig,
    HostConfig,
    LettaConfig,
    SandboxConfig,
    ScheduleConfig,
    ServersConfig,
    StoreConfig,
    TurnsConfig,
)
from lettabot.runtime.config.telemetry import TracingConfig
from lettabot.runtime.config.toml_text import mask_secretish, mask_url, masked_fields, toml_lines
from lettabot.runtime.store import default_store_url


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/lettabot``, else ``~/.local/share/lettabot``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "lettabot"


class _KnownKeysDotEnv(DotEnvSettingsSource):
    """``.env`` without complaints about its unrelated keys (e.g. ``OPENAI_API_KEY``)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


class Config(BaseSettings):
    """The effective configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir,
                           examples=["~/.local/share/lettabot"])
    """Where lettabot keeps its state (the SQLite store, the agent's workspace); a relative
    path is taken from the config file's folder. Unset: ``$XDG_DATA_HOME/lettabot``, else
    ``~/.local/share/lettabot``."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (with scope, conversation and turn when known)."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    letta: LettaConfig = Field(default_factory=LettaConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    turns: TurnsConfig = Field(default_factory=TurnsConfig)
    files: FilesConfig = Field(default_factory=FilesConfig)
    chat_tools: ChatToolsConfig = Field(default_factory=ChatToolsConfig)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    """Prompts run on a schedule (``[[schedules]]``)."""
    servers: ServersConfig = Field(default_factory=ServersConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    hosts: list[HostConfig] = Field(default_factory=list)
    """App Server hosts that own the agents placed on them (``[[hosts]]``; see
    docs/scaling.md, *Agents on App Server hosts*)."""
    agents: list[AgentConfig] = Field(default_factory=list)
    """Several agents behind one bot (``[[agents]]``); none: one agent from ``[letta]``."""
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    """Daily token and cost limits (``[budgets]``)."""
    adapters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, examples=[{"teams": {"enabled": True, "app_password": "..."}}])
    """Free-form settings of adapters that provide no settings model: ``[adapters.teams]``."""
    # ... and one field per installed adapter's section ([web], [slack], [discord], ...),
    # added by composed() from the `lettabot.settings` entry points.

    _config_file: Path | None = PrivateAttr(default=None)

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Config(...) builds the class composed with the installed adapters' sections.
        target = composed() if cls is Config else cls
        return cast(Self, super().__new__(target))

    def sections(self) -> dict[str, AdapterSettings]:
        """The installed adapters' sections, by adapter name."""
        return {name: value for name in type(self).model_fields
                if isinstance(value := getattr(self, name), AdapterSettings)}

    def section(self, name: str) -> AdapterSettings | None:
        return self.sections().get(name)
    _load_warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def config_file(self) -> Path | None:
        """The TOML file this config was read from (set by :func:`load_config`)."""
        return self._config_file

    @model_validator(mode="after")
    def _check_cluster(self) -> Self:
        if self.cluster.enabled and not self.store_url.startswith("postgresql"):
            raise ValidationProblems([Problem("cluster.enabled", "needs the store on PostgreSQL",
                                     'set store.url = "postgresql+asyncpg://user@host/db"')])
        return self

    @model_validator(mode="after")
    def _check_hosts(self) -> Self:
        problems: list[Problem] = []
        seen: set[str] = set()
        for i, host in enumerate(self.hosts):
            if host.name in seen:
                problems.append(Problem(f"hosts[{i}].name", f"{host.name!r} is used twice",
                                        "give every host its own name"))
            seen.add(host.name)
        for i, agent in enumerate(self.agents):
            if agent.host is not None and agent.host not in seen:
                known = ", ".join(sorted(seen)) or "none is configured"
                problems.append(Problem(f"agents[{i}].host",
                                        f"names the host {agent.host!r}, which [[hosts]] "
                                        f"does not list ({known})",
                                        "add a [[hosts]] entry with that name, or fix the "
                                        "name"))
        unplaced = not self.agents or any(a.host is None for a in self.agents)
        if self.servers.count == 0 and not self.servers.urls and unplaced:
            problems.append(Problem("servers.count", "is 0 and no urls are given",
                                    "set count >= 1 or list urls (or give every agent a "
                                    "host)"))
        if self.hosts and self.letta.backend == "cloud":
            problems.append(Problem("hosts", 'is set with letta.backend = "cloud"',
                                    "Letta Cloud serves every agent from every App Server: "
                                    "list the servers in servers.urls and drop [[hosts]]"))
        if problems:
            raise ValidationProblems(problems)
        return self

    def host(self, name: str) -> HostConfig:
        """The ``[[hosts]]`` entry named ``name``."""
        return next(h for h in self.hosts if h.name == name)

    @model_validator(mode="after")
    def _check_agents(self) -> Self:
        if not self.agents:
            return self
        problems: list[Problem] = []
        seen: set[str] = set()
        for i, agent in enumerate(self.agents):
            if agent.name in seen:
                problems.append(Problem(f"agents[{i}].name", f"{agent.name!r} is used twice",
                                        "give every agent its own name"))
            seen.add(agent.name)
        defaults = [a.name for a in self.agents if a.default]
        if len(defaults) > 1:
            problems.append(Problem("agents", f"{', '.join(defaults)} are all marked default",
                                    "mark exactly one agent default = true"))
        if not defaults and len(self.agents) > 1:
            problems.append(Problem("agents", "no agent is marked default",
                                    "mark the agent that serves unmatched scopes "
                                    "default = true"))
        if self.letta.agent_id:
            problems.append(Problem("letta.agent_id", "is set together with [[agents]]",
                                    "move it to the agent it belongs to ([[agents]] agent_id)"))
        if problems:
            raise ValidationProblems(problems)
        return self

    @property
    def default_agent(self) -> AgentConfig:
        """The agent that serves scopes no rule matches (``[letta]``'s when no ``[[agents]]``)."""
        for agent in self.agents:
            if agent.default or len(self.agents) == 1:
                return agent
        return AgentConfig(name="default", default=True, agent_id=self.letta.agent_id)

    def agent_configs(self) -> list[AgentConfig]:
        """``[[agents]]``, or the one implicit agent (named ``default``) from ``[letta]``."""
        return list(self.agents) or [self.default_agent]

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the TOML file's contents, so they rank BELOW env and .env.
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        dotenv = _KnownKeysDotEnv(
            settings_cls,
            env_file=dotenv_settings.env_file,
            env_file_encoding=dotenv_settings.env_file_encoding,
        )
        return env_settings, dotenv, init_settings

    # resolved values ---------------------------------------------------------

    @property
    def store_url(self) -> str:
        """``store.url``, or the SQLite file ``<data_dir>/lettabot.db``."""
        return self.store.url or default_store_url(self.data_dir)

    @property
    def letta_cwd(self) -> Path:
        """Where the agent's tools run: ``letta.cwd``, else ``<data_dir>/workspace``."""
        return self.letta.cwd if self.letta.cwd else self.data_dir / "workspace"

    def enabled_adapters(self) -> list[str]:
        """Names of the adapters ``lettabot run`` starts: enabled team chats, then the
        others (the web chat), then enabled free-form ones (``[adapters.<name>]``)."""
        on = [(not s.public, n) for n, s in self.sections().items() if s.is_enabled(self)]
        names = [n for _, n in sorted(on, key=lambda pair: pair[0])]
        names += [n for n, s in self.adapters.items() if s.get("enabled") is True]
        return names

    def public_adapters(self) -> list[str]:
        """Enabled adapters that people other than the operator reach (team chats)."""
        return [n for n, s in self.sections().items() if s.public and s.is_enabled(self)]

    def refusals(self) -> list[Problem]:
        """Settings ``lettabot run`` refuses to start with (unsafe unless opted into)."""
        public = self.public_adapters()
        access = self.access
        if public and not (access.allowed_users or access.approvers or access.open):
            return [Problem(
                "access.allowed_users",
                f"is empty (and so is access.approvers) with {' and '.join(public)} enabled: "
                "everyone who can message the bot could use it",
                "list who may talk (access.allowed_users) and who may approve tool calls "
                "(access.approvers), or set access.open = true to let everyone talk")]
        return []

    def warnings(self) -> list[str]:
        """Settings that are valid but risky; ``check-config`` prints them."""
        out = list(self._load_warnings)
        if self.letta.permission_mode == "unrestricted":
            out.append(
                'letta.permission_mode is "unrestricted": every tool runs without asking anyone'
            )
        public = self.public_adapters()
        if public and self.access.open and not self.access.allowed_users:
            out.append(f"access.open = true: everyone who can message the bot on "
                       f"{' and '.join(public)} may talk to it")
        out += self.budgets.unpriced([self.letta.model, *(a.model for a in self.agents)])
        if not self.access.approvers and self.access.self_approve:
            out.append("access.self_approve = true and no access.approvers: whoever starts a "
                       "turn approves its own tool calls")
        stdio = sorted({s.name for a in self.agent_configs()
                        for s in a.resolved(self.letta).mcp_servers if s.command})
        if stdio and self.sandbox.mode == "off":
            out.append(f"MCP servers {', '.join(stdio)} run unsandboxed ([sandbox] mode = "
                       "\"off\"): they can read whatever lettabot can")
        return out

    def describe(self) -> str:
        """The effective config as TOML-like text, secrets masked (safe to print or log)."""
        lines = []
        if self.config_file:
            lines.append(f"# config file: {self.config_file}")
        lines.append(f"# adapters that would run: {', '.join(self.enabled_adapters()) or 'none'}")
        lines += [f"# warning: {w}" for w in self.warnings()]
        top = {"data_dir": str(self.data_dir), "log_level": self.log_level,
               "log_format": self.log_format}
        lines += toml_lines(top)
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                lines += ["", f"[{name}]", *toml_lines(masked_fields(value))]
        resolved = {"store.url (effective)": mask_url(self.store_url)}
        lines += ["", *(f"# {k} = {v}" for k, v in resolved.items())]
        for name, settings in self.adapters.items():
            lines += ["", f"[adapters.{name}]", *toml_lines(mask_secretish(settings))]
        return "\n".join(lines) + "\n"

    def __repr_args__(self) -> Any:
        # Third-party adapter tables are free-form: hide them from repr (may hold tokens).
        return [(k, v) for k, v in super().__repr_args__() if k != "adapters"]


@functools.cache
def composed() -> type[Config]:
    """:class:`Config` with one field per installed adapter's section."""
    fields: dict[str, Any] = {name: (model, Field(default_factory=model))
                              for name, model in plugin_sections(Config.model_fields).items()}
    composed = create_model("Config", __base__=Config, __module__=__name__, **fields)
    composed.__doc__ = Config.__doc__
    return cast(type[Config], composed)


def adapter_section_models() -> dict[str, type[AdapterSettings]]:
    """The installed adapters' section models, by adapter name."""
    # composed() is called on a line of its own: when it first builds the class, pydantic
    # (for attribute docstrings, Python < 3.13) reads the source of this module's frames
    # from their current line, which must not be the middle of a statement.
    fields = composed().model_fields
    return {name: cast(type[AdapterSettings], field.annotation)
            for name, field in fields.items()
            if isinstance(field.annotation, type)
            and issubclass(field.annotation, AdapterSettings)}
