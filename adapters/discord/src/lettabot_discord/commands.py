"""The ``/lettabot reset|status|stop|memory|rules|schedules`` application commands."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import discord
from discord import app_commands

from lettabot.runtime.adapter import CommandResult

__all__ = ["COMMANDS", "CommandRunner", "lettabot_group"]

log = logging.getLogger(__name__)

COMMANDS: dict[str, str] = {
    "reset": "Start a new conversation here (the agent keeps its memory)",
    "status": "Show the agent and conversation used here",
    "stop": "Stop the reply that is running here",
    "memory": "Show the agent's memory",
    "rules": "List the \"Always allow\" rules here",
    "schedules": "List the schedules here, or cancel one",
    "usage": "Show today's tokens of you, here and the bot against the budgets",
    "budget": "Lift this channel's budgets for today (approvers)",
}

CommandRunner = Callable[[discord.Interaction[Any], str], Awaitable[CommandResult]]
"""``(interaction, command) -> result``: runs a command for the interaction's channel."""

_QUICK = 2.0
"""Seconds to wait before deferring (Discord wants an answer within 3)."""


async def _answer(interaction: discord.Interaction[Any], run: CommandRunner, name: str) -> None:
    """Run the command; answer at once if it is quick, else defer and follow up."""
    done = anyio.Event()
    box: list[CommandResult] = []

    async def work() -> None:
        try:
            box.append(await run(interaction, name))
        except Exception:
            log.exception("discord: /lettabot %s failed", name)
            box.append(CommandResult(text=f"`/lettabot {name}` failed.", ephemeral=True))
        finally:
            done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            with anyio.move_on_after(_QUICK):
                await done.wait()
            if not done.is_set():
                await interaction.response.defer(thinking=True)
            await done.wait()
        result = box[0]
        if interaction.response.is_done():
            await interaction.followup.send(result.text, suppress_embeds=True)
        else:
            await interaction.response.send_message(result.text, ephemeral=result.ephemeral,
                                                     suppress_embeds=True)
    except discord.HTTPException as exc:
        log.warning("discord: could not answer /lettabot %s: %s", name, exc)


def lettabot_group(run: CommandRunner) -> app_commands.Group:
    """``/lettabot`` with one subcommand per runtime command."""
    group = app_commands.Group(name="lettabot", description="Control lettabot in this channel")
    for name, description in COMMANDS.items():
        callback = (_schedules(run) if name == "schedules" else _budget(run) if name == "budget"
                    else _command(run, name))
        group.add_command(
            app_commands.Command(name=name, description=description, callback=callback)
        )
    return group


def _schedules(run: CommandRunner) -> Callable[..., Coroutine[Any, Any, None]]:
    @app_commands.describe(cancel="the id of a schedule to cancel (from the list)")
    async def schedules(interaction: discord.Interaction[Any], cancel: str | None = None) -> None:
        await _answer(interaction, run, f"schedules cancel {cancel}" if cancel else "schedules")

    return schedules


def _budget(run: CommandRunner) -> Callable[..., Coroutine[Any, Any, None]]:
    @app_commands.describe(lift="`all` (no limits here today) or a number of tokens to add")
    async def budget(interaction: discord.Interaction[Any], lift: str | None = None) -> None:
        amount = "" if lift is None or lift.strip().lower() == "all" else f" {lift.strip()}"
        await _answer(interaction, run, "budget" if lift is None else f"budget lift{amount}")

    return budget


def _command(
    run: CommandRunner, name: str
) -> Callable[[discord.Interaction[Any]], Coroutine[Any, Any, None]]:
    # app_commands reads the callback's signature: it must take only the interaction
    async def command(interaction: discord.Interaction[Any]) -> None:
        await _answer(interaction, run, name)

    return command
