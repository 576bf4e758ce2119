"""lettabot's configuration: one TOML file, ``LETTABOT_*`` environment overrides and ``.env``.

Precedence, highest first: environment variables, ``.env`` (in the working directory),
the TOML file, defaults. Nested keys use ``__`` in the environment:
``slack.bot_token`` ↔ ``LETTABOT_SLACK__BOT_TOKEN``; lists are JSON there
(``LETTABOT_ACCESS__APPROVERS='["slack:U123"]'``). Tokens are :class:`SecretStr`: they
never appear in ``repr``, in :meth:`Config.describe`, or in error messages.

:func:`load_config` is the entry point; every problem it finds is reported at once as
``<section.key>: <what is wrong> — <how to fix>``.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import os
import re
import textwrap
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, cast

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from lettabot.runtime.adapter import Scope
from lettabot.runtime.schedules import check_cron, check_timezone
from lettabot.runtime.store import StoreError, default_store_url, normalize_url

ENV_PREFIX = "LETTABOT_"
CONFIG_ENV = "LETTABOT_CONFIG"
DEFAULT_CONFIG_FILE = "lettabot.toml"
EXAMPLE_FILE = "config/lettabot.example.toml"
"""The example in a source checkout; what hints name instead is :data:`EVERY_KEY` (a wheel
install has no ``config/`` folder)."""
EVERY_KEY = "`lettabot example-config` prints every key with its comment"

PermissionMode = Literal["standard", "acceptEdits", "strict", "unrestricted"]
_LEGACY_MODES = {"default": "standard", "bypassPermissions": "unrestricted"}


# problems --------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: which key, what is wrong, how to fix it."""

    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what} — {self.fix}"


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists every issue found."""

    def __init__(self, problems: Sequence[Problem | str], source: str | None = None) -> None:
        self.problems = [str(p) for p in problems]
        self.source = source
        where = f" ({source})" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid lettabot config{where}:\n{lines}")


class _Problems(ValueError):
    """Raised by validators; carries problems whose keys are relative to the model."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def env_var(key: str) -> str:
    """The variable for a dotted key: ``slack.bot_token`` → ``LETTABOT_SLACK__BOT_TOKEN``."""
    return ENV_PREFIX + key.replace(".", "__").upper()


def is_blank(secret: SecretStr | None) -> bool:
    """No secret, or only whitespace."""
    return secret is None or not secret.get_secret_value().strip()


def missing(key: str, what: str) -> Problem:
    """``key`` must be set because of ``what``; the fix names its variable and key."""
    # $ENV and $KEY are filled in with the full dotted key once the section is known.
    return Problem(key, f"is not set but {what}", "set $ENV (or $KEY in the file)")




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
            raise _Problems([Problem("", f"is not a boolean (got {value!r})",
                                     "write true or false")])
    return value


def _legacy_mode(cls: type, value: Any) -> Any:
    return _LEGACY_MODES.get(value, value) if isinstance(value, str) else value


