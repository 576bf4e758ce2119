"""OpenTelemetry spans of a message's life (``[tracing]``); no-ops unless configured.

One trace per message::

    lettabot.message          intake: access, dedupe, context, submit (outcome)
    ├─ lettabot.queued        from acceptance until its turn starts (any replica)
    └─ lettabot.turn          the turn (conversation, agent, outcome, tokens)
       ├─ lettabot.model_step each model call, until a tool call or the end
       ├─ lettabot.tool_call  each tool call, until its result
       │  └─ lettabot.approval  the wait for a decision, and who decided
       └─ lettabot.post       each platform post or edit (attempts, retries, 429s)

A message's context crosses the scheduler and the cluster's inbox as a W3C
``traceparent`` carrier (:func:`carrier` / :func:`context_from`), so the turn joins the
message's trace wherever it runs. The approval broker is called from the SDK's own tasks,
so a running turn's spans are found by conversation and tool call (:meth:`Tracing.turn`).
People's ids are hashed by default (``hash_user_ids``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lettabot import sdk
from lettabot.runtime.adapter import RateLimited, Scope
from lettabot.runtime.config import TracingConfig

__all__ = [
    "Tracing", "TurnTrace", "attributes", "carrier", "configure_tracing", "context_from", "failed",
    "post_span", "retried", "shutdown_tracing", "tracing",
]

log = logging.getLogger("lettabot.runtime.tracing")

TRACER = "lettabot"
_propagator = TraceContextTextMapPropagator()


class Tracing:
    """The process's tracer, how ids are recorded, and each running turn's spans."""

    def __init__(self, provider: TracerProvider | None = None, *,
                 hash_user_ids: bool = True) -> None:
        self.provider = provider
        self.hash_user_ids = hash_user_ids
        self.tracer: trace.Tracer = (provider.get_tracer(TRACER) if provider is not None
                                     else trace.NoOpTracer())
        self._turns: dict[str, Span] = {}
        self._tools: dict[tuple[str, str], Span] = {}

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def user(self, adapter: str, user_id: str) -> str:
        """A person's id as recorded: ``sha256("<adapter>:<id>")``, 16 hex characters."""
        if not self.hash_user_ids or not user_id:
            return user_id
        return hashlib.sha256(f"{adapter}:{user_id}".encode()).hexdigest()[:16]

    @contextmanager
    def turn(self, conversation_id: str, span: Span) -> Iterator[None]:
        """``span`` is ``conversation_id``'s running turn while inside (approvals, asked
        from the SDK's tasks, find their parent here)."""
        self._turns[conversation_id] = span
        try:
            yield
        finally:
            if self._turns.get(conversation_id) is span:
                del self._turns[conversation_id]
            for key in [k for k in self._tools if k[0] == conversation_id]:
                del self._tools[key]

    def parent_of_approval(self, conversation_id: str,
                           tool_call_id: str) -> otel_context.Context | None:
        """The context an approval of ``tool_call_id`` belongs in: its tool call's span,
        else its turn's; None outside a turn."""
        span = (self._tools.get((conversation_id, tool_call_id))
                or self._turns.get(conversation_id))
        return trace.set_span_in_context(span) if span is not None else None

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


_current = Tracing()


def tracing() -> Tracing:
    """The process's :class:`Tracing` (no-op spans unless :func:`configure_tracing` ran)."""
    return _current


def configure_tracing(config: TracingConfig, exporter: SpanExporter | None = None) -> Tracing:
    """Install the process's tracing from ``config`` (``exporter``: instead of the
    configured one, e.g. an in-memory exporter in tests; spans are then exported as they
    end). Disabled and no ``exporter``: spans are no-ops."""
    global _current
    _current.shutdown()
    if not config.enabled and exporter is None:
        _current = Tracing(hash_user_ids=config.hash_user_ids)
        return _current
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif config.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=config.endpoint, headers=headers, timeout=10)))
        log.info("tracing: spans go to %s", config.endpoint)
    _current = Tracing(provider, hash_user_ids=config.hash_user_ids)
    return _current


def shutdown_tracing() -> None:
    """Export what is left and go back to no-op spans."""
    global _current
    _current.shutdown()
    _current = Tracing()


