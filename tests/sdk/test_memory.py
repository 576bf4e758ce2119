"""System prompts, memory blocks, and memory that outlives the process."""

from __future__ import annotations

import os
import sys
import textwrap

import anyio
import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.anyio


async def _system_prompt_of(agent_id: str, model: ScriptedModelServer) -> str:
    async with sdk.create_session(agent_id) as session:
        await session.run_turn("hi")
    return model.requests[-1].system


async def test_custom_system_prompt(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(
        model=letta_home.model, system_prompt="You are Zorblax, a terse test agent."
    )
    system = await _system_prompt_of(agent_id, scripted_model)
    assert system.startswith("You are Zorblax, a terse test agent.")
    assert "Letta Code agent" not in system


async def test_system_prompt_presets_differ(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    letta = await _system_prompt_of(
        await sdk.create_agent(model=letta_home.model, system_prompt="letta-claude"), scripted_model
    )
    claude = await _system_prompt_of(
        await sdk.create_agent(model=letta_home.model, system_prompt="claude"), scripted_model
    )
    assert "Letta Code agent" in letta
    assert letta.split("<")[0] != claude.split("<")[0]


async def test_system_prompt_preset_with_append(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(
        model=letta_home.model,
        system_prompt={"type": "preset", "preset": "default", "append": "Always answer in French."},
    )
    system = await _system_prompt_of(agent_id, scripted_model)
    assert "Letta Code agent" in system
    assert "Always answer in French." in system


async def test_persona_human_project_reach_the_system_prompt(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(
        model=letta_home.model,
        persona="I am Captain Test.",
        human="The user is Ada.",
        project="Project Zeta ships on Fridays.",
    )
    system = await _system_prompt_of(agent_id, scripted_model)
    for text in ("I am Captain Test.", "The user is Ada.", "Project Zeta ships on Fridays."):
        assert text in system
    assert "Letta Code agent" in system  # the base prompt is kept


async def test_memory_blocks_and_empty_memory(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    custom = await sdk.create_agent(
        model=letta_home.model,
        memory=["persona", {"label": "style_guide", "value": "Use short sentences."}],
        persona="I review code.",
    )
    system = await _system_prompt_of(custom, scripted_model)
    assert "Use short sentences." in system and "I review code." in system
    assert "<human>" not in system
    bare = await sdk.create_agent(model=letta_home.model, memory=[])
    system = await _system_prompt_of(bare, scripted_model)
    assert "<persona>" not in system and "<human>" not in system


async def test_memory_persists_into_a_new_process(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(
        agent_id, can_use_tool=lambda name, args: sdk.PermissionAllow()
    ) as session:
        saved = await session.run_turn("remember: the secret word is banana")
    assert saved.result == "Tool result: saved"

    # A fresh Python process (and so a fresh CLI / App Server) with a new conversation.
    script = textwrap.dedent(
        f"""
        import anyio
        from lettabot import sdk

        async def main():
            sdk.set_default_transport({transport!r})
            async with sdk.create_session({agent_id!r}) as session:
                result = await session.run_turn("What is the secret word?")
            print(result.result)

        anyio.run(main)
        """
    )
    with anyio.fail_after(120):
        done = await anyio.run_process(
            [sys.executable, "-c", script],
            env=dict(os.environ),
            cwd=letta_home.workdir,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "The secret word is banana."
    # ...and it came through the agent's memory files, not through this test.
    assert "banana" in (letta_home.memory_dir(agent_id) / "notes.md").read_text()


async def test_shared_memory_across_conversations(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    allow = lambda name, args: sdk.PermissionAllow()  # noqa: E731
    async with sdk.create_session(agent_id, can_use_tool=allow) as first:
        await first.run_turn("remember: the secret word is mango")
    async with sdk.create_session(agent_id) as second:
        result = await second.run_turn("what is the secret word?")
        assert second.conversation_id != first.conversation_id
    assert result.result == "The secret word is mango."


async def test_memory_options_on_an_existing_agent_reach_its_new_conversations(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    """The seed README's `createSession(agentId, {persona, memory: [...]})`."""
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(
        agent_id,
        memory=["persona", {"label": "rules", "value": "Prefer functional patterns."}],
        persona="You are a senior Python developer.",
    ) as session:
        await session.run_turn("hi")
    system = scripted_model.requests[-1].system
    assert "You are a senior Python developer." in system
    assert "Prefer functional patterns." in system
    assert "<human>" not in system


async def test_the_seed_example_secret_word_across_two_resume_sessions(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    """The seed README as written: teach in resume_session(agent_id), close, resume the same
    way and ask. The default conversation reopened must see memory committed since."""
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        await session.run_turn("hello")  # the default conversation exists, its prompt compiled
    async with sdk.resume_session(
        agent_id, can_use_tool=lambda name, args: sdk.PermissionAllow()
    ) as session:
        saved = await session.run_turn("remember: the secret word is banana")
    assert saved.result == "Tool result: saved"
    async with sdk.resume_session(agent_id) as session:
        result = await session.run_turn("What is the secret word?")
    assert result.result == "The secret word is banana."
    assert "secret word is banana" in scripted_model.requests[-1].system


async def test_a_default_conversation_id_from_the_sdk_resumes_it(
    letta_home: LettaHome, transport: str
) -> None:
    """'Save conversationId, resume it later' on an agent's default conversation."""
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        await session.run_turn("my first words")
        saved = session.conversation_id
    assert saved is not None
    async with sdk.resume_session(saved) as again:
        result = await again.run_turn("what was my first message?")
        assert again.agent_id == agent_id and again.conversation_id == saved
    assert result.result == "Your first message was: my first words"


async def test_recompile_brings_a_live_conversation_up_to_date(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    allow = lambda name, args: sdk.PermissionAllow()  # noqa: E731
    async with sdk.resume_session(agent_id) as reader:
        await reader.run_turn("hello")
        async with sdk.create_session(agent_id, can_use_tool=allow) as writer:
            await writer.run_turn("remember: the secret word is kiwi")
        await reader.recompile()
        result = await reader.run_turn("What is the secret word?")
    assert result.result == "The secret word is kiwi."
