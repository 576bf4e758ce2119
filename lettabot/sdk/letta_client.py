"""The former home of :class:`~lettabot.sdk.LettaClient`: see :mod:`lettabot.sdk.client`."""

from lettabot.sdk.client import (
    LettaClient,
    ServerInfo,
    archive_conversation,
    connect_provider,
    create_agent,
    create_session,
    default_client,
    fork_conversation,
    list_conversations,
    list_models,
    list_providers,
    prompt,
    resume_session,
)

__all__ = [
    "LettaClient",
    "ServerInfo",
    "archive_conversation",
    "connect_provider",
    "create_agent",
    "create_session",
    "default_client",
    "fork_conversation",
    "list_conversations",
    "list_models",
    "list_providers",
    "prompt",
    "resume_session",
]
