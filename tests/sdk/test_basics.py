"""The seed README's examples: basic session, multi-turn, one-shot, conversations."""

from __future__ import annotations

from pathlib import Path

import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.anyio


async def test_basic_session_streams_typed_messages(letta_home: LettaHome, transport: str) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        await session.send("Hello there, this message is long enough to arrive in chunks")
        seen = [msg async for msg in session.stream()]
    assert [m.type for m in seen] == ["assistant", "result"]
    assistant, result = seen
    assert (
        assistant.content
        == "You said: Hello there, this message is long enough to arrive in chunks"
    )
    assert result.type == "result" and result.success and result.subtype == "success"
    assert result.result == assistant.content
    assert result.stop_reason == "end_turn"
    assert session.agent_id == agent_id
    assert session.session_id
    assert session.conversation_id


async def test_multi_turn_keeps_history(letta_home: LettaHome, transport: str) -> None:
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        first = await session.run_turn("pineapple pizza")
        second = await session.run_turn("What was my first message?")
    assert first.result == "You said: pineapple pizza"
    assert second.result == "Your first message was: pineapple pizza"


async def test_one_shot_prompt_on_last_used_agent(letta_home: LettaHome, transport: str) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    # The folder's last-used agent is the one just made, so prompt() finds it.
    result = await sdk.prompt("What is 2 + 2?")
    assert result.success
    assert result.result == "You said: What is 2 + 2?"
    assert result.agent_id in (agent_id, None)
    explicit = await sdk.prompt("again", agent_id)
    assert explicit.result == "You said: again"


async def test_conversations_have_separate_histories(letta_home: LettaHome, transport: str) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent_id) as a, sdk.create_session(agent_id) as b:
        await a.run_turn("apples")
        await b.run_turn("bananas")
        assert a.conversation_id != b.conversation_id
        assert a.agent_id == b.agent_id == agent_id
        conversation_a = a.conversation_id
    assert conversation_a is not None
    async with sdk.resume_session(conversation_a) as again:
        result = await again.run_turn("What was my first message?")
        assert again.conversation_id == conversation_a
        assert again.agent_id == agent_id
    assert result.result == "Your first message was: apples"


async def test_default_conversation_is_resumed_by_agent_id(
    letta_home: LettaHome, transport: str
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        await session.run_turn("first in default")
    async with sdk.resume_session(agent_id) as session:
        result = await session.run_turn("What was my first message?")
    assert result.result == "Your first message was: first in default"


async def test_images_reach_the_cli(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
        "AAAABJRU5ErkJggg=="
    )
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        result = await session.run_turn(
            [sdk.TextPart(text="what is in this image"), sdk.ImagePart.from_base64(pixel)]
        )
    assert result.success
    # The scripted model is text-only, so the CLI replaces the image part it received
    # with its placeholder: proof that the image arrived as an image.
    assert scripted_model.requests[-1].user_text == (
        "what is in this image\n(image omitted: model does not support images)"
    )


async def test_image_helpers_read_files_and_urls_and_refuse_non_images(
    letta_home: LettaHome, tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    import base64
    import http.server
    import threading

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
        "AAAABJRU5ErkJggg=="
    )
    (tmp_path / "pixel.dat").write_bytes(png)  # the type comes from the bytes, not the name
    (tmp_path / "notes.png").write_text("not an image")
    from_file = sdk.image_from_file(tmp_path / "pixel.dat")
    assert from_file.source.media_type == "image/png"
    assert base64.b64decode(from_file.source.data) == png
    with pytest.raises(ValueError, match="not an image"):
        sdk.image_from_file(tmp_path / "notes.png")

    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/pixel.dat"
        from_url = await sdk.image_from_url(url)
        assert from_url == from_file
        with pytest.raises(ValueError, match="http"):
            await sdk.image_from_url("file:///etc/passwd")
    finally:
        httpd.shutdown()
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        result = await session.run_turn([sdk.TextPart(text="and this one"), from_url])
    assert result.success
    assert "(image omitted" in scripted_model.requests[-1].user_text


async def test_list_models_and_switch_a_conversations_model(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    handles = [m.handle for m in await sdk.list_models()]
    assert {"openai-compatible/scripted", "openai-compatible/scripted-large"} <= set(handles)
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent_id) as session:
        await session.run_turn("on the small one")
        assert scripted_model.requests[-1].body["model"] == "scripted"
        await session.set_model("openai-compatible/scripted-large")
        result = await session.run_turn("on the large one")
        assert result.result == "You said: on the large one"
        assert scripted_model.requests[-1].body["model"] == "scripted-large"
    async with sdk.create_session(agent_id) as other:  # the agent's other conversations
        await other.run_turn("and here?")
        assert scripted_model.requests[-1].body["model"] == "scripted"
