"""The core config sections: ``[letta]`` (and ``[[letta.providers]]``), ``[access]``,
``[approvals]``, ``[files]``, ``[chat_tools]``, ``[[schedules]]``, ``[turns]``,
``[servers]``, ``[health]``, ``[store]``, ``[sandbox]``, ``[cluster]`` and
``[[agents]]``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Self

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator, model_validator

from lettabot.runtime.adapter import Scope
from lettabot.runtime.config.base import Section, is_blank, is_loopback
from lettabot.runtime.config.mcp import McpServerConfig, check_unique
from lettabot.runtime.config.problems import Problem, ValidationProblems
from lettabot.runtime.schedules import check_cron, check_timezone
from lettabot.runtime.store import StoreError, normalize_url

PermissionMode = Literal["standard", "acceptEdits", "strict", "unrestricted"]
_LEGACY_MODES = {"default": "standard", "bypassPermissions": "unrestricted"}


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


PROVIDER_ALIASES = {"gemini": "google", "bedrock": "amazon-bedrock", "claude": "anthropic",
                    "grok": "xai", "llamacpp": "llama-cpp"}


class ProviderConfig(Section):
    """A model provider ``lettabot run`` connects in its Letta home at start (what
    ``letta connect`` does), so a container needs no manual step. ``type`` is a provider id
    the CLI lists (``lettabot check-config`` shows them): anthropic, openai,
    openai-compatible, google (gemini), openrouter, amazon-bedrock, ollama, groq, ..."""

    type: str = Field(examples=["anthropic"])
    """The provider id. Also taken: ``gemini`` (google), ``claude`` (anthropic), ``bedrock``
    (amazon-bedrock), ``grok`` (xai), ``llamacpp`` (llama-cpp)."""
    api_key: SecretStr | None = None
    """The key itself (prefer ``api_key_env``: the file then holds no secret)."""
    api_key_env: str | None = Field(default=None, examples=["ANTHROPIC_API_KEY"])
    """The name of an environment variable (or ``.env`` entry) holding the key, e.g.
    ``ANTHROPIC_API_KEY``. It is read by lettabot and never passed to the CLI's tools."""
    base_url: str | None = Field(default=None, examples=["http://127.0.0.1:11434/v1"])
    """For openai-compatible, ollama, lmstudio, llama-cpp (``http://host:port/v1``)."""
    name: str | None = Field(default=None, examples=["work"])
    """A second connection of the same type under its own name (CLI default: the type)."""
    auth_method: str | None = Field(default=None, examples=["iam"])
    """amazon-bedrock: ``iam`` or ``profile``."""
    fields: dict[str, str] = Field(default_factory=dict, examples=[{"region": "us-east-1"}])
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