def _ids_as_text(cls: type, value: Any) -> Any:
    """User ids written as numbers (Discord's, in TOML) are ids all the same."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _agent_problems(agent_id: str | None, allowed: list[str],
                    disallowed: list[str]) -> list[Problem]:
    """What ``[letta]`` and each ``[[agents]]`` table check alike."""
    problems = []
    if agent_id is not None and not agent_id.strip():
        problems.append(Problem("agent_id", "is empty",
                                "remove it to let lettabot create the agent"))
    overlap = sorted(set(allowed) & set(disallowed))
    if overlap:
        problems.append(Problem("disallowed_tools",
                                f"{', '.join(overlap)} also listed in allowed_tools",
                                "list each tool in only one of the two"))
    return problems


class _Section(BaseModel):
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
            raise _Problems(problems)
        return self


# sections ----------------------------------------------------------------------


PROVIDER_ALIASES = {"gemini": "google", "bedrock": "amazon-bedrock", "claude": "anthropic",
                    "grok": "xai", "llamacpp": "llama-cpp"}


class ProviderConfig(_Section):
    """A model provider ``lettabot run`` connects in its Letta home at start (what
    ``letta connect`` does), so a container needs no manual step. ``type`` is a provider id
    the CLI lists (``lettabot check-config`` shows them): anthropic, openai,
    openai-compatible, google (gemini), openrouter, amazon-bedrock, ollama, groq, ..."""

    type: str
    api_key: SecretStr | None = None
    """The key itself (prefer ``api_key_env``: the file then holds no secret)."""
    api_key_env: str | None = None
    """The name of an environment variable (or ``.env`` entry) holding the key, e.g.
    ``ANTHROPIC_API_KEY``. It is read by lettabot and never passed to the CLI's tools."""
    base_url: str | None = None
    """For openai-compatible, ollama, lmstudio, llama-cpp (``http://host:port/v1``)."""
    name: str | None = None
    """A second connection of the same type under its own name (CLI default: the type)."""
    auth_method: str | None = None
    """amazon-bedrock: ``iam`` or ``profile``."""
    fields: dict[str, str] = Field(default_factory=dict)
    """More connection fields the CLI asks for (``region``, ``profile``, ``accessKey``)."""

    @field_validator("type")
    @classmethod
    def _canonical(cls, value: str) -> str:
        value = value.strip().lower()
        return PROVIDER_ALIASES.get(value, value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if self.api_key is not None and self.api_key_env:
            problems.append(Problem("api_key", "is set together with api_key_env",
                                    "keep one: api_key_env names the variable holding the key"))
        if self.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            problems.append(Problem("api_key_env", f"{self.api_key_env!r} is not a variable "
                                    "name", 'write the name only, e.g. "ANTHROPIC_API_KEY"'))
        if self.base_url and not re.match(r"^https?://[^/]+", self.base_url):
            problems.append(Problem("base_url", "is not an http(s) URL",
                                    "write http://host:port/v1"))
        return self.raise_problems(problems)

    def key(self) -> str | None:
        """The key: ``api_key``, else the ``api_key_env`` variable (environment, then the
        ``.env`` file in the working directory); None if neither is set."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        if value is None and Path(".env").is_file():
            value = dotenv_values(".env").get(self.api_key_env)
        return value or None

    @property
    def label(self) -> str:
        return self.type + (f" ({self.name})" if self.name else "")


class LettaConfig(_Section):
    """How conversations are run: which CLI, backend, agent, model and tool permissions."""

    cli_path: str | None = None
    backend: Literal["local", "cloud"] = "local"
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    agent_id: str | None = None
    agent_name: str = "lettabot"
    permission_mode: PermissionMode = "standard"
    cwd: Path | None = None
    allowed_tools: list[str] = Field(default_factory=list)
    disallowed_tools: list[str] = Field(default_factory=list)
    system_prompt: str | None = None
    persona: str | None = None
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    """Extra environment for the CLI (e.g. a provider key). The CLI gets only PATH, HOME,
    locale, proxy and ``LETTA_*`` variables of lettabot's own environment; whatever is here
    can be read by an approved tool call."""
    providers: list[ProviderConfig] = Field(default_factory=list)
    """``[[letta.providers]]``: model providers connected at start (local backend)."""

    _legacy_mode = field_validator("permission_mode", mode="before")(_legacy_mode)

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _agent_problems(self.agent_id, self.allowed_tools, self.disallowed_tools)
        if self.providers and self.backend == "cloud":
            problems.append(Problem(
                "providers", 'are connected in the local backend\'s home, not with backend '
                '"cloud"', "connect model providers in your Letta server or Letta Cloud "
                "(its Models page), and remove [[letta.providers]]"))
        return self.raise_problems(problems)


class AccessConfig(_Section):
    """Who may talk to the bot and who may approve tool calls.

    Entries are ``<adapter>:<user id>`` (``slack:U0123``, ``discord:81234``, ``web:local``)
    or a bare user id that matches on any adapter.
    """

    allowed_users: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    require_mention: bool = True

    _ids_as_text = field_validator("allowed_users", "approvers", mode="before")(_ids_as_text)
    open: bool = False
    """Let everyone who can message the bot talk to it. Without this, ``lettabot run``
    refuses to start Slack or Discord unless ``allowed_users`` or ``approvers`` is set."""
    self_approve: bool | None = None
    """Whether the person whose message started a turn may approve its tool calls when no
    ``approvers`` are set. None (default): only in the web chat, whose one user is whoever
    holds its token (on loopback: this machine's user). False: nobody but approvers."""

    def may_self_approve(self, adapter: str) -> bool:
        if self.self_approve is None:
            return adapter == "web"
        return self.self_approve

    @staticmethod
    def _matches(entries: Iterable[str], adapter: str, user_id: str) -> bool:
        return any(e in (user_id, f"{adapter}:{user_id}") for e in entries)

    def is_allowed_user(self, adapter: str, user_id: str) -> bool:
        """May this user talk to the bot? An empty ``allowed_users`` lets everyone."""
        if not self.allowed_users:
            return True
        return self._matches(self.allowed_users, adapter, user_id) or self.is_approver(
            adapter, user_id
        )

    def is_approver(self, adapter: str, user_id: str) -> bool:
        """Is this user in ``approvers``? (With none configured the runtime lets the
        person whose message started the turn decide.)"""
        return self._matches(self.approvers, adapter, user_id)


class ApprovalsConfig(_Section):
    """Approval buttons: how long to wait, and whether "Always allow" is offered."""

    timeout_seconds: float = Field(default=600.0, gt=0)
    always_allow_button: bool = True
    rule_ttl_hours: float = Field(default=24.0, gt=0)
    """How long an "Always allow" rule lasts."""
    retention_days: float = Field(default=90.0, gt=0)
    """How long decided approvals (the audit log) are kept."""


class FilesConfig(_Section):
    """Files people send with a message."""

    enabled: bool = True
    """Download them: images reach the agent as images, other files (text, code, PDF,
    CSV...) are saved in its workspace under ``folder`` and the agent is told where."""
    max_bytes: int = Field(default=10_000_000, ge=1)
    """Larger files are not downloaded (the agent is told their name and size)."""
    image_max_bytes: int = Field(default=5_000_000, ge=1)
    """Larger images are saved as files instead of sent as images."""
    folder: str = "uploads"
    """Inside the agent's workspace (``letta.cwd``); one subfolder per conversation scope."""

    @field_validator("folder")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = Path(value).parts
        if not value.strip() or Path(value).is_absolute() or ".." in parts:
            raise _Problems([Problem("", "must be a folder inside the workspace",
                                     'write a relative name such as "uploads"')])
        return value


ChatTool = Literal["react", "send_file", "schedule"]
CHAT_TOOLS: tuple[ChatTool, ...] = ("react", "send_file", "schedule")


class ChatToolsConfig(_Section):
    """Tools lettabot gives the agent to act in the chat (they run in lettabot itself)."""

    enabled: list[ChatTool] = Field(default_factory=lambda: list(CHAT_TOOLS))
    """``react`` to the message, ``send_file`` (a file of the workspace) to the thread,
    ``schedule`` a prompt for later (with ``list_schedules`` / ``cancel_schedule``)."""
    send_max_bytes: int = Field(default=10_000_000, ge=1)
    """Larger files are not sent."""
    reply_as_file_after: int = Field(default=4, ge=1, le=50)
    """A reply that would take more messages than this is sent as a file too (the first
    messages are kept), where the platform takes files."""
    schedules_per_scope: int = Field(default=10, ge=0, le=1000)
    """At most this many schedules per thread (config ``[[schedules]]`` do not count)."""
    schedules_per_bot: int = Field(default=200, ge=0, le=100_000)
    """At most this many schedules in all threads together (config ones do not count)."""
    min_interval_minutes: int = Field(default=10, ge=1)
    """A repeating schedule the agent creates runs at most this often."""
    min_delay_minutes: float = Field(default=1.0, ge=0)
    """A one-off schedule the agent creates runs no sooner than this after it is made."""


class ScheduleConfig(_Section):
    """A prompt the bot runs on a schedule (``[[schedules]]``), as if sent in ``target``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cron: str
    """Five fields (minute hour day month weekday), e.g. ``0 9 * * 1-5``."""
    timezone: str = "UTC"
    target: str
    """Where it runs: a scope key, e.g. ``slack:T0123:C0456`` (a channel),
    ``slack:T0123:C0456:1700000000.000100`` (a thread), ``discord:123:456``."""
    prompt: str = Field(min_length=1)
    as_user: str = ""
    """Whose message it is (approvals treat it as theirs); empty: nobody's, so only
    ``access.approvers`` can approve its tool calls."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if (why := check_cron(self.cron)) is not None:
            problems.append(Problem("cron", why, 'write five fields, e.g. "0 9 * * 1-5"'))
        if (why := check_timezone(self.timezone)) is not None:
            problems.append(Problem("timezone", why, 'write an IANA name, e.g. "Europe/Berlin"'))
        try:
            Scope.from_key(self.target)
        except ValueError:
            problems.append(Problem("target", "is not a scope key",
                                    'write adapter:workspace:channel[:thread], e.g. '
                                    '"slack:T0123:C0456"'))
        if problems:
            raise _Problems(problems)
        return self


class TurnsConfig(_Section):
    """Deadlines of a turn."""

    thread_context: int = Field(default=20, ge=0, le=200)
    """When the bot is first asked in the middle of a thread, give the agent up to this many
    of the thread's earlier messages (once, as its conversation starts). 0: none."""
    stop_button_after: float = Field(default=5.0, ge=0)
    """A turn still running after this many seconds shows a Stop button (where the
    platform has buttons; the asker or an approver may click it). 0: never."""
    stall_seconds: float = Field(default=120.0, gt=0)
    """A turn with no progress (no output from the agent) for this long is ended and the
    chat told; the clock pauses while an approval prompt waits for a click."""


class RemoteServer(_Section):
    """An App Server on another machine (``letta server --listen``)."""

    url: str
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if not re.match(r"^wss?://[^/]+", self.url):
            problems.append(
                Problem("url", "is not a WebSocket URL", "write ws://host:port or wss://host:port")
            )
        else:
            host = re.sub(r"^wss?://", "", self.url).split("/")[0].rsplit(":", 1)[0]
            if not is_loopback(host) and is_blank(self.token):
                problems.append(
                    Problem(
                        "token",
                        "is required for an App Server that is not on this machine",
                        "set it to the capability token the server was started with "
                        "(--ws-auth capability-token --ws-token-file ...)",
                    )
                )
        return self.raise_problems(problems)


class ServersConfig(_Section):
    """App Servers: local processes started by lettabot plus remote ones by URL."""

    count: int = Field(default=1, ge=0, le=64)
    urls: list[RemoteServer] = Field(default_factory=list)
    max_concurrent_turns: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.count == 0 and not self.urls:
            return self.raise_problems(
                [Problem("count", "is 0 and no urls are given", "set count >= 1 or list urls")]
            )
        return self


class HealthConfig(_Section):
    """The operations endpoint: ``/healthz``, ``/readyz``, ``/metrics`` (see docs/operate.md).
    Off unless ``port`` is set (or ``lettabot run --health-port``)."""

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"
    """``0.0.0.0`` in a container, so the orchestrator's probes reach it."""


class StoreConfig(_Section):
    """Where routes, approvals and dedupe ids are kept. Empty: a SQLite file in data_dir."""

    url: str | None = Field(default=None, repr=False)
    migrate_on_start: bool = True
    """Bring the schema up to date when lettabot starts (under a lock, so replicas migrate
    once). ``false``: refuse to start on an old schema; an admin runs `lettabot db upgrade`."""

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str | None) -> str | None:
        if value:
            try:
                normalize_url(value)
            except StoreError as exc:
                what, _, fix = str(exc).partition(" — ")
                raise _Problems([Problem("", what, fix or "fix the URL")]) from None
        return value


class SandboxConfig(_Section):
    """Where the agent's tools run (see docs/security.md): the CLI in a bubblewrap sandbox
    that holds no secret, and each shell command in a second one that sees only its
    scope's folder."""

    mode: Literal["bwrap", "off"] = "bwrap"
    """``off``: the CLI and its tools run as lettabot's user with everything it can read
    (the approval guard is then the only line; warned at every start)."""
    network: Literal["none", "host"] = "none"
    """Shell commands' network: ``none`` (their own empty network namespace) or ``host``."""
    timeout_seconds: int = Field(default=600, ge=1)
    """A shell command is killed after this long."""
    memory_mb: int = Field(default=4096, ge=64)
    """Address-space limit of a shell command's processes."""
    max_processes: int = Field(default=512, ge=8)
    """Processes and threads of lettabot's user a shell command may reach (RLIMIT_NPROC)."""
    max_file_mb: int = Field(default=1024, ge=1)
    """The largest file a shell command may write."""


Role = Literal["ingress", "worker"]
ROLES: tuple[Role, ...] = ("ingress", "worker")


class ClusterConfig(_Section):
    """Several lettabot replicas on one PostgreSQL store (see docs/scaling.md)."""

    enabled: bool = False
    """Every accepted message becomes a durable job in PostgreSQL (procrastinate) before it
    is acknowledged; a scope's jobs run one at a time, in order, on whichever replica is
    free; a dead replica's job is taken over. Needs ``store.url`` on PostgreSQL."""
    replica: str = ""
    """This replica's name in logs and job records (default: host name and process id)."""
    roles: list[Role] = Field(default_factory=lambda: list(ROLES))
    """``ingress``: run the adapters (receive, check access, dedupe, enqueue); ``worker``:
    run turns from the inbox. A replica with only ``worker`` still answers in chat
    through the platforms' APIs."""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """How often a worker says it is alive."""
    takeover_seconds: float = Field(default=30.0, gt=0)
    """A job whose worker has not said so for this long is given to another replica (its
    thread is told). Much more than ``heartbeat_seconds``."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.takeover_seconds < 3 * self.heartbeat_seconds:
            raise _Problems([Problem("takeover_seconds", "is less than 3 heartbeats",
                                     "make it at least 3 × heartbeat_seconds")])
        return self


class AdapterSettings(_Section):
    """The base of an adapter's ``[<name>]`` section.

    An adapter package provides its subclass through the entry-point group
    ``lettabot.settings`` (``slack = "lettabot_slack.settings:SlackConfig"``); the core
    composes the installed ones into :class:`Config`, so ``[slack]`` and
    ``LETTABOT_SLACK__*`` are validated like every other section (key, problem, fix), shown
    by ``check-config`` and documented in the example file, which is generated from the
    fields' docstrings and ``examples``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True,
                              use_attribute_docstrings=True)

    enabled: bool = False
    """Run this adapter."""

    public: ClassVar[bool] = True
    """Whether people other than the operator reach the bot through it (a team chat): with
    such an adapter enabled, ``lettabot run`` refuses to start unless ``[access]`` says who
    may talk. The local web chat is not public."""

    def is_enabled(self, config: Config) -> bool:
        """Whether ``lettabot run`` starts it (``config``: the whole config)."""
        return bool(self.enabled)

    def listens(self) -> list[tuple[str, str, int]]:
        """``(port key, host, port)`` it will listen on, checked before ``lettabot run``
        starts anything slow. By default: ``host``/``port`` and, unless ``mode`` is not
        ``"http"``, ``http_host``/``http_port``, where the section has them."""
        out = []
        for host_key, port_key in (("host", "port"), ("http_host", "http_port")):
            host, port = getattr(self, host_key, None), getattr(self, port_key, None)
            if port_key == "http_port" and getattr(self, "mode", "http") != "http":
                continue
            if isinstance(host, str) and isinstance(port, int) and port:
                out.append((port_key, host, port))
        return out


