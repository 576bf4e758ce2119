"""A small MCP server for tests, on the official SDK: ``python demo_server.py stdio`` or
``python demo_server.py http PORT`` (streamable HTTP at ``/mcp``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("demo")
STARTED = time.time()


@server.tool(description="Add two numbers.")
def add(a: int, b: int) -> str:
    return f"sum={a + b}"


@server.tool(description="Look up a word (changes nothing).",
             annotations=ToolAnnotations(read_only_hint=True))
def lookup(word: str) -> str:
    return f"{word} means {word[::-1]}"


@server.tool(description="Which process serves this call.")
def whoami() -> str:
    return f"pid={os.getpid()}"


@server.tool(description="Stop the server at once.")
def crash() -> str:
    os._exit(3)


@server.tool(description="Never answer.")
def hang() -> str:
    time.sleep(3600)
    return "late"


@server.tool(description="Read a text file.")
def read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"cannot read: {type(exc).__name__}"


@server.tool(description="The value of an environment variable.")
def getenv(name: str) -> str:
    return f"{name}={os.environ.get(name, '<unset>')}"


@server.tool(description="Write a file in the working folder.")
def write_here(name: str, text: str) -> str:
    Path(name).write_text(text)
    return f"wrote {Path(name).resolve()}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