class LettaConfig(Section):
    """How conversations are run: which CLI, backend, agent, model and tool permissions."""

    cli_path: str | None = Field(default=None, examples=["letta"])
    """The ``letta`` command (Letta Code CLI). Unset: ``letta`` on PATH."""
    backend: Literal["local", "cloud"] = "local"
    """Where agents live: ``local`` (on this machine's disk, no account) or ``cloud`` (Letta
    Cloud, or a self-hosted Letta server given by ``base_url``)."""
    base_url: str | None = Field(default=None, examples=["https://letta.example.com"])
    """A self-hosted Letta server for backend ``cloud`` (sets ``LETTA_BASE_URL`` for the
    CLI). Unset: Letta Cloud."""
    api_key: SecretStr | None = Field(default=None, examples=["sk-let-..."])
    """Letta API key for backend ``cloud`` (sets ``LETTA_API_KEY``). Prefer
    ``LETTABOT_LETTA__API_KEY``."""
    model: str | None = Field(default=None, examples=["openai/gpt-4.1"])
    """Model handle for a new agent, as listed by ``letta model list``. Unset: the CLI's
    default."""
    agent_id: str | None = None
    """An existing agent to talk as (``agent-...``); if it does not exist, lettabot stops and
    says so. Unset: lettabot creates one agent on first run, named ``agent_name``, and
    remembers its id in the store."""
    agent_name: str = "lettabot"
    """Name of the agent lettabot creates when ``agent_id`` is not set."""
    permission_mode: PermissionMode = "standard"
    """When tools ask before running (lettabot decides; see docs/security.md): ``standard``
    (reads inside ``cwd`` and saving the agent's own memory run, everything else asks),
    ``acceptEdits`` (standard, plus file edits inside ``cwd``), ``strict`` (ask for
    everything) or ``unrestricted`` (never ask: anyone who can message the bot can run
    commands on this machine). Legacy names: ``default``, ``bypassPermissions``."""
    cwd: Path | None = Field(default=None, examples=["workspace"])
    """The folder the agent's tools work in, relative to the config file's folder. Unset:
    ``<data_dir>/workspace``."""
    allowed_tools: list[str] = Field(default_factory=list,
                                     examples=[["Read", "Grep", "Glob", "Bash"]])
    """Only these tools may run (whatever anyone clicks). Empty: no allow-list."""
    disallowed_tools: list[str] = Field(default_factory=list, examples=[["WebFetch"]])
    """These tools never run, even if approved."""
    system_prompt: str | None = Field(
        default=None, examples=["You are a helpful teammate in our chat. Keep answers short."])
    """System prompt of a new agent (replaces the CLI's default one)."""
    persona: str | None = Field(default=None,
                                examples=["I am lettabot, the team's assistant."])
    """The persona memory block of a new agent."""
    env: dict[str, str] = Field(default_factory=dict, repr=False,
                                examples=[{"OPENAI_API_KEY": "sk-..."}])
    """Extra environment for the CLI (e.g. a provider key). The CLI gets only PATH, HOME,
    locale, proxy and ``LETTA_*`` variables of lettabot's own environment; whatever is here
    can be read by an approved tool call."""
    providers: list[ProviderConfig] = Field(default_factory=list)
    """``[[letta.providers]]``: model providers connected at start (local backend)."""
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    """``[[letta.mcp_servers]]``: MCP servers whose tools become the agent's (every agent's,
    unless an ``[[agents]]`` table lists its own)."""

    _legacy_mode = field_validator("permission_mode", mode="before")(_legacy_mode)

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _agent_problems(self.agent_id, self.allowed_tools, self.disallowed_tools)
        problems += check_unique(self.mcp_servers)
        if self.providers and self.backend == "cloud":
            problems.append(Problem(
                "providers", 'are connected in the local backend\'s home, not with backend '
                '"cloud"', "connect model providers in your Letta server or Letta Cloud "
                "(its Models page), and remove [[letta.providers]]"))
        return self.raise_problems(problems)


class AccessConfig(Section):
    """Who may talk to the bot and who may approve tool calls.

    Entries are ``<adapter>:<user id>`` (``slack:U0123``, ``discord:81234``, ``web:local``)
    or a bare user id that matches on any adapter.
    """

    allowed_users: list[str] = Field(default_factory=list,
                                     examples=[["slack:U0123ABCD", "discord:81234567890"]])
    """Who may talk to the bot. Empty: everyone who can reach it in an allowed channel.
    Approvers are always allowed."""
    approvers: list[str] = Field(default_factory=list, examples=[["slack:U0123ABCD"]])
    """Who may click Approve / Deny / Always allow. With Slack or Discord enabled,
    ``lettabot run`` refuses to start unless this or ``allowed_users`` is set (or
    ``open``)."""
    require_mention: bool = True
    """In channels, answer only messages that mention the bot. DMs, and threads the bot is
    already part of, never need a mention."""

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


class ApprovalsConfig(Section):
    """Approval buttons: how long to wait, and whether "Always allow" is offered."""

    timeout_seconds: float = Field(default=600.0, gt=0)
    """Seconds to wait for a click; then the tool call is denied and the chat says so."""
    always_allow_button: bool = True
    """Offer an "Always allow" button. A rule covers what the approver saw, in that thread
    only; ``rules`` lists them, ``rules revoke <id>`` (approvers) and ``reset`` remove
    them."""
    rule_ttl_hours: float = Field(default=24.0, gt=0)
    """How long an "Always allow" rule lasts."""
    retention_days: float = Field(default=90.0, gt=0)
    """How long decided approvals (the audit log) are kept."""


class FilesConfig(Section):
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
            raise ValidationProblems([Problem("", "must be a folder inside the workspace",
                                     'write a relative name such as "uploads"')])
        return value


ChatTool = Literal["react", "send_file", "schedule"]
CHAT_TOOLS: tuple[ChatTool, ...] = ("react", "send_file", "schedule")