class ChatAdapterSettings(AdapterSettings):
    """What every team-chat adapter shares."""

    allow_bots: bool = False
    """Answer messages posted by other bots (loops are your problem then)."""
    unauthorized_reply: str = "Sorry, you are not allowed to use this bot."
    """Sent to a user who is not in access.allowed_users. Empty string: stay silent."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/lettabot``, else ``~/.local/share/lettabot``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "lettabot"


# the whole config ------------------------------------------------------------


class _KnownKeysDotEnv(DotEnvSettingsSource):
    """``.env`` without complaints about its unrelated keys (e.g. ``OPENAI_API_KEY``)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


class RouteRule(_Section):
    """Which scopes an agent serves: every field given must match (unset: any).

    ``workspace`` is the Slack team / Discord guild id, ``channel`` the channel id (a
    thread's parent channel), ``dm`` true for direct messages only (false: never DMs).
    """

    adapter: str | None = None
    workspace: str | None = None
    channel: str | None = None
    dm: bool | None = None

    @field_validator("workspace", "channel", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        # Discord ids are numbers in TOML; scopes carry them as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.specificity == 0:
            return self.raise_problems([Problem("", "is a rule that matches everything",
                                        "give adapter, workspace, channel or dm, or mark the "
                                        "agent default = true instead")])
        return self

    @property
    def specificity(self) -> int:
        return sum(v is not None for v in (self.adapter, self.workspace, self.channel, self.dm))

    def matches(self, adapter: str, workspace: str, channel: str, is_dm: bool) -> bool:
        return ((self.adapter is None or self.adapter == adapter)
                and (self.workspace is None or self.workspace == workspace)
                and (self.channel is None or self.channel == channel)
                and (self.dm is None or self.dm == is_dm))

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("adapter", self.adapter), ("workspace", self.workspace),
                                         ("channel", self.channel)) if v is not None]
        if self.dm is not None:
            parts.append("DMs" if self.dm else "not DMs")
        return " ".join(parts)


