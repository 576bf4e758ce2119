"""``lettabot run --demo``: the whole bot with no model key, clearly labelled as a demo.

The demo starts the project's scripted model server (its "demo brain": echo, ``run: <cmd>``
asks to run a command, ``remember: <fact>`` saves a fact to the agent's memory files, and a
question about the ``secret word`` answers from memory) and a Letta CLI home of its own under
``<data_dir>/demo`` (local backend, connected to that server), so nothing touches the user's
real Letta settings, agents or lettabot store. Only the web chat runs; it says DEMO on the page.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lettabot.runtime.config import Config
from lettabot.runtime.demo_model import Reply, ScriptedModelServer, prepare_template
from lettabot.runtime.store import default_store_url

__all__ = ["DEMO_MODEL", "Demo", "banner", "demo_mode", "enter_demo"]

DEMO_MODEL = "openai-compatible/scripted"
DEMO_AGENT_NAME = "lettabot-demo"
STORY = (
    "Once upon a time a small bot lived in a chat window. Every morning it read the notes in "
    "its memory folder, so it never forgot a friend's name or a secret word. One day someone "
    "asked it to run a command. The bot did not just do it: it asked first, and waited for a "
    "click on Approve. Everyone slept well after that. The end."
)
"""The demo's streamed reply to "tell me a story" (slow enough to watch it arrive)."""



@dataclass(frozen=True)
class Demo:
    """A running demo: the config to run with and where its pieces are."""

    config: Config
    model_url: str
    home: Path


def demo_config(config: Config, root: Path, home: Path | None = None) -> Config:
    """``config`` changed to run the demo: scripted model, its own agent, store and workspace,
    its own Letta home (``home``, through ``letta.env``: our environment is left alone), web
    chat only (host, port and token kept from ``config``)."""
    env = {"LETTA_API_KEY": "", "LETTA_BASE_URL": ""}  # never the user's Letta account
    if home is not None:
        env |= {"HOME": str(home),
                "LETTA_LOCAL_BACKEND_DIR": str(home / ".letta" / "lc-local-backend")}
    letta = config.letta.model_copy(
        update={
            "backend": "local",
            "base_url": None,
            "api_key": None,
            "model": DEMO_MODEL,
            "agent_id": None,
            "agent_name": DEMO_AGENT_NAME,
            "permission_mode": "standard",
            "cwd": root / "workspace",
            "allowed_tools": [],
            "disallowed_tools": [],
            "env": env,
            "providers": [],  # the demo's own scripted model, never the team's keys
        }
    )
    return config.model_copy(
        update={
            "letta": letta,
            "store": config.store.model_copy(update={"url": default_store_url(root)}),
            "servers": config.servers.model_copy(update={"count": 1, "urls": []}),
            # the web chat only (the demo needs the web adapter installed)
            **{name: section.model_copy(update={"enabled": name == "web"})
               for name, section in config.sections().items()},
            "adapters": {},
        }
    )


@contextmanager
def demo_mode(config: Config) -> Iterator[Demo]:
    """Start the scripted model and point the Letta CLI at a demo home for the duration.

    The CLI finds its home through ``HOME`` (and ``LETTA_LOCAL_BACKEND_DIR``); both go to the
    CLI through ``letta.env``, never into this process's environment.
    """
    root = config.data_dir / "demo"
    (root / "workspace").mkdir(parents=True, exist_ok=True)
    with ScriptedModelServer() as model:
        model.on("tell me a story", Reply.say(STORY, chunk_delay=0.08))
        home = prepare_template(root, model.base_url)
        yield Demo(demo_config(config, root, home), model.base_url, home)


def banner(demo: Demo) -> str:
    """What the terminal shows when the demo starts."""
    return "\n".join(
        [
            "=" * 72,
            " lettabot DEMO — replies come from a scripted stand-in model, not a real AI.",
            " No API key is used. The Letta agent, its memory and tool approvals are real.",
            f"   model server: {demo.model_url}   demo data: {demo.home.parent}",
            " Try in the web chat:  hello  |  tell me a story",
            "   run: echo hi > file.txt   (asks for your approval first)",
            "   remember: the secret word is mango   then New conversation and",
            "   what is the secret word?",
            "=" * 72,
        ]
    )


def enter_demo(config: Config) -> Config:
    """For ``lettabot run --demo``: start the demo for the rest of the process (stopped at
    exit), print the banner, and return the config to run with."""
    stack = ExitStack()
    demo = stack.enter_context(demo_mode(config))
    atexit.register(stack.close)
    print(banner(demo), file=sys.stdout, flush=True)
    return demo.config
