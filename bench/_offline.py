"""What every runtime benchmark needs: the scripted model and a connected CLI home in a
temporary folder (this process's HOME while it runs), and a table printer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lettabot.testing.letta_home import LettaHome, prepare_template
from lettabot.testing.scripted_model import ScriptedModelServer


@contextmanager
def offline_home() -> Iterator[tuple[ScriptedModelServer, LettaHome]]:
    with ScriptedModelServer() as model, tempfile.TemporaryDirectory() as tmp:
        template = prepare_template(Path(tmp) / "template", model.base_url)
        home = LettaHome.copy_of(template, Path(tmp) / "home",
                                 model=f"openai-compatible/{model.models[0]}")
        os.environ.update(home.env)
        os.environ.setdefault("NODE_COMPILE_CACHE", str(Path(tmp) / "node-cache"))
        os.chdir(home.workdir)
        yield model, home


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>12}  note")
    print("-" * (width + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
