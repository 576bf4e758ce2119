"""The Letta App Server (``letta server --listen``): process, shared connection, frames."""

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import TOKEN_ENV, URL_ENV, Lease, acquire
from lettabot.sdk._internal.app_server.process import LocalServer

__all__ = ["TOKEN_ENV", "URL_ENV", "Connection", "Lease", "LocalServer", "acquire"]