class AgentConfig(_Section):
    """One agent behind the bot (``[[agents]]``). Unset settings come from ``[letta]``
    (model, prompt, persona, tools, mode) and ``[access]`` (approvers)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    agent_id: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    persona: str | None = None
    permission_mode: PermissionMode | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    approvers: list[str] | None = None
    """Who may approve this agent's tool calls (and so may talk where it serves)."""
    default: bool = False
    """Serves every scope no rule of any agent matches."""
    routes: list[RouteRule] = Field(default_factory=list)

    _legacy_mode = field_validator("permission_mode", mode="before")(_legacy_mode)
    _ids_as_text = field_validator("approvers", mode="before")(_ids_as_text)

    @model_validator(mode="after")
    def _check(self) -> Self:
        return self.raise_problems(_agent_problems(self.agent_id, self.allowed_tools or [],
                                           self.disallowed_tools or []))

    def resolved(self, letta: LettaConfig) -> LettaConfig:
        """``[letta]`` with this agent's own settings over it."""
        own = {k: getattr(self, k) for k in ("agent_id", "model", "system_prompt", "persona",
                                            "permission_mode", "allowed_tools",
                                            "disallowed_tools")
               if getattr(self, k) is not None}
        if self.agent_id is None:
            own["agent_id"] = None  # [letta].agent_id belongs to the implicit single agent
        return letta.model_copy(update=own)


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

    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
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
    agents: list[AgentConfig] = Field(default_factory=list)
    """Several agents behind one bot (``[[agents]]``); none: one agent from ``[letta]``."""
    adapters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Free-form settings of adapters that provide no settings model: ``[adapters.teams]``."""
    # ... and one field per installed adapter's section ([web], [slack], [discord], ...),
    # added by _composed() from the `lettabot.settings` entry points.

    _config_file: Path | None = PrivateAttr(default=None)

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Config(...) builds the class composed with the installed adapters' sections.
        target = _composed() if cls is Config else cls
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
            raise _Problems([Problem("cluster.enabled", "needs the store on PostgreSQL",
                                     'set store.url = "postgresql+asyncpg://user@host/db"')])
        return self

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
            raise _Problems(problems)
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
        if not self.access.approvers and self.access.self_approve:
            out.append("access.self_approve = true and no access.approvers: whoever starts a "
                       "turn approves its own tool calls")
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
        lines += _toml_lines(top)
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                lines += ["", f"[{name}]", *_toml_lines(_plain(value))]
        resolved = {"store.url (effective)": _mask_url(self.store_url)}
        lines += ["", *(f"# {k} = {v}" for k, v in resolved.items())]
        for name, settings in self.adapters.items():
            lines += ["", f"[adapters.{name}]", *_toml_lines(_mask_unknown(settings))]
        return "\n".join(lines) + "\n"

    def __repr_args__(self) -> Any:
        # Third-party adapter tables are free-form: hide them from repr (may hold tokens).
        return [(k, v) for k, v in super().__repr_args__() if k != "adapters"]


# describe() helpers ----------------------------------------------------------

_MASK = "********"
_SECRETISH = re.compile(r"(token|secret|password|api_key|key)$", re.IGNORECASE)


def _mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", rf"\1{_MASK}@", url)


def _plain(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out[name] = _MASK if value.get_secret_value() else ""
        elif isinstance(value, BaseModel):
            out[name] = _plain(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[name] = [_plain(v) for v in value]
        elif isinstance(value, Path):
            out[name] = str(value)
        elif name == "url" and isinstance(value, str):
            out[name] = _mask_url(value)
        elif name == "env" and isinstance(value, dict):
            out[name] = {k: _MASK if v else "" for k, v in value.items()}  # keys, mostly
        elif isinstance(value, dict):
            out[name] = _mask_unknown(value)
        else:
            out[name] = value
    return out


def _mask_unknown(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (_MASK if _SECRETISH.search(k) and v else v) if not isinstance(v, Mapping)
        else _mask_unknown(v)
        for k, v in settings.items()
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_value(str(value))


def _toml_lines(values: Mapping[str, Any]) -> list[str]:
    return [
        f"# {k} = (not set)" if v is None else f"{k} = {_toml_value(v)}" for k, v in values.items()
    ]


# loading -----------------------------------------------------------------------


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


def _describe_error(err: Mapping[str, Any]) -> list[Problem]:
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _Problems):
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
            close = difflib.get_close_matches(key, list(_composed().model_fields), n=1)
            if close:
                return [Problem(key, "unknown key", f"did you mean [{close[0]}]? ({EVERY_KEY})")]
            return [Problem(key, "unknown key: no installed adapter reads this section",
                            f"install the adapter that does (pip install lettabot-{key} "
                            "for a built-in one), or remove the section")]
        if (near := _close_key(key)) is not None:
            return [Problem(key, "unknown key",
                            f"did you mean {near.rsplit('.', 1)[-1]}? ({EVERY_KEY})")]
        return [Problem(key, "unknown key", f"remove it or fix its spelling ({EVERY_KEY})")]
    if kind == "missing":
        return [Problem(key, "is required", f"set it in the file or as {env_var(key)}")]
    what = str(err["msg"])
    what = what[:1].lower() + what[1:]
    what = what.removeprefix("value error, ")
    secret = bool(_SECRETISH.search(str(loc[-1]))) if loc else False
    if "input" in err and not secret and not isinstance(err["input"], dict | list):
        what += f" (got {err['input']!r})"
    fix = _FIXES.get(kind, f"see this key's comment ({EVERY_KEY})")
    return [Problem(key, what, fix)]


def _read_toml(path: Path) -> dict[str, Any]:
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


def _resolve_path(explicit: str | Path | None) -> Path | None:
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


_NOT_SETTINGS = {CONFIG_ENV, "LETTABOT_SDK_TRANSPORT"}
"""``LETTABOT_*`` variables that are read elsewhere, not settings."""

FOREIGN_NAMES = {
    "SLACK_BOT_TOKEN": "slack.bot_token",
    "SLACK_APP_TOKEN": "slack.app_token",
    "SLACK_SIGNING_SECRET": "slack.signing_secret",
    "DISCORD_TOKEN": "discord.token",
    "DISCORD_BOT_TOKEN": "discord.token",
}
"""The names other tools (slack-bolt's examples, discord.py's) use, and the key they mean."""


@dataclass(frozen=True)
class _Var:
    name: str  # as written
    value: str
    where: str  # "the environment variable X" / "X in .env"


def _variables(dotenv: Path | None) -> dict[str, _Var]:
    """Every variable lettabot could read, by upper-case name: the environment over ``.env``."""
    out: dict[str, _Var] = {}
    if dotenv is not None and dotenv.is_file():
        for name, value in dotenv_values(dotenv).items():
            if name:
                out[name.upper()] = _Var(name, value or "", f"{name} in {dotenv}")
    for name, value in os.environ.items():
        out[name.upper()] = _Var(name, value, f"the environment variable {name}")
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _json_kind(annotation: Any) -> str | None:
    """``"list"`` or ``"object"`` for a field the environment gives as JSON, else None."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        origin = getattr(candidate, "__origin__", candidate)
        if origin in (list, tuple, set):
            return "list"
        if origin is dict or _model_of(candidate) is not None:
            return "object"
    return None


