"""Typed messages, content parts and permission results.

Every message a session streams is one of the models below, told apart by ``type``::

    async for msg in session.stream():
        if msg.type == "assistant":
            print(msg.content)
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CONVERSATION_BUSY",
    "AssistantMessage",
    "ContentPart",
    "ConversationInfo",
    "ErrorMessage",
    "ImagePart",
    "InitMessage",
    "Message",
    "ModelInfo",
    "PermissionAllow",
    "PermissionDeny",
    "PermissionResult",
    "ProviderInfo",
    "ReasoningMessage",
    "ResultMessage",
    "RetryMessage",
    "StreamEventMessage",
    "TextPart",
    "ToolCallMessage",
    "ToolResultMessage",
    "Usage",
    "UserContent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# -- content a user sends ----------------------------------------------------


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class _ImageSource(_Model):
    type: Literal["base64"] = "base64"
    media_type: str
    data: str


class ImagePart(_Model):
    """An image, base64-encoded (``media_type`` like ``image/png``)."""

    type: Literal["image"] = "image"
    source: _ImageSource

    @classmethod
    def from_base64(cls, data: str, media_type: str = "image/png") -> ImagePart:
        return cls(source=_ImageSource(media_type=media_type, data=data))


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]
UserContent = str | list[ContentPart] | list[dict[str, Any]]


# -- messages a session streams ---------------------------------------------


class InitMessage(_Model):
    type: Literal["init"] = "init"
    agent_id: str
    session_id: str
    conversation_id: str
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    cwd: str | None = None


class AssistantMessage(_Model):
    type: Literal["assistant"] = "assistant"
    content: str
    uuid: str = ""
    run_id: str | None = None


class ReasoningMessage(_Model):
    type: Literal["reasoning"] = "reasoning"
    content: str
    uuid: str = ""


class ToolCallMessage(_Model):
    type: Literal["tool_call"] = "tool_call"
    tool_call_id: str
    tool_name: str
    tool_input: dict[str, Any] = Field(default_factory=dict)
    uuid: str = ""


class ToolResultMessage(_Model):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    is_error: bool = False
    uuid: str = ""


class StreamEventMessage(_Model):
    """A partial chunk (only with ``include_partial_messages=True``)."""

    type: Literal["stream_event"] = "stream_event"
    event: dict[str, Any]
    uuid: str = ""

    @property
    def text(self) -> str:
        """The text this chunk adds to an assistant message, if any."""
        if self.event.get("message_type") == "assistant_message":
            content = self.event.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        delta = self.event.get("delta") or {}
        return str(delta.get("text") or "") if isinstance(delta, dict) else ""


class ErrorMessage(_Model):
    type: Literal["error"] = "error"
    message: str
    stop_reason: str | None = None
    run_id: str | None = None
    api_error: Any = None


class RetryMessage(_Model):
    type: Literal["retry"] = "retry"
    reason: str = ""
    attempt: int = 0
    max_attempts: int = 0
    delay_ms: int = 0


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


CONVERSATION_BUSY: Final = "conversation_busy"
"""``ResultMessage.error_code`` of a turn the backend refused because the conversation
already has an active run (nothing of the message was processed: sending it again once
that run ends is safe)."""


class ResultMessage(_Model):
    """The end of a turn. ``success`` is False on errors, interrupts and limits; then
    ``error`` says why (the model's or the CLI's message) and ``result`` holds no answer.

    ``conversation_id`` is the session's :attr:`~lettabot.sdk.Session.conversation_id`
    (an agent's default conversation: the agent id), ready for ``resume_session``."""

    type: Literal["result"] = "result"
    success: bool
    subtype: Literal["success", "interrupted", "error"] = "success"
    result: str | None = None
    error: str | None = None
    error_code: str | None = None
    """Why the turn failed, in one word: :data:`CONVERSATION_BUSY`, ``"interrupted"``,
    ``"server_died"``, ``"process_exited"``, else the CLI's stop reason or ``"error"``."""
    stop_reason: str | None = None
    duration_ms: int = 0
    num_turns: int = 0
    agent_id: str | None = None
    conversation_id: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    usage: Usage | None = None


Message = Annotated[
    InitMessage
    | AssistantMessage
    | ReasoningMessage
    | ToolCallMessage
    | ToolResultMessage
    | StreamEventMessage
    | ErrorMessage
    | RetryMessage
    | ResultMessage,
    Field(discriminator="type"),
]
message_adapter: TypeAdapter[Message] = TypeAdapter(Message)


# -- permission decisions ------------------------------------------------------


class PermissionAllow(_Model):
    """Let the tool run, optionally with changed input."""

    behavior: Literal["allow"] = "allow"
    updated_input: dict[str, Any] | None = None
    updated_permissions: list[str | dict[str, Any]] | None = None
    """Permission suggestions (their ids, or the suggestion dicts of the request) the CLI
    should save as rules, so the same call runs without asking next time. CLI 0.34.12
    honours this on the App Server only (the subprocess CLI offers no suggestions)."""

    def suggestion_ids(self) -> list[str]:
        out = []
        for item in self.updated_permissions or ():
            ident = item.get("id") if isinstance(item, dict) else item
            if isinstance(ident, str) and ident:
                out.append(ident)
        return out


class PermissionDeny(_Model):
    """Refuse the tool; ``message`` is shown to the agent. ``interrupt`` ends the turn."""

    behavior: Literal["deny"] = "deny"
    message: str = "Denied by the user."
    interrupt: bool = False


PermissionResult = PermissionAllow | PermissionDeny


class ModelInfo(_Model):
    """A model the CLI can use (``list_models``); pass ``handle`` as ``model=``."""

    handle: str
    id: str = ""
    label: str = ""
    description: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None


class ProviderInfo(_Model):
    """A model provider the CLI can connect (``list_providers``), and whether it is."""

    id: str
    """What ``connect_provider`` takes: ``anthropic``, ``openai-compatible``, ``google``..."""
    display_name: str = ""
    provider_type: str = ""
    requires_api_key: bool = True
    fields: list[str] = []
    """Connection fields it asks for (``apiKey``, ``baseUrl``, ``region`` ...)."""
    auth_methods: list[str] = []
    oauth: bool = False
    """Connected only interactively (``letta connect`` in a terminal)."""
    connected: bool = False
    connected_names: list[str] = []
    base_url: str | None = None

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ProviderInfo:
        state = raw.get("connected")
        connected: dict[str, Any] = state if isinstance(state, dict) else {}
        names = [str(c.get("provider_name")) for c in raw.get("connected_providers") or []
                 if isinstance(c, dict) and c.get("is_connected", True) and c.get("provider_name")]
        return cls(
            id=str(raw["id"]), display_name=str(raw.get("display_name") or ""),
            provider_type=str(raw.get("provider_type") or ""),
            requires_api_key=bool(raw.get("requires_api_key", True)),
            fields=[str(f.get("key")) for f in raw.get("fields") or [] if isinstance(f, dict)],
            auth_methods=[str(m.get("id")) for m in raw.get("auth_methods") or []
                          if isinstance(m, dict)],
            oauth=bool(raw.get("is_oauth")),
            connected=bool(connected.get("is_connected")),
            connected_names=names,
            base_url=connected.get("base_url"),
        )


class ConversationInfo(_Model):
    """A conversation as the server lists it (``list_conversations``)."""

    id: str
    agent_id: str | None = None
    archived: bool = False
    summary: str | None = None
    model: str | None = None
    hidden: bool = False
    created_at: str | None = None
    updated_at: str | None = None
    last_message_at: str | None = None

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ConversationInfo:
        fields = {k: raw.get(k) for k in cls.model_fields if raw.get(k) is not None}
        return cls.model_validate(fields)
