"""lettabot's configuration: one TOML file, ``LETTABOT_*`` environment overrides and ``.env``.

Precedence, highest first: environment variables, ``.env`` (in the working directory),
the TOML file, defaults. Nested keys use ``__`` in the environment:
``slack.bot_token`` ↔ ``LETTABOT_SLACK__BOT_TOKEN``; lists are JSON there
(``LETTABOT_ACCESS__APPROVERS='["slack:U123"]'``). Tokens are :class:`SecretStr`: they
never appear in ``repr``, in :meth:`Config.describe`, or in error messages.

:func:`load_config` is the entry point; every problem it finds is reported at once as
``<section.key>: <what is wrong> — <how to fix>``.

The modules, lowest first: ``problems`` (key, problem, fix), ``base`` (what every section
shares), ``sections`` (the core sections), ``plugins`` (adapters' sections, from the
``lettabot.settings`` entry points), ``toml_text`` (masking, TOML values), ``root`` (the
:class:`Config` root model), ``keys`` (the dotted keys), ``explain`` (validation errors as
problems), ``environment`` (``LETTABOT_*`` variables and ``.env``), ``loading``
(:func:`load_config`) and ``example`` (the example config, generated from the models).
"""

from lettabot.runtime.config.base import is_blank, is_loopback
from lettabot.runtime.config.budgets import BudgetsConfig, ModelPrice
from lettabot.runtime.config.environment import CONFIG_ENV, FOREIGN_NAMES
from lettabot.runtime.config.example import (
    EXAMPLE_FILE,
    EXAMPLE_HEADER,
    GENERATED_BEGIN,
    GENERATED_END,
    adapter_examples,
    full_example,
    section_example,
)
from lettabot.runtime.config.loading import DEFAULT_CONFIG_FILE, load_config
from lettabot.runtime.config.mcp import McpServerConfig
from lettabot.runtime.config.plugins import SETTINGS_GROUP, AdapterSettings, ChatAdapterSettings
from lettabot.runtime.config.problems import (
    ENV_PREFIX,
    EVERY_KEY,
    ConfigError,
    Problem,
    env_var,
    missing,
)
from lettabot.runtime.config.root import Config, adapter_section_models, default_data_dir
from lettabot.runtime.config.sections import (
    CHAT_TOOLS,
    PROVIDER_ALIASES,
    ROLES,
    AccessConfig,
    AgentConfig,
    ApprovalsConfig,
    ChatTool,
    ChatToolsConfig,
    ClusterConfig,
    FilesConfig,
    HealthConfig,
    HostConfig,
    LettaConfig,
    PermissionMode,
    ProviderConfig,
    RemoteServer,
    Role,
    RouteRule,
    SandboxConfig,
    ScheduleConfig,
    ServersConfig,
    StoreConfig,
    TurnsConfig,
)
from lettabot.runtime.config.telemetry import TracingConfig

__all__ = [
    "CHAT_TOOLS",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "EVERY_KEY",
    "EXAMPLE_FILE",
    "EXAMPLE_HEADER",
    "FOREIGN_NAMES",
    "GENERATED_BEGIN",
    "GENERATED_END",
    "PROVIDER_ALIASES",
    "ROLES",
    "SETTINGS_GROUP",
    "AccessConfig",
    "AdapterSettings",
    "AgentConfig",
    "ApprovalsConfig",
    "BudgetsConfig",
    "ChatAdapterSettings",
    "ChatTool",
    "ChatToolsConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "FilesConfig",
    "HealthConfig",
    "HostConfig",
    "LettaConfig",
    "McpServerConfig",
    "ModelPrice",
    "PermissionMode",
    "Problem",
    "ProviderConfig",
    "RemoteServer",
    "Role",
    "RouteRule",
    "SandboxConfig",
    "ScheduleConfig",
    "ServersConfig",
    "StoreConfig",
    "TracingConfig",
    "TurnsConfig",
    "adapter_examples",
    "adapter_section_models",
    "default_data_dir",
    "env_var",
    "full_example",
    "is_blank",
    "is_loopback",
    "load_config",
    "missing",
    "section_example",
]
