"""The web chat's settings: the ``[web]`` section (:class:`WebConfig`, the
``lettabot.settings`` entry point ``web``) and what the adapter runs with (:class:`WebSettings`)."""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config import (
    AdapterSettings,
    ConfigError,
    Problem,
    env_var,
    is_blank,
    is_loopback,
)

if TYPE_CHECKING:
    from lettabot.runtime.config import Config

__all__ = ["WebConfig", "WebSettings", "WebSettingsError", "is_loopback", "stored_token"]

log = logging.getLogger("lettabot.web")

DEFAULT_PORT = 8787
USER_ID = "web-user"
TOKEN_FILE = "web-token"


class WebConfig(AdapterSettings):
    """The built-in browser chat."""

    public: ClassVar[bool] = False  # one local user: whoever holds the page (and its token)

    enabled: bool | Literal["auto"] = "auto"  # type: ignore[assignment]
    """The built-in browser chat. "auto": on when no team-chat adapter (Slack, Discord) is
    enabled."""
    host: str = "127.0.0.1"
    """Address to listen on. Anything other than loopback requires a token."""
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """Its port; 0: any free port (the address printed at startup says which)."""
    token: SecretStr | None = Field(default=None, examples=["a-long-random-string"])
    """Shared secret the browser must present; required when host is not loopback. Unset on
    loopback: one is generated at first start into ``<data_dir>/web-token`` (mode 600,
    reused) and printed with the URL. Prefer LETTABOT_WEB__TOKEN."""
    auth: Literal["token", "none"] = "token"
    """"none": no token on loopback — any local process or OS user can then drive the chat
    and approve its tool calls (warned at every start). Only for a machine nobody shares."""

    def is_enabled(self, config: Config) -> bool:
        if self.enabled == "auto":
            return not config.public_adapters()
        return bool(self.enabled)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled is not False and not is_loopback(self.host) and is_blank(self.token):
            return self.raise_problems([Problem(
                "token", f"is required when the web chat listens on {self.host} (not loopback)",
                f"set {env_var('web.token')} to a long random string, "
                "or set web.host = \"127.0.0.1\"")])
        if self.auth == "none" and not is_blank(self.token):
            return self.raise_problems([Problem(
                "auth", 'is "none" but web.token is set', "remove one of them")])
        return self


class WebSettingsError(ConfigError):
    """The web chat cannot start with these settings (the message names the key and the fix)."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def stored_token(data_dir: Path | None) -> str:
    """The web chat's generated token: ``<data_dir>/web-token`` (created at first start,
    readable only by this user, reused after), or a fresh one for this run without a
    data dir."""
    if data_dir is None:
        return secrets.token_urlsafe(24)
    path = Path(data_dir) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("web chat: %s was readable by others; now mode 600", path)
        token = path.read_text("utf-8").strip()
        if len(token) >= 16:
            return token
        token = secrets.token_urlsafe(24)  # empty or damaged: a new one
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    else:
        token = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebSettingsError("web.token: must be a string")
    return value.strip() or None


@dataclass(frozen=True)
class WebSettings:
    """Where to listen, the token, and whether this is the demo. A token is required
    unless ``auth="none"`` (loopback only)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    demo: bool = False
    user_id: str = USER_ID
    user_name: str = "You"
    auth: Literal["token", "none"] = "token"
    show_token: bool = False
    """Print the token with the URL (a generated one; a configured one is never printed)."""

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise WebSettingsError(f"web.port: {self.port} is not a port — use 1..65535")
        if self.auth not in ("token", "none"):
            raise WebSettingsError(f'web.auth: {self.auth!r} — use "token" or "none"')
        if self.auth == "none" and self.token:
            raise WebSettingsError('web.auth: is "none" but web.token is set — remove one')
        if self.auth == "token" and not self.token and self.loopback:
            raise WebSettingsError(
                'web.token: required (web.auth = "token"); lettabot generates one into '
                '<data_dir>/web-token — or set web.auth = "none" to drive the chat without one')
        if not is_loopback(self.host) and not self.token:
            raise WebSettingsError(
                f"web.token: is required when the web chat listens on {self.host} (not loopback)"
                ' — set LETTABOT_WEB__TOKEN to a long random string, or web.host = "127.0.0.1"'
            )
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", self.user_id):
            raise WebSettingsError("web.user_id: use letters, digits and _.@- (at most 64)")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> WebSettings:
        """Build from the ``[web]`` section (a plain mapping or a pydantic model's dump)."""
        auth = str(section.get("auth") or "token")
        return cls(
            auth=auth,  # type: ignore[arg-type]  # checked in __post_init__
            show_token=bool(section.get("show_token", False)),
            host=str(section.get("host") or "127.0.0.1"),
            port=int(section.get("port") or 0) if section.get("port") is not None else DEFAULT_PORT,
            token=_secret(section.get("token")),
            demo=bool(section.get("demo", False)),
            user_id=str(section.get("user_id") or USER_ID),
            user_name=str(section.get("user_name") or "You"),
        )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def token_ok(self, presented: str | None) -> bool:
        """Constant-time check of a presented token (True without one only when
        ``auth="none"``)."""
        if self.token is None:
            return self.auth == "none"
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def __repr__(self) -> str:  # never show the token
        masked = "********" if self.token else None
        return (
            f"WebSettings(host={self.host!r}, port={self.port}, token={masked}, "
            f"auth={self.auth!r}, demo={self.demo})"
        )
