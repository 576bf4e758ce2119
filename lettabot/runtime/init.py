"""``lettabot init``: write a working ``lettabot.toml`` and ``.env`` for a team's bot.

Asks (in a terminal) or takes as flags: the platform, its tokens, the model provider and its
key, the model, who may approve tool calls and who may talk (Slack, Discord: never left open
silently — with flags only and neither ``--allowed-user`` nor ``--open``, the approvers are
the only ones who may talk, and ``init`` says so). Settings go to ``lettabot.toml``; tokens and
keys only to ``.env`` (mode 600). Then runs ``lettabot check-config`` on the result, so a
wrong token format, provider key or model is found now, not at the first message.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lettabot.runtime.config import PROVIDER_ALIASES

__all__ = ["InitError", "Plan", "add_parser", "run_init"]

EXIT_CONFIG = 2
_KEY_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY",
             "google": "GEMINI_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
_NEEDS_URL = {"openai-compatible", "ollama", "lmstudio", "llama-cpp"}
_DEFAULT_MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "openai": "openai/gpt-4.1",
                   "google": "google/gemini-2.5-pro"}
_ID = re.compile(r"^([a-z][a-z0-9_-]*:)?[A-Za-z0-9_.@-]+$")
"""What ``access`` entries look like: ``<adapter>:<user id>``, or a bare id (any adapter)."""
_EVERYONE = {"everyone", "open", "*"}


class InitError(ValueError):
    """A missing or malformed answer (the message names the flag)."""


@dataclass
class Plan:
    """What ``init`` writes."""

    platform: str
    provider: str
    model: str | None
    approvers: list[str]
    allowed_users: list[str] = field(default_factory=list)
    provider_url: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    """Variable → value, for ``.env``."""
    open: bool = False
    """``access.open``: everyone who can message the bot may talk (chosen explicitly)."""
    notes: list[str] = field(default_factory=list)
    """What ``init`` decided for the user, printed after writing."""

    def toml(self) -> str:
        lines = [f"# Written by `lettabot init` on {datetime.now(UTC):%Y-%m-%d}. Every key, "
                 "commented: `lettabot example-config`", "# Secrets are in .env (never here).",
                 'data_dir = ".lettabot"', "", "[letta]"]
        if self.model:
            lines.append(f"model = {json.dumps(self.model)}")
        provider: dict[str, str] = {"type": self.provider}
        if self.provider_url:
            provider["base_url"] = self.provider_url
        if (var := _key_var(self.provider)) and var in self.secrets:
            provider["api_key_env"] = var
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in provider.items())
        lines += [f"providers = [{{ {inline} }}]", "", "[access]",
                  f"approvers = {json.dumps(self.approvers)}"]
        if self.allowed_users:
            lines.append(f"allowed_users = {json.dumps(self.allowed_users)}")
        if self.open:
            lines.append("open = true  # everyone who can message the bot may talk to it")
        if self.platform == "web":
            lines.append("self_approve = true  # the web chat has one user: whoever has its page")
        lines += ["", f"[{self.platform}]", "enabled = true"]
        return "\n".join(lines) + "\n"

    def env(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in self.secrets.items())


def _key_var(provider: str) -> str | None:
    if provider in ("ollama", "lmstudio", "llama-cpp"):
        return None
    return _KEY_VARS.get(provider, re.sub(r"[^A-Z0-9]", "_", provider.upper()) + "_API_KEY")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser("init", help="write lettabot.toml and .env for your team's bot")
    init.add_argument("--platform", choices=["slack", "discord", "web"])
    init.add_argument("--slack-bot-token", metavar="XOXB", help="(asked for if omitted)")
    init.add_argument("--slack-app-token", metavar="XAPP", help="(asked for if omitted)")
    init.add_argument("--discord-token", metavar="TOKEN", help="(asked for if omitted)")
    init.add_argument("--provider", metavar="TYPE",
                      help="anthropic, openai, google, openrouter, openai-compatible, ollama…")
    init.add_argument("--provider-url", "--base-url", dest="provider_url", metavar="URL",
                      help="the provider's base URL: the server's for openai-compatible, "
                           "ollama, lmstudio; for anthropic or openai, a gateway or proxy in "
                           "front of the official API (default: the official address)")
    init.add_argument("--api-key", metavar="KEY",
                      help="the provider's key (asked for if omitted; or set it beforehand "
                           "in the variable it goes to, e.g. ANTHROPIC_API_KEY)")
    init.add_argument("--model", metavar="HANDLE", help="e.g. anthropic/claude-sonnet-4-5")
    init.add_argument("--approver", action="append", default=[], metavar="ID",
                      help="who may approve tool calls, e.g. slack:U0123ABCD (repeatable)")
    init.add_argument("--allowed-user", "--allow", dest="allow", action="append", default=[],
                      metavar="ID", help="who may talk to the bot, e.g. slack:U0123ABCD "
                                         "(repeatable; approvers always may)")
    init.add_argument("--open", action="store_true",
                      help="let everyone who can message the bot talk to it (Slack, Discord)")
    init.add_argument("--dir", default=".", help="where to write (default: here)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument("--no-check", action="store_true", help="do not run check-config")


Ask = Callable[[str, bool], str]


def _terminal_ask(question: str, secret: bool) -> str:
    return (getpass.getpass(f"{question}: ") if secret else input(f"{question}: ")).strip()


def _answer(value: str | None, flag: str, question: str, ask: Ask | None, *,
            secret: bool = False, default: str | None = None) -> str:
    if value:
        return value.strip()
    if ask is not None:
        hint = f" [{default}]" if default else ""
        got = ask(question + hint, secret)
        if got or default:
            return got or str(default)
    if default is not None:
        return default
    raise InitError(f"{flag} is required (or run `lettabot init` in a terminal to be asked)")


_TRIES = 5


def _checked(value: str | None, flag: str, question: str, ask: Ask | None,
             check: Callable[[str], str | None], *, secret: bool = False,
             default: str | None = None) -> str:
    """An answer ``check`` accepts (it returns what is wrong, or None). In a terminal a wrong
    answer is said and asked again (the other answers stay); with flags only it is an error."""
    got = _answer(value, flag, question, ask, secret=secret, default=default)
    for _ in range(_TRIES):
        wrong = check(got)
        if wrong is None:
            return got
        if ask is None:
            raise InitError(f"{flag}: {wrong}")
        print(f"  {wrong} — try again", file=sys.stderr)
        got = _answer(None, flag, question, ask, secret=secret, default=default)
    raise InitError(f"{flag}: {check(got)}")


def _split_ids(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _bad_ids(text: str) -> str | None:
    bad = [who for who in _split_ids(text) if not _ID.match(who)]
    if bad:
        return (f"{', '.join(repr(b) for b in bad)} is not a user id: write <platform>:<user "
                "id> (e.g. slack:U0123ABCD) or a bare user id")
    return None


def _ids(given: list[str], flag: str, question: str, ask: Ask | None) -> list[str]:
    """Ids from the flags (checked) or the terminal; empty when neither gives any."""
    text = ",".join(given)
    if not text.strip() and ask is None:
        return []
    if not text.strip():
        text = ask(question, False) if ask is not None else ""
        if not text.strip():
            return []
    return _split_ids(_checked(text, flag, question, ask, _bad_ids))


def _prefix(start: str, what: str) -> Callable[[str], str | None]:
    def check(token: str) -> str | None:
        if token.startswith(start):
            return None
        return f"{what} starts with {start} (see the README's Slack steps)"
    return check


def plan_from(args: argparse.Namespace, ask: Ask | None) -> Plan:
    """The answers, from flags first, then the terminal (``ask``), then defaults. A wrong
    answer in a terminal is asked again; the answers before it are kept."""
    platform = _checked(args.platform, "--platform", "Platform (slack, discord, web)", ask,
                        lambda p: None if p in ("slack", "discord", "web") else
                        f"{p!r} is not a platform: use slack, discord or web",
                        default="web" if ask is None else None)
    secrets: dict[str, str] = {}
    if platform == "slack":
        bot = _checked(args.slack_bot_token, "--slack-bot-token",
                       "Slack Bot User OAuth Token (xoxb-…)", ask,
                       _prefix("xoxb-", "the bot token"), secret=True)
        app = _checked(args.slack_app_token, "--slack-app-token",
                       "Slack app-level token with connections:write (xapp-…)", ask,
                       _prefix("xapp-", "the app-level token"), secret=True)
        secrets |= {"LETTABOT_SLACK__BOT_TOKEN": bot, "LETTABOT_SLACK__APP_TOKEN": app}
    elif platform == "discord":
        secrets["LETTABOT_DISCORD__TOKEN"] = _answer(
            args.discord_token, "--discord-token", "Discord bot token", ask, secret=True)
    provider = _answer(args.provider, "--provider",
                       "Model provider (anthropic, openai, google, openrouter, "
                       "openai-compatible, ollama)", ask, default="anthropic")
    provider = PROVIDER_ALIASES.get(provider.lower(), provider.lower())
    url = args.provider_url
    if provider in _NEEDS_URL:
        url = _answer(url, "--provider-url", f"{provider} base URL (http://host:port/v1)", ask)
    var = _key_var(provider)
    if var is not None:
        key = args.api_key or os.environ.get(var)
        if not key and ask is not None:
            key = ask(f"{provider} API key (stored in .env as {var})", True)
        if key:
            secrets[var] = key.strip()
        elif provider not in _NEEDS_URL:
            raise InitError(f"--api-key is required for {provider} (or set {var})")
    model = _answer(args.model, "--model", "Model handle", ask,
                    default=_DEFAULT_MODELS.get(provider, ""))
    approvers: list[str] = []
    if platform != "web" or args.approver:  # the web chat's one user approves (self_approve)
        approvers = _ids(args.approver, "--approver", f"Who may approve tool calls "
                         f"({platform}:<user id> or a bare id, comma-separated)", ask)
        if not approvers and platform != "web":
            raise InitError(f"--approver is required for {platform} (e.g. "
                            f"{platform}:U0123ABCD): who may approve tool calls")
    allowed, everyone, notes = _who_may_talk(platform, approvers, args, ask)
    if platform == "web":
        secrets.setdefault("LETTABOT_WEB__TOKEN", os.urandom(16).hex())
    return Plan(platform, provider, model or None, approvers, allowed, url, secrets,
                open=everyone, notes=notes)


def _who_may_talk(platform: str, approvers: list[str], args: argparse.Namespace,
                  ask: Ask | None) -> tuple[list[str], bool, list[str]]:
    """``allowed_users``, ``open`` and what to tell the user. Slack and Discord are never
    left open unless asked: with no answer, only the approvers may talk."""
    allowed = _ids(args.allow, "--allowed-user", "", None) if args.allow else []
    everyone = bool(getattr(args, "open", False))
    if everyone and allowed:
        raise InitError("--open lets everyone talk; drop it or the --allowed-user flags")
    if platform == "web" or everyone or allowed:
        if everyone:
            return [], True, [f"access.open = true: everyone who can message the bot on "
                              f"{platform} may talk to it (--open)"]
        return allowed, False, []
    if ask is not None:
        question = (f"Who may talk to the bot? ({platform}:<user id> or a bare id, "
                    "comma-separated; empty: only the approvers; 'everyone': anyone who can "
                    "message it)")
        answer = ask(question, False)
        if answer.strip().lower() in _EVERYONE:
            return [], True, [f"access.open = true: everyone who can message the bot on "
                              f"{platform} may talk to it"]
        allowed = _ids([answer], "--allowed-user", question, ask)
        if allowed:
            return allowed, False, []
    if not approvers:
        raise InitError(f"who may talk to the bot on {platform}? Name approvers, "
                        "--allowed-user IDs, or pass --open")
    return list(approvers), False, [
        f"access.allowed_users = the approvers ({', '.join(approvers)}): only they may talk "
        "to the bot. Add people with --allowed-user ID, or --open to let everyone."]


def run_init(args: argparse.Namespace, ask: Ask | None = None) -> int:
    """Write the files, then check them; returns the exit status."""
    if ask is None and sys.stdin.isatty():
        ask = _terminal_ask
    target = Path(args.dir).resolve()
    config, env = target / "lettabot.toml", target / ".env"
    existing = [p for p in (config, env) if p.exists()]
    if existing and not args.force:
        names = " and ".join(str(p) for p in existing)
        print(f"lettabot init: {names} already exist(s) — move it away or pass --force",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        plan = plan_from(args, ask)
    except InitError as exc:
        print(f"lettabot init: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    target.mkdir(parents=True, exist_ok=True)
    config.write_text(plan.toml())
    env.touch(mode=0o600)
    env.chmod(0o600)
    env.write_text(plan.env())
    print(f"wrote {config} and {env} (mode 600: {', '.join(plan.secrets) or 'no secrets'})")
    for note in plan.notes:
        print(f"note: {note}")
    if args.no_check:
        return 0
    print("checking it: lettabot check-config")
    done = subprocess.run([sys.executable, "-m", "lettabot.runtime.cli", "check-config",
                           "--config", str(config)], cwd=target)
    if done.returncode == 0:
        print(f"ready: cd {target} && lettabot run")
    return done.returncode
