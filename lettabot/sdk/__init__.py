"""lettabot.sdk: the Letta Code SDK in Python.

Drives the real ``letta`` CLI: agents with persistent memory that learn over time.

    from lettabot import sdk

    async with sdk.resume_session(agent_id) as session:
        await session.send("Hello")
        async for msg in session.stream():
            if msg.type == "assistant":
                print(msg.content)
"""

from lettabot.sdk._internal.memfs import local_backend_dir, memory_dir
from lettabot.sdk.cli import cli_env, find_cli
from lettabot.sdk.client import (
    LettaClient,
    ServerInfo,
    archive_conversation,
    available_transports,
    connect_provider,
    create_agent,
    create_session,
    default_client,
    fork_conversation,
    get_default_transport,
    list_conversations,
    list_models,
    list_providers,
    prompt,
    resume_session,
    set_default_transport,
)
from lettabot.sdk.errors import (
    AgentNotFoundError,
    AppServerUnreachableError,
    CLIConnectionError,
    CLIJSONDecodeError,
    CLINotFoundError,
    ConversationBusyError,
    ConversationNotFoundError,
    LettaSDKError,
    ProcessError,
    ProtocolTimeoutError,
    SessionClosedError,
    UnknownModelError,
)
from lettabot.sdk.images import image_from_base64, image_from_file, image_from_url
from lettabot.sdk.mcp import (
    McpHttpServer,
    McpServer,
    McpServerState,
    McpStdioServer,
    McpToolInfo,
)
from lettabot.sdk.options import (
    AgentOptions,
    BlockRef,
    MemoryBlock,
    PermissionMode,
    SessionOptions,
    SystemPromptPreset,
)
from lettabot.sdk.permissions import CancelSignal, CanUseToolRequest
from lettabot.sdk.session import Session
from lettabot.sdk.tools import Tool, ToolResult, tool
from lettabot.sdk.types import (
    CONVERSATION_BUSY,
    AssistantMessage,
    ConversationInfo,
    ErrorMessage,
    ImagePart,
    InitMessage,
    Message,
    ModelInfo,
    PermissionAllow,
    PermissionDeny,
    PermissionResult,
    ProviderInfo,
    ReasoningMessage,
    ResultMessage,
    RetryMessage,
    StreamEventMessage,
    TextPart,
    ToolCallMessage,
    ToolResultMessage,
)

__all__ = [
    "CONVERSATION_BUSY",
    "AgentNotFoundError",
    "AgentOptions",
    "AppServerUnreachableError",
    "AssistantMessage",
    "BlockRef",
    "CLIConnectionError",
    "CLIJSONDecodeError",
    "CLINotFoundError",
    "CanUseToolRequest",
    "CancelSignal",
    "ConversationBusyError",
    "ConversationInfo",
    "ConversationNotFoundError",
    "ErrorMessage",
    "ImagePart",
    "InitMessage",
    "LettaClient",
    "LettaSDKError",
    "McpHttpServer",
    "McpServer",
    "McpServerState",
    "McpStdioServer",
    "McpToolInfo",
    "MemoryBlock",
    "Message",
    "ModelInfo",
    "PermissionAllow",
    "PermissionDeny",
    "PermissionMode",
    "PermissionResult",
    "ProcessError",
    "ProtocolTimeoutError",
    "ProviderInfo",
    "ReasoningMessage",
    "ResultMessage",
    "RetryMessage",
    "ServerInfo",
    "Session",
    "SessionClosedError",
    "SessionOptions",
    "StreamEventMessage",
    "SystemPromptPreset",
    "TextPart",
    "Tool",
    "ToolCallMessage",
    "ToolResult",
    "ToolResultMessage",
    "UnknownModelError",
    "archive_conversation",
    "available_transports",
    "cli_env",
    "connect_provider",
    "create_agent",
    "create_session",
    "default_client",
    "find_cli",
    "fork_conversation",
    "get_default_transport",
    "image_from_base64",
    "image_from_file",
    "image_from_url",
    "list_conversations",
    "list_models",
    "list_providers",
    "local_backend_dir",
    "memory_dir",
    "prompt",
    "resume_session",
    "set_default_transport",
    "tool",
]