def _setting_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key (sections and their keys) a variable may name."""
    out = []
    for name, field in (model or _composed()).model_fields.items():
        key = prefix + name
        out.append(key)
        sub = _model_of(field.annotation)
        if sub is not None and _json_kind(field.annotation) == "object":
            out += _setting_keys(sub, key + ".")
    return out


def _squash(text: str) -> str:
    return text.replace("_", "").replace(".", "").upper()


def _close_key(key: str) -> str | None:
    """The real dotted key ``key`` most likely meant (a typo, or ``_`` for ``__``)."""
    keys = _setting_keys()
    same = [k for k in keys if _squash(k) == _squash(key)]
    if same:
        return same[0]
    parent = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(key, siblings or keys, n=1, cutoff=0.75)
    return close[0] if close else None


def _field_at(key: str) -> tuple[Any, bool]:
    """(the annotation at dotted ``key``, whether every part of it names a field); a key
    below a dict-valued field (``letta.env.X``) counts as found."""
    model: type[BaseModel] | None = _composed()
    annotation: Any = None
    for part in key.split("."):
        if model is None:
            return annotation, _json_kind(annotation) == "object"
        field = model.model_fields.get(part)
        if field is None:
            return None, False
        annotation = field.annotation
        model = _model_of(annotation) if _json_kind(annotation) == "object" else None
    return annotation, True


def _json_fix(var: _Var, kind: str, annotation: Any) -> str:
    if kind == "list" and _model_of(getattr(annotation, "__args__", (None,))[0]) is None:
        items = [i.strip().strip("'\"") for i in var.value.strip().strip("[]").split(",")]
        example = json.dumps([i for i in items if i] or ["slack:U0123ABCD"])
        return f"write {var.name}='{example}' (lists are JSON in the environment and .env)"
    if kind == "list":
        return (f"write a JSON list of tables, e.g. {var.name}='[{{\"key\": \"value\"}}]', "
                "or set it in the TOML file")
    return (f"write a JSON object, e.g. {var.name}='{{\"key\": \"value\"}}', or set it in "
            "the TOML file")


def _check_variables(dotenv: Path | None,
                     data: Mapping[str, Any]) -> tuple[list[Problem], list[str]]:
    """Problems with ``LETTABOT_*`` values pydantic-settings would only raise as a traceback
    (a list or table that is not JSON), and warnings about variables lettabot ignores:
    unknown ``LETTABOT_*`` names and the names other tools use (``SLACK_BOT_TOKEN``)."""
    variables = _variables(dotenv)
    problems: list[Problem] = []
    warnings: list[str] = []
    sections = _composed().model_fields
    for upper, var in sorted(variables.items()):
        if upper in FOREIGN_NAMES:
            key = FOREIGN_NAMES[upper]
            section, _, leaf = key.partition(".")
            if (section in sections and env_var(key) not in variables
                    and leaf not in (data.get(section) or {})):
                warnings.append(f"{var.where} is set, but lettabot reads {env_var(key)} "
                                f"({key}): did you mean {env_var(key)}?")
            continue
        if (not upper.startswith(ENV_PREFIX) or upper in _NOT_SETTINGS
                or upper.startswith(ENV_PREFIX + "TEST_")):
            continue
        key = upper.removeprefix(ENV_PREFIX).lower().replace("__", ".")
        annotation, found = _field_at(key)
        if not found:
            if key.partition(".")[0] in sections and "." in key:
                continue  # an unknown key in a known section: validation names it (an error)
            near = _close_key(key)
            hint = (f"did you mean {env_var(near)}?" if near else
                    f"spelling? LETTABOT_<SECTION>__<KEY>; {EVERY_KEY}")
            warnings.append(f"{var.where} is set but is not a lettabot setting, so it is "
                            f"ignored: {hint}")
            continue
        kind = _json_kind(annotation)
        if kind is None or not var.value.strip():
            continue
        try:
            parsed = json.loads(var.value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list if kind == "list" else dict):
            problems.append(Problem(key, f"is not a JSON {kind} (from {var.where})",
                                    _json_fix(var, kind, annotation)))
    return problems, warnings


def _blame(problem: Problem, dotenv: Path | None) -> Problem:
    """Say where a bad value came from when it was not the TOML file: the environment
    (which wins) or the ``.env`` file; a misspelt variable's fix names the right one."""
    key = problem.key.split("[")[0]
    if not key or "/" in key:
        return problem
    var = _variables(dotenv).get(env_var(key))
    if var is None:
        return problem
    fix = problem.fix
    if problem.what == "unknown key" and (near := _close_key(key)) is not None:
        fix = f"did you mean {env_var(near)}? ({EVERY_KEY})"
    return Problem(problem.key, f"{problem.what} (from {var.where})", fix)