class ChatToolsConfig(Section):
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


class ScheduleConfig(Section):
    """A prompt the bot runs on a schedule (``[[schedules]]``), as if sent in ``target``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["standup"])
    """Its name: letters, digits, ``_``, ``.`` and ``-``, at most 64."""
    cron: str = Field(examples=["30 9 * * 1-5"])
    """Five fields (minute hour day month weekday), e.g. ``0 9 * * 1-5``."""
    timezone: str = Field(default="UTC", examples=["Europe/Berlin"])
    """The IANA time zone ``cron`` is read in."""
    target: str = Field(examples=["slack:T0123ABCD:C0456EFGH"])
    """Where it runs: a scope key, e.g. ``slack:T0123:C0456`` (a channel),
    ``slack:T0123:C0456:1700000000.000100`` (a thread), ``discord:123:456``."""
    prompt: str = Field(min_length=1, examples=[
        "Start today's standup thread: ask everyone what they are working on."])
    """What the agent is sent, as if someone wrote it in ``target``."""
    as_user: str = Field(default="", examples=["U0123LEAD"])
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
            raise ValidationProblems(problems)
        return self


class TurnsConfig(Section):
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


def _server_problems(url: str, token: SecretStr | None) -> list[Problem]:
    """What is wrong with an App Server's URL and token."""
    if not re.match(r"^wss?://[^/]+", url):
        return [Problem("url", "is not a WebSocket URL", "write ws://host:port or wss://host:port")]
    host = re.sub(r"^wss?://", "", url).split("/")[0].rsplit(":", 1)[0]
    if not is_loopback(host) and is_blank(token):
        return [Problem("token", "is required for an App Server that is not on this machine",
                        "set it to the capability token the server was started with "
                        "(--ws-auth capability-token --ws-token-file ...)")]
    return []


class RemoteServer(Section):
    """An App Server on another machine (``letta server --listen``)."""

    url: str = Field(examples=["wss://letta-1.internal:8790"])
    """``ws://host:port`` or ``wss://host:port``."""
    token: SecretStr | None = Field(default=None, examples=["capability-token"])
    """The capability token the server was started with; required unless it is on this
    machine (loopback)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        return self.raise_problems(_server_problems(self.url, self.token))


class HostConfig(Section):
    """An App Server host (``[[hosts]]``): a ``lettabot host`` (``letta server --listen``)
    on its own Letta home that owns the local backend of the agents placed on it. Only
    agents that name it (``[[agents]] host``) run there; see docs/scaling.md."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", examples=["host-a"])
    """Its name, which ``[[agents]] host`` refers to: lower-case letters, digits, ``_``
    and ``-``."""
    url: str = Field(examples=["wss://lettabot-host-0.lettabot-host:8790"])
    """Where its App Server listens: ``ws://host:port`` or ``wss://host:port``."""
    token: SecretStr | None = Field(default=None, examples=["capability-token"])
    """The capability token it was started with (``lettabot host --token-file``, or
    ``$LETTABOT_HOST_TOKEN``); required unless it is on this machine (loopback)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        return self.raise_problems(_server_problems(self.url, self.token))


class ServersConfig(Section):
    """App Servers: local processes started by lettabot plus remote ones by URL."""

    count: int = Field(default=1, ge=0, le=64)
    """How many local App Servers (``letta server --listen`` processes) to start. Each holds
    many conversations; a conversation always runs on the same one. 0 needs ``urls``, unless
    every agent has a ``host``."""
    urls: list[RemoteServer] = Field(default_factory=list)
    """App Servers on other machines, used beside the local ones (conversations are spread
    over all of them). They must serve the same agents (one Letta backend)."""
    max_concurrent_turns: int = Field(default=8, ge=1)
    """Turns running at once across all conversations; more are queued fairly, never
    dropped."""



class HealthConfig(Section):
    """The operations endpoint: ``/healthz``, ``/readyz``, ``/metrics`` (see docs/operate.md).
    Off unless ``port`` is set (or ``lettabot run --health-port``)."""

    port: int | None = Field(default=None, ge=0, le=65535, examples=[8080])
    """The port it listens on. Unset: off."""
    host: str = "127.0.0.1"
    """``0.0.0.0`` in a container, so the orchestrator's probes reach it."""


