"""The ``[slack]`` section (``LETTABOT_SLACK__*``): the ``lettabot.settings`` entry point
``slack``, composed into lettabot's config and its example file."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from lettabot.runtime.config import ChatAdapterSettings, Problem, is_blank, missing

__all__ = ["SlackConfig", "SuggestedPrompt"]


class SuggestedPrompt(BaseModel):
    """A prompt Slack offers in a new assistant thread (the app's Messages tab)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=75)
    message: str = Field(min_length=1, max_length=2000)


class SlackConfig(ChatAdapterSettings):
    """Slack (slack-bolt): Socket Mode (default, no public URL) or HTTP events."""

    enabled: bool = False
    """Run the Slack adapter. Needs bot_token, plus app_token (socket mode) or
    signing_secret (http mode)."""
    bot_token: SecretStr | None = Field(default=None, examples=["xoxb-..."])
    """Bot User OAuth Token (OAuth & Permissions page). Prefer LETTABOT_SLACK__BOT_TOKEN."""
    app_token: SecretStr | None = Field(default=None, examples=["xapp-..."])
    """App-level token with connections:write, for socket mode. Prefer
    LETTABOT_SLACK__APP_TOKEN."""
    signing_secret: SecretStr | None = Field(
        default=None, examples=["0123456789abcdef0123456789abcdef"])
    """Signing secret (Basic Information page), for http mode. Prefer
    LETTABOT_SLACK__SIGNING_SECRET."""
    mode: Literal["socket", "http"] = "socket"
    """"socket" (Socket Mode: no public URL needed) or "http" (Slack posts events to you)."""
    http_host: str = "0.0.0.0"
    """Where the http-mode endpoint listens (put TLS in front of it)."""
    http_port: int = Field(default=3000, ge=1, le=65535)
    """Its port."""
    http_path: str = "/slack/events"
    """Its path (the Request URL's path in the app's Event Subscriptions)."""
    allowed_channels: list[str] = Field(default_factory=list, examples=[["C0123ABCD"]])
    """Channel ids the bot answers in. Empty: every channel it is invited to."""
    denied_channels: list[str] = Field(default_factory=list, examples=[["C0999ZZZZ"]])
    """Channel ids the bot never answers in."""
    api_url: str = "https://slack.com/api/"
    """Slack Web API base URL. Change only for GovSlack (https://slack-gov.com/api/)."""
    streaming: Literal["auto", "off"] = "auto"
    """"auto": replies in threads stream with chat.startStream / appendStream / stopStream
    where the workspace allows it (else post + edits); "off": always post + edits."""
    assistant_status: bool = True
    """Show "is working…" under the thread (assistant.threads.setStatus) while the agent
    works, beside the ⏳ reaction."""
    suggested_prompts: list[SuggestedPrompt] = Field(default_factory=lambda: [
        SuggestedPrompt(title="What can you do?", message="What can you help me with?"),
        SuggestedPrompt(title="Remember something",
                        message="Remember: our standup is at 9:30 on weekdays."),
    ])
    """Offered when someone opens a new assistant thread (Messages tab); empty: none."""
    suggested_prompts_title: str = "Try asking"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.enabled:
            return self
        problems = []
        if is_blank(self.bot_token):
            problems.append(missing("bot_token", "slack.enabled = true"))
        elif not self._secret(self.bot_token).startswith("xoxb-"):
            problems.append(Problem(
                "bot_token", "does not look like a bot token (expected xoxb-…)",
                "copy the Bot User OAuth Token from the app's OAuth & Permissions page"))
        if self.mode == "socket":
            if is_blank(self.app_token):
                problems.append(missing("app_token", 'slack.mode = "socket"'))
            elif not self._secret(self.app_token).startswith("xapp-"):
                problems.append(Problem(
                    "app_token", "does not look like an app-level token (expected xapp-…)",
                    "create one with the connections:write scope under Basic Information"))
        if self.mode == "http" and is_blank(self.signing_secret):
            problems.append(missing("signing_secret", 'slack.mode = "http"'))
        return self.raise_problems(problems)

    @staticmethod
    def _secret(value: SecretStr | None) -> str:
        return value.get_secret_value().strip() if value else ""
