"""The scripted model's paced mode (``reply_seconds``), which capacity benchmarks use as
a model with a realistic latency: a reply streams in chunks spread over that time."""

from __future__ import annotations

import http.client
import json
import time

from lettabot.testing.scripted_model import Reply, ScriptedModelServer

TEXT = "x" * 60  # four 16-character chunks


def _post(server: ScriptedModelServer, *, stream: bool) -> list[tuple[float, str]]:
    """(seconds since the request, event) for each SSE event, or the whole body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = {"model": "scripted", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}
    began = time.monotonic()
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"content-type": "application/json"})
    response = conn.getresponse()
    if not stream:
        return [(time.monotonic() - began, response.read().decode())]
    events = []
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data: "):
            events.append((time.monotonic() - began, line[6:]))
    conn.close()
    return events


def _text(event: str) -> str:
    if event == "[DONE]":
        return ""
    choices = json.loads(event).get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


def test_a_paced_reply_streams_its_chunks_over_the_reply_time() -> None:
    with ScriptedModelServer(reply_seconds=0.8) as server:
        server.on("hi", TEXT)
        events = _post(server, stream=True)
    chunks = [(at, _text(e)) for at, e in events if _text(e)]
    assert "".join(text for _, text in chunks) == TEXT
    assert len(chunks) == 4
    step = 0.8 / 8  # 4 chunks + opening, finish, usage + the pause before the first
    assert chunks[0][0] >= 2 * step  # the first words come after a wait, not at once
    assert chunks[-1][0] - chunks[0][0] >= 3 * step  # and the rest keep coming
    assert events[-1] == (events[-1][0], "[DONE]") and events[-1][0] >= 0.8


def test_a_whole_paced_reply_comes_after_the_reply_time() -> None:
    with ScriptedModelServer(reply_seconds=0.5) as server:
        [(at, body)] = _post(server, stream=False)
    assert at >= 0.5
    assert json.loads(body)["choices"][0]["message"]["content"] == "You said: hi"


def test_a_reply_with_its_own_pace_keeps_it() -> None:
    with ScriptedModelServer(reply_seconds=30) as server:
        server.on("hi", Reply.say(TEXT, delay=0.01))
        events = _post(server, stream=True)
    assert "".join(_text(e) for _, e in events) == TEXT  # it came (not 30 s later)