SETTINGS_GROUP = "lettabot.settings"
"""Entry points naming each adapter's :class:`AdapterSettings` subclass, by adapter name."""


@functools.cache
def _composed() -> type[Config]:
    """:class:`Config` with one field per installed adapter's section."""
    fields: dict[str, Any] = {}
    for ep in sorted(entry_points(group=SETTINGS_GROUP), key=lambda e: e.name):
        if ep.name in Config.model_fields or ep.name in fields:
            continue  # a core section, or a second package claiming the name
        model = ep.load()
        if not (isinstance(model, type) and issubclass(model, AdapterSettings)):
            raise TypeError(f"the {SETTINGS_GROUP} entry point {ep.name} = {ep.value} is "
                            "not an AdapterSettings subclass")
        fields[ep.name] = (model, Field(default_factory=model))
    composed = create_model("Config", __base__=Config, __module__=__name__, **fields)
    composed.__doc__ = Config.__doc__
    return cast(type[Config], composed)


def adapter_section_models() -> dict[str, type[AdapterSettings]]:
    """The installed adapters' section models, by adapter name."""
    return {name: cast(type[AdapterSettings], field.annotation)
            for name, field in _composed().model_fields.items()
            if isinstance(field.annotation, type)
            and issubclass(field.annotation, AdapterSettings)}


