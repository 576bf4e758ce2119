"""``lettabot init``: flags (or a terminal's answers) become a lettabot.toml with no secret in
it and a mode-600 .env, checked by check-config against the real CLI."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lettabot.runtime.cli import build_parser
from lettabot.runtime.config import load_config
from lettabot.runtime.init import run_init
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer

LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]


def _init(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LETTABOT, "init", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _env(home: LettaHome) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    return {**env, **home.env}


def test_init_for_slack_writes_a_checked_config_and_keeps_tokens_in_env(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, tmp_path: Path,
) -> None:
    bot_token, app_token = "xoxb-1111-init-secret", "xapp-1-init-secret"
    done = _init("--platform", "slack", "--slack-bot-token", bot_token,
                 "--slack-app-token", app_token, "--provider", "openai-compatible",
                 "--provider-url", scripted_model.base_url,
                 "--model", "openai-compatible/scripted", "--approver", "slack:U0ADA",
                 "--dir", str(tmp_path / "bot"), cwd=tmp_path, env=_env(letta_home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# config OK" in done.stdout and "ready: cd" in done.stdout
    config, env = tmp_path / "bot" / "lettabot.toml", tmp_path / "bot" / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert bot_token in env.read_text() and app_token in env.read_text()
    assert bot_token not in config.read_text() and bot_token not in done.stdout + done.stderr
    os.chdir(config.parent)  # where `lettabot run` reads .env from
    try:
        loaded = load_config(config)
    finally:
        os.chdir(tmp_path)
    assert loaded.slack.enabled and loaded.access.approvers == ["slack:U0ADA"]
    # no --allowed-user and no --open: not the whole workspace, and it says so
    assert loaded.access.allowed_users == ["slack:U0ADA"] and not loaded.access.open
    assert "only they may talk" in done.stdout
    assert loaded.letta.providers[0].base_url == scripted_model.base_url
    assert loaded.data_dir == config.parent / ".lettabot"
    again = _init("--platform", "web", "--dir", str(tmp_path / "bot"), cwd=tmp_path,
                  env=_env(letta_home))
    assert again.returncode == 2 and "already exist" in again.stderr  # nothing overwritten
    assert bot_token in env.read_text()


def test_init_without_a_terminal_names_each_missing_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    env.pop("ANTHROPIC_API_KEY", None)
    done = _init("--platform", "discord", "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert done.returncode == 2 and "--discord-token is required" in done.stderr
    assert not (tmp_path / "lettabot.toml").exists()
    bad = _init("--platform", "slack", "--slack-bot-token", "xoxp-user-token",
                "--slack-app-token", "xapp-1", "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "xoxb-" in bad.stderr


def test_init_asks_in_a_terminal_for_what_the_flags_leave_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    answers = {"Platform": "discord", "Discord bot token": "discord-token-typed-in",
               "Model provider": "anthropic", "anthropic API key": "sk-ant-typed-in",
               "Model handle": "", "Who may approve": "discord:81234, discord:99",
               "Who may talk": "discord:555, 777"}
    asked: list[tuple[str, bool]] = []

    def ask(question: str, secret: bool) -> str:
        asked.append((question, secret))
        return next(v for k, v in answers.items() if question.startswith(k))

    args = build_parser().parse_args(["init", "--dir", str(tmp_path), "--no-check"])
    assert isinstance(args, argparse.Namespace)
    assert run_init(args, ask) == 0
    secret_questions = {q.split(" (")[0] for q, secret in asked if secret}
    assert secret_questions == {"Discord bot token", "anthropic API key"}  # not echoed
    text = (tmp_path / "lettabot.toml").read_text()
    assert 'model = "anthropic/claude-sonnet-4-5"' in text  # the default, taken
    assert '"discord:81234", "discord:99"' in text and "sk-ant" not in text
    assert 'allowed_users = ["discord:555", "777"]' in text  # a bare id is an entry too
    assert any(q.startswith("Who may talk") for q, _ in asked)
    assert "ANTHROPIC_API_KEY=sk-ant-typed-in" in (tmp_path / ".env").read_text()


def _flags_init(tmp_path: Path, *flags: str) -> tuple[int, str]:
    args = build_parser().parse_args([
        "init", "--platform", "slack", "--slack-bot-token", "xoxb-1-x", "--slack-app-token",
        "xapp-1-x", "--provider", "anthropic", "--api-key", "sk-ant-x", "--dir",
        str(tmp_path), "--no-check", "--force", *flags])
    assert isinstance(args, argparse.Namespace)
    code = run_init(args, None)
    config = tmp_path / "lettabot.toml"
    return code, config.read_text() if config.exists() else ""


def test_init_with_flags_never_leaves_the_workspace_open_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import tomllib

    code, text = _flags_init(tmp_path, "--approver", "slack:U0ADA")
    access = tomllib.loads(text)["access"]
    assert code == 0 and access["allowed_users"] == ["slack:U0ADA"] and "open" not in access
    assert "only they may talk" in capsys.readouterr().out

    code, text = _flags_init(tmp_path, "--approver", "slack:U0ADA", "--allowed-user",
                             "slack:U0BOB", "--allowed-user", "U0CAROL")
    access = tomllib.loads(text)["access"]
    assert code == 0 and access["allowed_users"] == ["slack:U0BOB", "U0CAROL"]

    code, text = _flags_init(tmp_path, "--approver", "slack:U0ADA", "--open")
    access = tomllib.loads(text)["access"]
    assert code == 0 and access["open"] is True and "allowed_users" not in access
    assert "access.open = true" in capsys.readouterr().out

    (tmp_path / "lettabot.toml").unlink()
    code, _ = _flags_init(tmp_path, "--approver", "slack:U0ADA", "--open",
                          "--allowed-user", "slack:U0BOB")
    assert code == 2 and "--open" in capsys.readouterr().err
    code, _ = _flags_init(tmp_path, "--approver", "slack:U0ADA", "--allowed-user", "<@U0>")
    assert code == 2 and "--allowed-user" in capsys.readouterr().err


def test_init_in_a_terminal_may_open_the_bot_to_everyone(tmp_path: Path) -> None:
    import tomllib

    answers = {"Who may talk": "everyone"}
    args = build_parser().parse_args([
        "init", "--platform", "slack", "--slack-bot-token", "xoxb-1-x", "--slack-app-token",
        "xapp-1-x", "--provider", "anthropic", "--api-key", "sk-ant-x", "--model", "m/x",
        "--approver", "slack:U0ADA", "--dir", str(tmp_path), "--no-check"])
    assert isinstance(args, argparse.Namespace)
    assert run_init(args, lambda q, _s: next(v for k, v in answers.items()
                                             if q.startswith(k))) == 0
    assert tomllib.loads((tmp_path / "lettabot.toml").read_text())["access"]["open"] is True


def test_a_wrong_answer_is_asked_again_and_the_others_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import tomllib

    replies = {"Platform": ["slack"],
               "Slack Bot User OAuth Token": ["xoxp-user-token", "xoxb-1-right"],
               "Slack app-level token": ["xapp-1-right"],
               "Model provider": ["anthropic"], "anthropic API key": ["sk-ant-typed"],
               "Model handle": [""],
               "Who may approve": ["slack U0ADA", "U0ADA, slack:U0BEN"],
               "Who may talk": ["<@U0CAT>", "81234, slack:U0DAN"]}
    asked: list[str] = []

    def ask(question: str, _secret: bool) -> str:
        asked.append(question)
        key = next(k for k in replies if question.startswith(k))
        return replies[key].pop(0)

    args = build_parser().parse_args(["init", "--dir", str(tmp_path), "--no-check"])
    assert isinstance(args, argparse.Namespace)
    assert run_init(args, ask) == 0
    assert sum(q.startswith("Platform") for q in asked) == 1  # not asked again
    assert sum(q.startswith("Slack Bot") for q in asked) == 2
    assert sum(q.startswith("Who may approve") for q in asked) == 2
    err = capsys.readouterr().err
    assert "xoxb-" in err and "'slack U0ADA'" in err and "'<@U0CAT>'" in err
    access = tomllib.loads((tmp_path / "lettabot.toml").read_text())["access"]
    assert access["approvers"] == ["U0ADA", "slack:U0BEN"]  # a bare id, as the config takes
    assert access["allowed_users"] == ["81234", "slack:U0DAN"]
    assert "LETTABOT_SLACK__BOT_TOKEN=xoxb-1-right" in (tmp_path / ".env").read_text()


def test_init_points_at_a_command_not_a_file_a_wheel_lacks(tmp_path: Path) -> None:
    code, text = _flags_init(tmp_path, "--approver", "slack:U0ADA")
    assert code == 0 and "lettabot.example.toml" not in text
    assert "lettabot example-config" in text
