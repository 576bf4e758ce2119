"""Opening a conversation on an App Server: ``runtime_start`` and what it needs first.

A new agent is made (``create_agent``, or a raw body inside ``runtime_start``), a resumed
conversation's agent is looked up, and the server is asked to start the runtime; a
reopen after the server died asks again with approvals recovered. Also: which session
options this transport cannot honour (:func:`unsupported_options`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.models import model_for_new_agent
from lettabot.sdk._internal.app_server.recompile import recompile_on
from lettabot.sdk._internal.cli import last_used_agent
from lettabot.sdk._internal.cli_words import not_found_error
from lettabot.sdk._internal.transport import Target
from lettabot.sdk.errors import ProcessError, ProtocolTimeoutError
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.types import InitMessage

__all__ = ["Handshake", "unsupported_options"]

log = logging.getLogger("lettabot.sdk.app_server")


def unsupported_options(options: SessionOptions, target: Target) -> list[str]:
    """Options this transport cannot map (the session must use ``subprocess``)."""
    out: list[str] = []
    preset = options.preset
    if preset is not None and (preset.preset != "default" or preset.append is not None):
        out.append("system_prompt preset (CLI flag --system only)")
    if options.system_prompt is not None and not target.new_agent:
        out.append("system_prompt for an existing agent (CLI flag --system only)")
    asks = options.cli_permission_mode != "unrestricted"
    if (options.allowed_tools is not None or options.disallowed_tools is not None) and asks and (
        options.can_use_tool is not None
    ):
        # execution_settings scope tools per conversation, but the server then denies
        # every approval ("Tool requires approval (headless mode)") instead of asking.
        out.append("allowed_tools/disallowed_tools together with can_use_tool")
    return out


def _remember_agent(cwd: Path, agent_id: str) -> None:
    path = cwd / ".letta" / "settings.local.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            return
        data["lastAgent"] = agent_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
    except (OSError, ValueError):
        log.debug("could not record the last-used agent in %s", path, exc_info=True)


class Handshake:
    """How one session opens (and reopens) its conversation."""

    def __init__(self, options: SessionOptions, target: Target, cwd: Path) -> None:
        self.options = options
        self.target = target
        self.cwd = cwd
        self.timeout = options.request_timeout

    def check(self) -> None:
        """Refuse options this transport cannot honour."""
        unsupported = unsupported_options(self.options, self.target)
        if unsupported:
            raise ProcessError(
                "the app_server transport cannot honour: " + "; ".join(unsupported)
                + " (use transport='subprocess')"
            )

    async def open(self, conn: Connection) -> dict[str, Any]:
        """Start the target's runtime; returns the ``runtime_start_response``."""
        response = await self._runtime_start(conn, await self._start_fields(conn))
        if self.target.conversation_id is not None:
            # An existing conversation: its prompt may predate memory committed since.
            runtime = response["runtime"]
            try:
                await recompile_on(conn, runtime.get("agent_id"),
                                   str(runtime["conversation_id"]), self.timeout)
            except (ProcessError, ProtocolTimeoutError) as exc:  # e.g. a backend without it
                log.warning("could not bring conversation %s up to date with the agent's "
                            "memory: %s", runtime["conversation_id"], exc)
        return response

    async def reopen(self, conn: Connection, runtime: dict[str, Any]) -> dict[str, Any]:
        """Start an open conversation's runtime again (on a new server), recovering the
        approvals it waited for."""
        fields: dict[str, Any] = {
            "agent_id": runtime["agent_id"],
            "conversation_id": runtime["conversation_id"],
            "mode": self.options.cli_permission_mode,
            "cwd": str(self.cwd),
            "recover_approvals": True,
        }
        fields.update(self._tool_fields())
        return await self._runtime_start(conn, fields)

    def init_message(self, response: dict[str, Any]) -> InitMessage:
        """The session's init message from a ``runtime_start_response`` (and the agent
        becomes the folder's last-used one, as with the CLI)."""
        runtime = response["runtime"]
        agent = response.get("agent") or {}
        _remember_agent(self.cwd, str(runtime["agent_id"]))
        conversation_id = str(runtime["conversation_id"])
        return InitMessage(
            agent_id=str(runtime["agent_id"]),
            session_id=conversation_id,
            conversation_id=conversation_id,
            model=agent.get("model") if isinstance(agent, dict) else None,
            tools=[str(t.get("name", t)) if isinstance(t, dict) else str(t)
                   for t in (agent.get("tools") or [])] if isinstance(agent, dict) else [],
            cwd=str(self.cwd),
        )

    def _tool_fields(self) -> dict[str, Any]:
        opts = self.options
        fields: dict[str, Any] = {}
        if opts.allowed_tools is not None or opts.disallowed_tools is not None:
            fields["execution_settings"] = frames.execution_settings(
                opts.allowed_tools, opts.disallowed_tools
            )
        if opts.tools:
            fields["external_tools"] = [{"tools": [t.definition() for t in opts.tools]}]
        return fields

    async def _start_fields(self, conn: Connection) -> dict[str, Any]:
        opts, target = self.options, self.target
        fields: dict[str, Any] = {
            "mode": opts.cli_permission_mode,
            "cwd": str(self.cwd),
        }
        fields.update(self._tool_fields())
        if opts.skill_sources is not None:
            fields["skill_sources"] = list(opts.skill_sources)
        agent_id = target.agent_id
        if target.new_agent:
            agent_id = await self._new_agent(conn, fields)
        elif agent_id is None and target.conversation_id is not None:
            agent_id = await self._agent_of(conn, target.conversation_id)
        elif agent_id is None:
            agent_id = last_used_agent(self.cwd) or await self._new_agent(conn, fields)
        if agent_id is not None:
            fields["agent_id"] = agent_id
        if target.conversation_id is not None:
            fields["conversation_id"] = target.conversation_id
        else:
            fields["create_conversation"] = {}
        return fields

    async def _new_agent(self, conn: Connection, fields: dict[str, Any]) -> str | None:
        """A new agent: the CLI's own (its default system prompt), unless a custom system
        prompt or block references are given; those go in a raw ``create_agent`` body in
        ``runtime_start``. Memory blocks of a CLI agent are written by the client as memory
        files (see ``lettabot.sdk._internal.memfs``), as on the subprocess transport.
        Its model is one the server offers (see ``choose_model``)."""
        opts = self.options
        model = await model_for_new_agent(conn, opts.model, self.timeout)
        if opts.custom_system is not None or opts.agent_options().block_refs():
            fields["create_agent"] = {"body": self._agent_body(model), "memfs": True}
            return None
        frame: dict[str, Any] = {"type": "create_agent", "request_id": conn.new_id("agent"),
                                 "personality": "blank", "model": model}
        if opts.tags:
            frame["tags"] = list(opts.tags)
        answer = await conn.request(frame, "create_agent_response", self.timeout)
        if not answer.get("success") or not answer.get("agent_id"):
            raise ProcessError(f"the App Server could not create an agent: {answer.get('error')}")
        return str(answer["agent_id"])

    def _agent_body(self, model: str) -> dict[str, Any]:
        opts = self.options
        body: dict[str, Any] = {"tags": ["origin:letta-code"], "model": model}
        if "/" in model:  # what the CLI records; its toolset choice depends on it
            body["model_settings"] = {"provider_type": model.split("/", 1)[0]}
        if opts.custom_system is not None:
            body["system"] = opts.custom_system
        if opts.memory is not None or any(
            v is not None for v in (opts.persona, opts.human, opts.project)
        ):
            body["memory_blocks"] = [
                {k: v for k, v in b.model_dump().items() if v is not None} for b in opts.blocks()
            ]
        refs = opts.agent_options().block_refs()
        if refs:
            body["block_ids"] = [r.block_id for r in refs]
        body["tags"] += list(opts.tags or [])
        return body

    async def _agent_of(self, conn: Connection, conversation_id: str) -> str:
        frame = {"type": "conversation_retrieve", "request_id": conn.new_id("conv"),
                 "conversation_id": conversation_id}
        response = await conn.request(frame, "conversation_retrieve_response", self.timeout)
        conversation = response.get("conversation") or {}
        agent_id = conversation.get("agent_id") if isinstance(conversation, dict) else None
        if not response.get("success") or not agent_id:
            error = str(response.get("error") or "no agent")
            message = f"conversation {conversation_id!r} not found: {error}"
            raise not_found_error(error, message=message) or ProcessError(message)
        return str(agent_id)

    async def _runtime_start(self, conn: Connection, fields: dict[str, Any]) -> dict[str, Any]:
        frame = frames.runtime_start(conn.new_id("runtime-start"), **fields)
        response = await conn.request(frame, "runtime_start_response", self.timeout)
        if not response.get("success") or not isinstance(response.get("runtime"), dict):
            error = str(response.get("error") or "runtime_start failed")
            message = f"the App Server could not open the conversation: {error}"
            raise not_found_error(error, message=message) or ProcessError(message)
        return response