GENERATED_BEGIN = ("# ---- adapter sections: generated from the adapters' settings models by "
                   "`lettabot example-config` ----")
GENERATED_END = "# ---- end of the generated adapter sections ----"


def section_example(name: str, model: type[AdapterSettings]) -> str:
    """``[name]`` with every key commented out: the field's docstring, then ``key =`` its
    first example (else its default)."""
    lines = [f"[{name}]"]
    for key, field in model.model_fields.items():
        doc = " ".join(line.strip() for line in (field.description or "").splitlines())
        if doc:
            lines += textwrap.wrap(doc, width=92, initial_indent="# ",
                                   subsequent_indent="# ")
        if field.examples:
            value = field.examples[0]
        else:
            value = field.get_default(call_default_factory=True)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        lines.append(f"# {key} = {_toml_value(value)}" if value is not None
                     else f"# {key} =")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def adapter_examples() -> str:
    """Every installed adapter's section, between the markers the example file keeps."""
    parts = [section_example(name, model)
             for name, model in sorted(adapter_section_models().items())]
    return "\n".join([GENERATED_BEGIN, "", "\n".join(parts), GENERATED_END]) + "\n"


def load_config(path: str | Path | None = None, *, env_file: str | Path | None = ".env") -> Config:
    """Read the config: ``path``, else ``$LETTABOT_CONFIG``, else ``./lettabot.toml`` if it
    exists (else defaults), then apply ``.env`` and ``LETTABOT_*`` environment overrides.

    Relative ``data_dir`` and ``letta.cwd`` are resolved against the config file's folder
    (the working directory when there is no file). Raises :class:`ConfigError` listing every
    problem.
    """
    file = _resolve_path(path)
    data = _read_toml(file) if file else {}
    dotenv = Path(env_file) if env_file is not None else None
    source = str(file) if file else None
    env_problems, env_warnings = _check_variables(dotenv, data)
    try:
        config = Config(_env_file=dotenv, **data)
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in _describe_error(err)]
        raise ConfigError([*env_problems, *(_blame(p, dotenv) for p in problems)],
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


EXAMPLE_HEADER = """\
# lettabot configuration — every key, with its default (or an example value), generated
# from lettabot's settings models by `lettabot example-config`.
#
# Save as ./lettabot.toml (or pass --config PATH, or set LETTABOT_CONFIG) and uncomment what
# you need. Every key can be set from the environment or .env instead:
# LETTABOT_<SECTION>__<KEY>, e.g. LETTABOT_SLACK__BOT_TOKEN=xoxb-... (lists and tables are
# JSON there). Precedence: environment, then .env, then this file, then defaults.
# `lettabot check-config` shows what would run; --verbose the effective config.
"""


def _comment(doc: str | None) -> list[str]:
    text = " ".join(line.strip() for line in (doc or "").splitlines()).replace("``", "`")
    return textwrap.wrap(text, width=92, initial_indent="# ",
                         subsequent_indent="# ") if text else []


def _example_keys(model: type[BaseModel], skip: Iterable[str] = ()) -> list[str]:
    """``model``'s plain keys, each commented out after its docstring."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        if _json_kind(field.annotation) is not None and _model_of(field.annotation):
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
        lines.append(f"# {key} = {_toml_value(value)}" if value is not None
                     else f"# {key} =")
        lines.append("")
    return lines


def _example_tables(model: type[BaseModel], path: str, skip: Iterable[str] = ()) -> list[str]:
    """The tables under ``model`` (``[section]`` / ``# [[list]]``), each with its keys."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        sub = _model_of(field.annotation)
        if sub is None or _json_kind(field.annotation) is None:
            continue
        name = f"{path}.{key}" if path else key
        many = _json_kind(field.annotation) == "list"
        lines += _comment(field.description)
        lines += [f"# [[{name}]]" if many else f"[{name}]", *_comment(sub.__doc__)]
        lines += _example_keys(sub)
        lines += _example_tables(sub, name)
    return lines


def full_example() -> str:
    """The whole config, every key commented: core sections, then the installed adapters'
    (what ``lettabot example-config`` prints)."""
    adapters = set(adapter_section_models())
    lines = [EXAMPLE_HEADER, *_example_keys(_composed(), adapters),
             *_example_tables(_composed(), "", adapters)]
    return "\n".join(lines).rstrip() + "\n\n" + adapter_examples()
