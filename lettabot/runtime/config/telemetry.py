"""``[tracing]``: OpenTelemetry spans of each message's life (off by default)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config.base import Section
from lettabot.runtime.config.problems import Problem

__all__ = ["TracingConfig"]


class TracingConfig(Section):
    """OpenTelemetry traces: a span for each message's life (accepted, queued, turn, each
    model step and tool call, each approval wait, each platform post). Off unless
    ``enabled``; exported over OTLP/HTTP (see docs/operate.md, *Traces*)."""

    enabled: bool = False
    """Record and export spans."""
    exporter: Literal["otlp", "console"] = "otlp"
    """``otlp``: OTLP over HTTP (protobuf) to ``endpoint``; ``console``: one JSON span per
    line on stderr (for a first look)."""
    endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces",
                          examples=["http://otel-collector:4318/v1/traces"])
    """Where OTLP/HTTP spans are sent (a collector, Jaeger, Tempo, Honeycomb, ...): the full
    URL, with ``/v1/traces``."""
    headers: dict[str, SecretStr] = Field(default_factory=dict,
                                          examples=[{"x-honeycomb-team": "..."}])
    """Headers sent with each export (an API key); kept out of logs."""
    service_name: str = "lettabot"
    """The ``service.name`` resource attribute."""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """The share of messages traced (a message's spans are kept or dropped together)."""
    hash_user_ids: bool = True
    """Record people's platform ids as a hash (``sha256``, 16 hex characters, the same for
    the same person) instead of the id itself. Scope, conversation and agent ids are kept."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if not re.match(r"^https?://[^/\s]+", self.endpoint):
            problems.append(Problem("endpoint", "is not an http(s) URL",
                                    "write e.g. http://otel-collector:4318/v1/traces"))
        return self.raise_problems(problems)