def carrier() -> dict[str, str]:
    """The current span's context as W3C ``traceparent`` headers (empty outside a span)."""
    out: dict[str, str] = {}
    _propagator.inject(out)
    return out


def context_from(headers: Mapping[str, str]) -> otel_context.Context:
    """The context :func:`carrier` wrote (an empty context for an empty carrier)."""
    return _propagator.extract(dict(headers))


def failed(span: Span, error: BaseException | str) -> None:
    """Mark ``span`` as failed with ``error``."""
    if isinstance(error, BaseException):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    else:
        span.set_status(Status(StatusCode.ERROR, error[:200]))


@contextmanager
def post_span(kind: str, scope: Scope, chars: int) -> Iterator[Span]:
    """A ``lettabot.post`` span: one platform post, edit or stream append, with retries."""
    with tracing().tracer.start_as_current_span(
            "lettabot.post", kind=SpanKind.CLIENT,
            attributes=attributes(post=kind, adapter=scope.adapter, scope=scope.key,
                                  chars=chars)) as span:
        yield span


def retried(span: Span, error: Exception, delay: float) -> None:
    """A post is tried again after ``delay`` s (``error``: a rate limit or a failure)."""
    limited = isinstance(error, RateLimited)
    span.add_event("retry", attributes(error=type(error).__name__, delay_s=delay,
                                       rate_limited=limited))


def attributes(**values: Any) -> dict[str, Any]:
    """``lettabot.<key>`` attributes, without the empty ones."""
    return {f"lettabot.{k}": v for k, v in values.items() if v not in (None, "")}


class TurnTrace:
    """The spans of one turn's model steps and tool calls, read off its message stream."""

    def __init__(self, traced: Tracing, turn: Span, conversation_id: str) -> None:
        self._traced = traced
        self._turn = turn
        self._conversation = conversation_id
        self._parent = trace.set_span_in_context(turn)
        self._step: Span | None = None
        self._steps = 0

    def _start_step(self) -> None:
        self._steps += 1
        self._step = self._traced.tracer.start_span(
            "lettabot.model_step", context=self._parent,
            attributes=attributes(step=self._steps))

    def _end_step(self, ended_by: str) -> None:
        if self._step is not None:
            self._step.set_attribute("lettabot.ended_by", ended_by)
            self._step.end()
            self._step = None

    def sent(self) -> None:
        """The input went out: the first model step begins."""
        self._start_step()

    def saw(self, msg: sdk.Message) -> None:
        """Account for one message of the turn's stream."""
        tools = self._traced._tools
        if isinstance(msg, sdk.ToolCallMessage):
            self._end_step("tool_call")
            key = (self._conversation, msg.tool_call_id)
            tools[key] = self._traced.tracer.start_span(
                "lettabot.tool_call", context=self._parent,
                attributes=attributes(tool=msg.tool_name, tool_call_id=msg.tool_call_id))
        elif isinstance(msg, sdk.ToolResultMessage):
            span = tools.pop((self._conversation, msg.tool_call_id), None)
            if span is not None:
                if msg.is_error:
                    failed(span, "the tool returned an error")
                span.end()
            if self._step is None:
                self._start_step()
        elif isinstance(msg, sdk.RetryMessage):
            (self._step or self._turn).add_event("retry", attributes(
                reason=msg.reason, attempt=msg.attempt, delay_ms=msg.delay_ms))
        elif isinstance(msg, sdk.ErrorMessage):
            (self._step or self._turn).add_event("error", attributes(
                message=msg.message[:500], stop_reason=msg.stop_reason))
        elif isinstance(msg, sdk.ResultMessage):
            self.end(msg)

    def end(self, result: sdk.ResultMessage | None = None) -> None:
        """The turn's stream ended (``result``) or was cut: close what is open."""
        self._end_step("result" if result is not None else "cancelled")
        for key in [k for k in self._traced._tools if k[0] == self._conversation]:
            self._traced._tools.pop(key).end()
        if result is not None:
            self._turn.set_attributes(attributes(
                model_steps=self._steps, stop_reason=result.stop_reason,
                error_code=result.error_code))
            if result.usage is not None:
                self._turn.set_attributes(attributes(
                    prompt_tokens=result.usage.prompt_tokens,
                    completion_tokens=result.usage.completion_tokens,
                    total_tokens=result.usage.total_tokens))
