"""The SDK's errors: one small hierarchy under :class:`LettaSDKError`."""

from __future__ import annotations

__all__ = [
    "AgentNotFoundError",
    "AppServerUnreachableError",
    "CLIConnectionError",
    "CLIJSONDecodeError",
    "CLINotFoundError",
    "ConversationBusyError",
    "ConversationNotFoundError",
    "LettaSDKError",
    "ProcessError",
    "ProtocolTimeoutError",
    "SessionClosedError",
    "UnknownModelError",
]


class LettaSDKError(Exception):
    """Base class of every error the SDK raises."""


class CLINotFoundError(LettaSDKError):
    """The ``letta`` CLI could not be found."""

    def __init__(self, searched: list[str] | None = None) -> None:
        where = f" (looked in: {', '.join(searched)})" if searched else ""
        super().__init__(
            "The Letta Code CLI (`letta`) was not found"
            f"{where}. Install it with `pip install letta`, or set LETTA_CLI_PATH."
        )


class CLIConnectionError(LettaSDKError):
    """The CLI or App Server could not be reached, or refused the connection.

    ``status`` is the HTTP status of a refused WebSocket upgrade (401: a wrong token)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AppServerUnreachableError(CLIConnectionError):
    """No App Server answered at ``url`` (refused, timed out, no route, or a proxy's 5xx).

    A client's named host is tried for a moment only (2 s), so a host that is down fails
    the session's first request fast; other servers are tried for up to 30 s."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        super().__init__(message, status=status)


class ProcessError(LettaSDKError):
    """The CLI process failed or exited unexpectedly."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        detail = message
        if exit_code is not None:
            detail += f" (exit code {exit_code})"
        if stderr.strip():
            detail += f"\nCLI stderr:\n{stderr.strip()[-4000:]}"
        super().__init__(detail)


class CLIJSONDecodeError(LettaSDKError):
    """The CLI wrote a line that is not valid JSON."""

    def __init__(self, line: str, error: Exception) -> None:
        self.line = line
        super().__init__(f"Could not decode CLI output as JSON: {line[:200]!r} ({error})")


class ConversationNotFoundError(LettaSDKError):
    """The backend has no such conversation (resuming one that was deleted, or never was).

    ``conversation_id`` is the conversation asked for (None if unknown). Raised by
    ``Session.connect()`` (and so by the first ``send``/``run_turn``) of a resumed session."""

    def __init__(self, message: str, *, conversation_id: str | None = None,
                 agent_id: str | None = None) -> None:
        self.conversation_id = conversation_id
        self.agent_id = agent_id
        super().__init__(message)


class AgentNotFoundError(ConversationNotFoundError):
    """The backend has no such agent (so none of its conversations either).

    A :class:`ConversationNotFoundError`: resuming a conversation whose agent is gone fails
    the same way as resuming one that is gone itself. ``agent_id`` is the agent asked for."""


class ConversationBusyError(LettaSDKError):
    """The conversation already has an active run and refused a new message.

    A failed turn says so as ``ResultMessage.error_code == CONVERSATION_BUSY`` (see
    :data:`lettabot.sdk.types.CONVERSATION_BUSY`); this error is raised where no turn
    started, e.g. the App Server refused the message outright."""


class ProtocolTimeoutError(LettaSDKError):
    """A request to the CLI or App Server got no answer in time."""


class SessionClosedError(LettaSDKError):
    """The session was closed (or its process died) and can take no more requests."""


class UnknownModelError(LettaSDKError, ValueError):
    """A new agent would get a model the CLI does not offer (it could never answer).

    ``model`` is the handle asked for (None: none was given and the CLI offers none);
    ``available`` the handles the CLI offers (:func:`lettabot.sdk.list_models`)."""

    def __init__(self, model: str | None, available: list[str]) -> None:
        self.model = model
        self.available = list(available)
        if not available:
            offered = ("it offers none: connect a model provider first (`letta connect ...` "
                       "or sdk.connect_provider())")
        else:
            offered = "it offers: " + ", ".join(available)
        if model is None:
            text = f"no model was given for the new agent and the Letta CLI {offered}"
        else:
            text = f"the Letta CLI does not offer the model {model!r}; {offered}"
        super().__init__(text)