class StoreConfig(Section):
    """Where routes, approvals and dedupe ids are kept. Empty: a SQLite file in data_dir."""

    url: str | None = Field(default=None, repr=False,
                            examples=["sqlite+aiosqlite:////var/lib/lettabot/lettabot.db"])
    """A SQLite or PostgreSQL URL, e.g.
    ``postgresql+asyncpg://user:password@host:5432/lettabot``. Unset:
    ``<data_dir>/lettabot.db``."""
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
                raise ValidationProblems([Problem("", what, fix or "fix the URL")]) from None
        return value


class SandboxConfig(Section):
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


class ClusterConfig(Section):
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
            raise ValidationProblems([Problem("takeover_seconds", "is less than 3 heartbeats",
                                     "make it at least 3 × heartbeat_seconds")])
        return self



class RouteRule(Section):
    """Which scopes an agent serves: every field given must match (unset: any).

    ``workspace`` is the Slack team / Discord guild id, ``channel`` the channel id (a
    thread's parent channel), ``dm`` true for direct messages only (false: never DMs).
    """

    adapter: str | None = Field(default=None, examples=["slack"])
    """The adapter's name."""
    workspace: str | None = Field(default=None, examples=["T0123ABCD"])
    """The Slack team / Discord guild id."""
    channel: str | None = Field(default=None, examples=["C0OPS"])
    """The channel id (a thread's: its parent channel)."""
    dm: bool | None = None
    """``true``: direct messages only; ``false``: never direct messages."""

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


class AgentConfig(Section):
    """One agent behind the bot (``[[agents]]``). Unset settings come from ``[letta]``
    (model, prompt, persona, tools, mode) and ``[access]`` (approvers)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", examples=["ops"])
    """Its name: lower-case letters, digits, ``_`` and ``-``. Name the default agent
    ``default`` to keep the agent a single-agent bot created before."""
    agent_id: str | None = None
    """An existing agent to talk as. Unset: lettabot creates one on first run."""
    model: str | None = Field(default=None, examples=["openai/gpt-4.1"])
    """Unset: ``letta.model``."""
    system_prompt: str | None = None
    """Unset: ``letta.system_prompt``."""
    persona: str | None = None
    """Unset: ``letta.persona``."""
    permission_mode: PermissionMode | None = Field(default=None, examples=["strict"])
    """Unset: ``letta.permission_mode``."""
    allowed_tools: list[str] | None = None
    """Unset: ``letta.allowed_tools``."""
    disallowed_tools: list[str] | None = None
    """Unset: ``letta.disallowed_tools``."""
    mcp_servers: list[McpServerConfig] | None = None
    """``[[agents.mcp_servers]]``: this agent's MCP servers. Unset: ``letta.mcp_servers``;
    ``[]``: none."""
    approvers: list[str] | None = Field(default=None, examples=[["slack:U0OPSLEAD"]])
    """Who may approve this agent's tool calls (and so may talk where it serves)."""
    default: bool = False
    """Serves every scope no rule of any agent matches."""
    host: str | None = None
    """The ``[[hosts]]`` entry (by name) whose App Server owns this agent: the agent is
    made and all its conversations run there only; while it is unreachable its messages
    wait. Unset: the agent's conversations go to ``[servers]``."""
    routes: list[RouteRule] = Field(default_factory=list)
    """The scopes it serves (``[[agents.routes]]``). The most specific rule that matches,
    of any agent, wins; a conversation keeps its agent until ``reset``."""

    _legacy_mode = field_validator("permission_mode", mode="before")(_legacy_mode)
    _ids_as_text = field_validator("approvers", mode="before")(_ids_as_text)

    @model_validator(mode="after")
    def _check(self) -> Self:
        return self.raise_problems(_agent_problems(self.agent_id, self.allowed_tools or [],
                                           self.disallowed_tools or [])
                                   + check_unique(self.mcp_servers or []))

    def resolved(self, letta: LettaConfig) -> LettaConfig:
        """``[letta]`` with this agent's own settings over it."""
        own = {k: getattr(self, k) for k in ("agent_id", "model", "system_prompt", "persona",
                                            "permission_mode", "allowed_tools",
                                            "disallowed_tools", "mcp_servers")
               if getattr(self, k) is not None}
        if self.agent_id is None:
            own["agent_id"] = None  # [letta].agent_id belongs to the implicit single agent
        return letta.model_copy(update=own)
