"""Config: the example file, env overrides, secrets masking, and errors that name the fix."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lettabot.runtime.config import (
    Config,
    ConfigError,
    adapter_section_models,
    full_example,
    load_config,
)
from lettabot.runtime.config.keys import json_kind, model_of

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "lettabot.example.toml"
SECRET = "xoxb-0000-TOPSECRET-VALUE"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LETTABOT_* from the outside, an empty working directory, a temp XDG data home."""
    for name in list(os.environ):
        if name.upper().startswith("LETTABOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return exc.value.problems


def uncommented(text: str) -> str:
    """``text`` with every table header (``# [[agents]]`` too) and every key that shows a
    value uncommented."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^# ((\[\[?[\w.]+\]\]?)|([a-z_]+ = .+))$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out) + "\n"


# the example file -----------------------------------------------------------------


REGENERATE = ".venv/bin/lettabot example-config > config/lettabot.example.toml"


def test_the_example_file_is_the_generators_output() -> None:
    """config/lettabot.example.toml is generated from the settings models (their docstrings
    and ``examples``; the adapters' sections too), never edited by hand."""
    assert {"web", "slack", "discord"} <= set(adapter_section_models())
    assert EXAMPLE.read_text() == full_example(), (
        "config/lettabot.example.toml is not what `lettabot example-config` prints now: "
        f"regenerate it with `{REGENERATE}`")


def _settings(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every key under ``model`` (tables included), dotted, with its field."""
    out = []
    for name, field in model.model_fields.items():
        out.append((prefix + name, field))
        sub = model_of(field.annotation) if json_kind(field.annotation) else None
        if sub is not None:
            out += _settings(sub, f"{prefix}{name}.")
    return out


def test_every_core_setting_has_a_comment_in_the_example() -> None:
    """A key's docstring is its comment in the generated example; a section's (``[letta]``)
    is its model's docstring. (The adapters' sections are their packages' to document.)"""
    adapters = set(adapter_section_models())
    undocumented = []
    for key, field in _settings(Config):
        if key.partition(".")[0] in adapters:
            continue
        sub = model_of(field.annotation) if json_kind(field.annotation) else None
        if sub is not None and not sub.__doc__:
            undocumented.append(f"{key} (its model {sub.__name__})")
        if not field.description and not (sub is not None
                                           and json_kind(field.annotation) == "object"):
            undocumented.append(key)
    assert undocumented == []


def test_example_file_loads_with_safe_defaults(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    assert config.config_file == EXAMPLE
    assert config.letta.permission_mode == "standard"
    assert config.approvals.timeout_seconds == 600
    assert config.servers.count == 1 and config.servers.max_concurrent_turns == 8
    assert config.web.host == "127.0.0.1" and config.web.port == 8787
    assert config.enabled_adapters() == ["web"]
    assert config.data_dir == tmp_path / "xdg" / "lettabot"
    db = tmp_path / "xdg" / "lettabot" / "lettabot.db"
    assert config.store_url == f"sqlite+aiosqlite:///{db}"
    assert config.letta_cwd == config.data_dir / "workspace"
    assert config.warnings() == []


def test_every_key_in_the_example_is_real_and_every_real_key_is_documented(
    clean_env: Path,
) -> None:
    text = EXAMPLE.read_text()
    path = write(clean_env / "full.toml", uncommented(text))
    config = load_config(path)  # no "unknown key" problems: every example value is valid
    data = tomllib.loads(path.read_text())
    shown = set(re.findall(r"^# ([a-z_]+) =", text, re.MULTILINE))
    for key, _ in _settings(Config):
        leaf = key.rsplit(".", 1)[-1]
        assert leaf in shown or f"[{key}]" in text, key
    assert {"data_dir", "log_level", "log_format"} <= set(data)
    assert config.letta.providers[0].type == "anthropic"
    assert config.letta.providers[0].api_key_env == "ANTHROPIC_API_KEY"
    assert config.schedules[0].name == "standup" and config.servers.urls[0].token is not None
    assert config.agents[0].routes[0].channel == "C0OPS"
    assert config.slack.mode == "socket" and config.discord.reply_mode == "thread"
    assert config.adapters["teams"]["enabled"] is True
    assert "teams" in config.enabled_adapters()


# where values come from --------------------------------------------------------


def test_env_overrides_the_file_and_completes_secrets(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    path = write(
        clean_env / "lettabot.toml",
        '[slack]\nenabled = true\nallowed_channels = ["C1"]\n[web]\nport = 9000\n',
    )
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", SECRET)
    monkeypatch.setenv("LETTABOT_SLACK__APP_TOKEN", "xapp-1-abc")
    monkeypatch.setenv("LETTABOT_WEB__PORT", "9100")
    monkeypatch.setenv("LETTABOT_ACCESS__APPROVERS", '["slack:U1", "slack:U2"]')
    monkeypatch.setenv("LETTABOT_LETTA__PERMISSION_MODE", "strict")
    config = load_config(path)
    assert config.slack.enabled and config.slack.allowed_channels == ["C1"]
    assert config.slack.bot_token is not None
    assert config.slack.bot_token.get_secret_value() == SECRET
    assert config.web.port == 9100
    assert config.access.approvers == ["slack:U1", "slack:U2"]
    assert config.letta.permission_mode == "strict"
    assert config.enabled_adapters() == ["slack"]  # web "auto" steps aside


def test_dotenv_applies_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    write(
        clean_env / ".env",
        "OPENAI_API_KEY=sk-unrelated\n"
        "LETTABOT_DISCORD__ENABLED=true\n"
        "LETTABOT_DISCORD__TOKEN=from-dotenv\n"
        "LETTABOT_SERVERS__COUNT=3\n",
    )
    monkeypatch.setenv("LETTABOT_SERVERS__COUNT", "2")
    config = load_config()  # no file at all: defaults + .env + env
    assert config.config_file is None
    assert config.discord.enabled
    assert config.discord.token is not None
    assert config.discord.token.get_secret_value() == "from-dotenv"
    assert config.servers.count == 2


def test_config_file_from_env_or_working_directory(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    write(clean_env / "lettabot.toml", "[web]\nport = 8001\n")
    assert load_config().web.port == 8001
    other = write(tmp_path / "elsewhere" / "bot.toml", 'data_dir = ".state"\n[web]\nport = 8002\n')
    monkeypatch.setenv("LETTABOT_CONFIG", str(other))
    config = load_config()
    assert config.web.port == 8002
    # relative paths are taken from the config file's folder, not the working directory
    assert config.data_dir == tmp_path / "elsewhere" / ".state"
    assert config.store_url.endswith(f"{tmp_path / 'elsewhere' / '.state' / 'lettabot.db'}")


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml: does not exist" in str(exc.value)
    monkeypatch.setenv("LETTABOT_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"LETTABOT_CONFIG: names .*gone.toml, which does not"):
        load_config()


def test_misspelt_env_variable_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTABOT_SLAK__BOT_TOKEN", SECRET)
    config = load_config()
    assert any("LETTABOT_SLAK__BOT_TOKEN" in w for w in config.warnings())
    assert SECRET not in config.describe()


# secrets -------------------------------------------------------------------------


def test_secrets_never_shown(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        clean_env / "lettabot.toml",
        "[slack]\nenabled = true\nmode = \"http\"\n"
        "[store]\nurl = \"postgresql+asyncpg://bot:pg-PASSWORD-1@db:5432/lettabot\"\n"
        "[servers]\nurls = [{ url = \"wss://far.example:9\", token = \"server-TOKEN-2\" }]\n"
        "[adapters.teams]\nenabled = true\napp_password = \"teams-PASSWORD-3\"\n",
    )
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", SECRET)
    monkeypatch.setenv("LETTABOT_SLACK__SIGNING_SECRET", "signing-SECRET-4")
    monkeypatch.setenv("LETTABOT_WEB__TOKEN", "web-TOKEN-5")
    monkeypatch.setenv("LETTABOT_LETTA__API_KEY", "letta-KEY-6")
    config = load_config(path)
    secrets = [
        SECRET,
        "pg-PASSWORD-1",
        "server-TOKEN-2",
        "teams-PASSWORD-3",
        "signing-SECRET-4",
        "web-TOKEN-5",
        "letta-KEY-6",
    ]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("lettabot").info("config: %r / %s\n%s", config, config, config.describe())
    shown = "\n".join([config.describe(), repr(config), str(config), caplog.text])
    for secret in secrets:
        assert secret not in shown
    described = config.describe()
    assert 'bot_token = "********"' in described
    assert "postgresql+asyncpg://bot:********@db:5432/lettabot" in described
    assert "# signing_secret" not in described  # set → shown masked, not as "not set"


def test_bad_secret_values_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTABOT_SLACK__ENABLED", "true")
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", "xoxp-USER-TOKEN-SECRET")
    monkeypatch.setenv("LETTABOT_SLACK__APP_TOKEN", "xapp-ok")
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert problems(exc) == [
        "slack.bot_token: does not look like a bot token (expected xoxb-…) (from the "
        "environment variable LETTABOT_SLACK__BOT_TOKEN) — copy the Bot "
        "User OAuth Token from the app's OAuth & Permissions page"
    ]
    assert "USER-TOKEN-SECRET" not in str(exc.value)


# errors ------------------------------------------------------------------------------


def test_malformed_toml_names_the_line(clean_env: Path) -> None:
    text = '[letta]\nmodel = "openai/gpt-4.1\nbackend = "local"\n'
    path = write(clean_env / "lettabot.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = problems(exc)
    assert problem.startswith(f"{path}: is not valid TOML")
    assert "line 2" in problem and "fix the syntax at that line" in problem


def test_bad_values_are_all_reported_with_key_and_fix(clean_env: Path) -> None:
    path = write(
        clean_env / "lettabot.toml",
        """
log_level = "LOUD"
[letta]
backend = "remote"
[approvals]
timeout_seconds = -5
[servers]
count = "two"
max_concurrent_turns = 0
urls = [{ url = "http://far.example:9000" }, { url = "ws://10.1.2.3:9000" }]
[web]
port = 70000
[discord]
reply_mode = "dm"
guild_ids = "123"
[slack]
bot_tokn = "xoxb-typo"
[stor]
url = "sqlite:///x.db"
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    found = problems(exc)
    message = str(exc.value)
    assert message.startswith(f"invalid lettabot config ({path}):")
    expected_prefixes = [
        "log_level: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'LOUD') — use one",
        "letta.backend: input should be 'local' or 'cloud' (got 'remote') — use one of the listed",
        "approvals.timeout_seconds: input should be greater than 0 (got -5) — use a larger value",
        "servers.count: input should be a valid integer",
        "servers.max_concurrent_turns: input should be greater than or equal to 1",
        "servers.urls[0].url: is not a WebSocket URL — write ws://host:port or wss://host:port",
        "servers.urls[1].token: is required for an App Server that is not on this machine",
        "web.port: input should be less than or equal to 65535 (got 70000) — use a smaller value",
        "discord.reply_mode: input should be 'thread' or 'inline' (got 'dm')",
        "discord.guild_ids: input should be a valid list",
        "slack.bot_tokn: unknown key — did you mean bot_token?",
        "stor: unknown key",
    ]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert len(found) == len(expected_prefixes)
    for p in found:
        assert re.match(r"^[\w.\[\]]+: .+ — .+$", p), p


def test_unsupported_store_url(clean_env: Path) -> None:
    path = write(clean_env / "lettabot.toml", '[store]\nurl = "mysql://root:pw@db/bot"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = problems(exc)
    assert problem.startswith(
        "store.url: unsupported store URL scheme 'mysql' — use sqlite+aiosqlite:///"
    )
    assert "pw" not in problem
    write(path, '[store]\nurl = "sqlite:///:memory:"\n')
    with pytest.raises(ConfigError, match=r"store\.url: the SQLite store needs a file path"):
        load_config(path)
    write(path, '[store]\nurl = "postgresql://bot:pw@db/lettabot"\n')
    assert load_config(path).store_url == "postgresql://bot:pw@db/lettabot"


def test_enabled_adapter_without_token_names_the_env_var(clean_env: Path) -> None:
    text = "[slack]\nenabled = true\n[discord]\nenabled = true\n"
    path = write(clean_env / "lettabot.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert sorted(problems(exc)) == sorted([
        "slack.bot_token: is not set but slack.enabled = true — set LETTABOT_SLACK__BOT_TOKEN "
        "(or slack.bot_token in the file)",
        'slack.app_token: is not set but slack.mode = "socket" — set LETTABOT_SLACK__APP_TOKEN '
        "(or slack.app_token in the file)",
        "discord.token: is not set but discord.enabled = true — set LETTABOT_DISCORD__TOKEN "
        "(or discord.token in the file)",
    ])


def test_http_mode_slack_needs_signing_secret_not_app_token(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    path = write(clean_env / "lettabot.toml", '[slack]\nenabled = true\nmode = "http"\n')
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", SECRET)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.split(":")[0] for p in problems(exc)] == ["slack.signing_secret"]
    assert "LETTABOT_SLACK__SIGNING_SECRET" in problems(exc)[0]


def test_disabled_adapters_need_nothing(clean_env: Path) -> None:
    path = write(clean_env / "lettabot.toml", '[slack]\nenabled = false\nmode = "http"\n')
    config = load_config(path)
    assert config.enabled_adapters() == ["web"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "bot.example.com"])
def test_web_off_loopback_requires_a_token(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, host: str
) -> None:
    path = write(clean_env / "lettabot.toml", f'[web]\nhost = "{host}"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = problems(exc)
    assert problem.startswith(f"web.token: is required when the web chat listens on {host}")
    assert "LETTABOT_WEB__TOKEN" in problem
    monkeypatch.setenv("LETTABOT_WEB__TOKEN", "long-random-string")
    assert load_config(path).web.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_web_on_loopback_needs_no_token(clean_env: Path, host: str) -> None:
    path = write(clean_env / "lettabot.toml", f'[web]\nhost = "{host}"\n')
    assert load_config(path).web.token is None


def test_web_disabled_off_loopback_needs_no_token(clean_env: Path) -> None:
    path = write(clean_env / "lettabot.toml", '[web]\nenabled = false\nhost = "0.0.0.0"\n')
    assert load_config(path).enabled_adapters() == []


# permissions and access ----------------------------------------------------------


def test_permission_mode_is_never_unrestricted_by_default(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    assert load_config().letta.permission_mode == "standard"
    path = write(clean_env / "lettabot.toml", '[letta]\npermission_mode = "bypassPermissions"\n')
    config = load_config(path)
    assert config.letta.permission_mode == "unrestricted"
    assert any("every tool runs without asking" in w for w in config.warnings())
    assert "# warning: letta.permission_mode is \"unrestricted\"" in config.describe()
    write(clean_env / "lettabot.toml", '[letta]\npermission_mode = "yolo"\n')
    with pytest.raises(ConfigError, match=r"letta.permission_mode: input should be 'standard'"):
        load_config(path)


def test_open_chat_adapter_without_access_lists_is_warned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LETTABOT_DISCORD__ENABLED", "true")
    monkeypatch.setenv("LETTABOT_DISCORD__TOKEN", "tok")
    config = load_config()
    [refusal] = config.refusals()
    assert refusal.key == "access.allowed_users" and "access.open = true" in refusal.fix
    monkeypatch.setenv("LETTABOT_ACCESS__OPEN", "true")
    opened = load_config()
    assert opened.refusals() == []
    assert any("access.open = true" in w for w in opened.warnings())
    monkeypatch.delenv("LETTABOT_ACCESS__OPEN")
    monkeypatch.setenv("LETTABOT_ACCESS__APPROVERS", '["discord:42"]')
    assert load_config().refusals() == [] and load_config().warnings() == []


def test_access_lists_match_qualified_and_bare_ids(clean_env: Path) -> None:
    path = write(
        clean_env / "lettabot.toml",
        '[access]\nallowed_users = ["slack:U1", "D9"]\napprovers = ["discord:42"]\n',
    )
    access = load_config(path).access
    assert access.is_allowed_user("slack", "U1")
    assert not access.is_allowed_user("discord", "U1")
    assert access.is_allowed_user("discord", "D9") and access.is_allowed_user("slack", "D9")
    assert access.is_allowed_user("discord", "42")  # approvers may always talk
    assert access.is_approver("discord", "42") and not access.is_approver("slack", "U1")
    assert load_config(EXAMPLE).access.is_allowed_user("slack", "anyone")


# several agents ------------------------------------------------------------------------


AGENTS = """
[letta]
model = "openai/gpt-4.1"
permission_mode = "acceptEdits"

[access]
approvers = ["slack:UBOSS"]

[[agents]]
name = "support"
default = true
persona = "I am the support agent"

[[agents]]
name = "ops"
model = "anthropic/claude-sonnet-4"
permission_mode = "strict"
approvers = ["slack:UOPS"]
routes = [{ adapter = "slack", channel = "COPS" }, { adapter = "discord", channel = 1234 }]
"""


def test_agents_inherit_letta_and_access_and_name_their_routes(clean_env: Path) -> None:
    config = load_config(write(clean_env / "lettabot.toml", AGENTS))
    support, ops = config.agents
    assert config.default_agent is support
    assert support.resolved(config.letta).model == "openai/gpt-4.1"
    assert support.resolved(config.letta).permission_mode == "acceptEdits"
    assert ops.resolved(config.letta).model == "anthropic/claude-sonnet-4"
    assert ops.resolved(config.letta).permission_mode == "strict"
    assert ops.routes[1].channel == "1234"  # Discord ids are numbers in TOML
    assert ops.approvers == ["slack:UOPS"] and support.approvers is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[[agents]]\nname = "ops"\ndefault = true\n', "agents: support, ops are all marked"),
        ('[[agents]]\nname = "support"\n', "agents[2].name: 'support' is used twice"),
        ('[[agents]]\nname = "x"\nroutes = [{}]\n',
         "agents[2].routes[0]: is a rule that matches everything"),
        ('[[agents]]\nname = "Bad Name"\n', "agents[2].name: string should match"),
    ],
)
def test_bad_agents_are_named_with_the_fix(clean_env: Path, extra: str, needle: str) -> None:
    path = write(clean_env / "lettabot.toml", AGENTS + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(needle in p for p in problems(caught)), problems(caught)


def test_several_agents_need_one_default_and_letta_agent_id_moves_into_one(
    clean_env: Path,
) -> None:
    text = AGENTS.replace("default = true\n", "").replace(
        '[letta]\n', '[letta]\nagent_id = "agent-local-1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(write(clean_env / "lettabot.toml", text))
    found = problems(caught)
    assert any(p.startswith("agents: no agent is marked default") for p in found), found
    assert any(p.startswith("letta.agent_id: is set together with [[agents]]") for p in found)


def test_without_agents_the_one_agent_comes_from_letta(clean_env: Path) -> None:
    config = load_config(write(clean_env / "lettabot.toml",
                               '[letta]\nagent_id = "agent-local-7"\nmodel = "m"\n'))
    [agent] = config.agent_configs()
    assert agent.name == "default" and agent.resolved(config.letta).agent_id == "agent-local-7"


def test_the_examples_agents_block_loads_as_written(clean_env: Path) -> None:
    text = EXAMPLE.read_text()
    block = text[text.index("# [[agents]]"):text.index("\n\n# ----")]
    config = load_config(write(clean_env / "agents.toml", uncommented(block)))
    [agent] = config.agents
    assert agent.name == "ops" and config.default_agent is agent
    assert agent.routes[0].matches("slack", "T0123ABCD", "C0OPS", is_dm=False)
    assert agent.resolved(config.letta).permission_mode == "strict"


# tried as a newcomer would ------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_named_not_a_traceback(clean_env: Path) -> None:
    path = clean_env / "lettabot.toml"
    path.write_bytes(b'[letta]\nmodel = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = problems(caught)
    assert "is not UTF-8 text" in problem and "line 2" in problem and "save it as UTF-8" in problem


def test_a_directory_as_config_is_called_a_directory(clean_env: Path) -> None:
    (clean_env / "conf").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(clean_env / "conf")
    [problem] = problems(caught)
    assert "is a directory" in problem and "lettabot.toml" in problem


@pytest.mark.parametrize("word", ['"yes"', '"on"', '"no"', '"y"'])
def test_a_yes_or_no_string_is_not_a_boolean(clean_env: Path, word: str) -> None:
    path = write(clean_env / "lettabot.toml", f"[web]\nenabled = {word}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = problems(caught)
    assert problem.startswith("web.enabled:") and "write true or false" in problem


def test_booleans_from_the_environment_still_read(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LETTABOT_ACCESS__OPEN", "true")
    monkeypatch.setenv("LETTABOT_SLACK__ALLOW_BOTS", "0")
    config = load_config(write(clean_env / "lettabot.toml", "[web]\nenabled = true\n"))
    assert config.access.open is True and config.slack.allow_bots is False


def test_a_bad_value_from_the_environment_or_dotenv_names_where_it_came_from(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(clean_env / "lettabot.toml", "[web]\nenabled = true\n")
    monkeypatch.setenv("LETTABOT_WEB__PORT", "notaport")
    (clean_env / ".env").write_text("LETTABOT_SERVERS__COUNT=lots\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = problems(caught)
    port = next(p for p in found if p.startswith("web.port"))
    count = next(p for p in found if p.startswith("servers.count"))
    assert "from the environment variable LETTABOT_WEB__PORT" in port
    assert "from LETTABOT_SERVERS__COUNT in .env" in count


# environment and .env: every value error is key, problem, fix (#24.2) ---------------------


@pytest.mark.parametrize("where", ["environment", ".env"])
@pytest.mark.parametrize(("name", "value", "needle"), [
    ("LETTABOT_ACCESS__APPROVERS", "slack:U0123",
     """access.approvers: is not a JSON list (from {src}) — write LETTABOT_ACCESS__APPROVERS"""
     """='["slack:U0123"]'"""),
    ("LETTABOT_ACCESS__APPROVERS", '["a",', "access.approvers: is not a JSON list"),
    ("LETTABOT_LETTA__ENV", "x", "letta.env: is not a JSON object"),
    ("LETTABOT_SERVERS__URLS", "ws://far:9", "servers.urls: is not a JSON list"),
    ("LETTABOT_ACCESS", '{"open": true', "access: is not a JSON object"),
])
def test_a_list_or_json_value_that_does_not_parse_names_variable_and_fix(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, where: str, name: str, value: str,
    needle: str,
) -> None:
    if where == "environment":
        monkeypatch.setenv(name, value)
        src = f"the environment variable {name}"
    else:
        write(clean_env / ".env", f"{name}={value}\n")
        src = f"{name} in .env"
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert any(needle.format(src=src) in p for p in problems(exc)), problems(exc)


@pytest.mark.parametrize(("name", "right"), [
    ("LETTABOT_SLAK__ENABLED", "LETTABOT_SLACK__ENABLED"),
    ("LETTABOT_SLACK_BOT_TOKEN", "LETTABOT_SLACK__BOT_TOKEN"),
    ("SLACK_BOT_TOKEN", "LETTABOT_SLACK__BOT_TOKEN"),
    ("SLACK_APP_TOKEN", "LETTABOT_SLACK__APP_TOKEN"),
    ("SLACK_SIGNING_SECRET", "LETTABOT_SLACK__SIGNING_SECRET"),
    ("DISCORD_TOKEN", "LETTABOT_DISCORD__TOKEN"),
])
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_misnamed_variable_is_warned_about_with_the_right_name(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, name: str, right: str, where: str,
) -> None:
    if where == "environment":
        monkeypatch.setenv(name, SECRET)
    else:
        write(clean_env / ".env", f"{name}={SECRET}\n")
    config = load_config()
    found = [w for w in config.warnings() if name in w]
    assert found and f"did you mean {right}?" in found[0], config.warnings()
    assert SECRET not in "\n".join(config.warnings())


def test_the_right_variable_set_silences_the_foreign_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKEN", SECRET)
    monkeypatch.setenv("LETTABOT_SDK_TRANSPORT", "subprocess")  # the SDK's own, not a setting
    assert load_config().warnings() == []


def test_a_misspelt_nested_variable_says_which_key_it_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LETTABOT_SLACK__BOT_TOKN", SECRET)
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert any("slack.bot_tokn: unknown key" in p and "did you mean LETTABOT_SLACK__BOT_TOKEN?"
               in p for p in problems(exc)), problems(exc)


def test_error_hints_name_a_command_not_a_file_a_wheel_lacks(clean_env: Path) -> None:
    write(clean_env / "lettabot.toml", "[letta]\nmodle = 'x'\n[acess]\nopen = true\n")
    with pytest.raises(ConfigError) as exc:
        load_config()
    text = "\n".join(problems(exc))
    assert "lettabot.example.toml" not in text and "lettabot example-config" in text
    assert "did you mean model?" in text


def test_numeric_ids_in_access_lists_are_taken_as_text(clean_env: Path) -> None:
    write(clean_env / "lettabot.toml", "[access]\napprovers = [81234, \"slack:U1\"]\n")
    assert load_config().access.approvers == ["81234", "slack:U1"]


def test_example_config_prints_every_section_core_ones_included_from_the_models() -> None:
    from lettabot.runtime.config import full_example

    text = full_example()
    for header in ("[letta]", "[access]", "[approvals]", "[turns]", "[files]", "[chat_tools]",
                   "[servers]", "[store]", "[cluster]", "[sandbox]", "[health]", "[web]",
                   "[slack]", "# [[letta.providers]]", "# [[agents]]", "# [[schedules]]"):
        assert f"\n{header}\n" in text, header
    # a field's docstring is its comment: one source of truth
    assert "# Let everyone who can message the bot talk to it." in text
    assert "# permission_mode = \"standard\"" in text and "= None" not in text
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    tomllib.loads(body)  # headers only: every key is commented out
