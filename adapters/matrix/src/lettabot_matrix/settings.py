"""The adapter's settings: the ``[matrix]`` section, validated once (by the config loader)
and handed to :func:`~lettabot_matrix.create_adapter` as this model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config import ChatAdapterSettings, Problem, is_blank, missing

__all__ = ["MatrixConfig", "MatrixSettings"]


class MatrixConfig(ChatAdapterSettings):
    """The ``[matrix]`` section (``LETTABOT_MATRIX__*``): the ``lettabot.settings`` entry
    point ``matrix``. Matrix (mautrix, client-server API; no end-to-end encryption:
    encrypted rooms are refused with a notice).

    Who may talk (``access.allowed_users`` as ``matrix:@ada:example.org``), who approves
    (``access.approvers``) and the ``unauthorized_reply`` are the runtime's access policy;
    the adapter applies ``rooms`` and accepts invitations only from allowed users.
    """

    enabled: bool = False
    """Run the Matrix adapter. Needs homeserver, user_id and access_token."""
    homeserver: str = Field(default="", examples=["https://matrix.example.org"])
    """The homeserver's client-server API base URL."""
    user_id: str = Field(default="", examples=["@lettabot:example.org"])
    """The bot's Matrix user id (the account the access token belongs to)."""
    access_token: SecretStr | None = Field(default=None, examples=["syt_..."])
    """The bot account's access token. Prefer LETTABOT_MATRIX__ACCESS_TOKEN."""
    rooms: list[str] = Field(default_factory=list, examples=[["!abc123:example.org"]])
    """Room ids the bot serves (and joins when invited, by anyone). Empty: any room an
    allowed user invites it to. DMs from allowed users are always served."""
    command_prefix: str = "!lettabot"
    """Typed commands start with this (``!lettabot reset``); a mention works too
    (``@lettabot reset``)."""
    max_message_chars: int = Field(default=8000, ge=500, le=30000)
    """Split replies longer than this into several messages (Synapse refuses events over
    64 KiB; a message carries its text twice, as plain text and as HTML)."""
    sync_timeout_seconds: float = Field(default=30.0, ge=1, le=120)
    """How long one /sync long-poll waits for news."""
    state_path: Path | None = Field(default=None,
                                    examples=["/var/lib/lettabot/matrix-state.json"])
    """Where the sync position and recently handled event ids are kept (so a restart
    answers nothing twice). Unset: ``<data_dir>/matrix-state.json``."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if self.enabled:
            if not self.homeserver.strip():
                problems.append(missing("homeserver", "matrix.enabled = true"))
            if not self.user_id.strip():
                problems.append(missing("user_id", "matrix.enabled = true"))
            if is_blank(self.access_token):
                problems.append(missing("access_token", "matrix.enabled = true"))
        if self.homeserver and not self.homeserver.startswith(("http://", "https://")):
            problems.append(Problem("homeserver", f"{self.homeserver!r} is not an http(s) URL",
                                    "use the homeserver's URL, e.g. https://matrix.example.org"))
        if self.user_id and not (self.user_id.startswith("@") and ":" in self.user_id):
            problems.append(Problem("user_id", f"{self.user_id!r} is not a Matrix user id",
                                    "use the full id, e.g. @lettabot:example.org"))
        bad = [r for r in self.rooms if not r.startswith("!")]  # v12 ids have no server
        if bad:
            problems.append(Problem("rooms", f"{bad} are not room ids",
                                    "use room ids (!abc:example.org or !abc; Element: room "
                                    "settings → Advanced)"))
        if not self.command_prefix.strip():
            problems.append(Problem("command_prefix", "is empty", "use e.g. !lettabot"))
        if problems:
            return self.raise_problems(problems)
        return self

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | MatrixConfig) -> MatrixConfig:
        """The model itself, or a plain mapping validated (tests, callers without a config)."""
        if isinstance(config, MatrixConfig):
            return config
        return cls.model_validate(dict(config))

    def token_value(self) -> str:
        return self.access_token.get_secret_value().strip() if self.access_token else ""


MatrixSettings = MatrixConfig
