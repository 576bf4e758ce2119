"""Saving people's files in the agent's workspace cannot be turned against the machine:
names stay in their folder, a symlink a tool left is never written through, a folder that
leads outside the workspace is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lettabot.runtime.adapter import Attachment, InboundMessage, Scope
from lettabot.runtime.config import FilesConfig
from lettabot.runtime.files import receive_files, safe_name

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Files:
    """An adapter with downloads, serving fixed bytes."""

    name = "files"

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def download(self, attachment: Attachment, limit: int) -> bytes:
        return self.data


def _message(*names: str) -> InboundMessage:
    return InboundMessage(
        scope=Scope(adapter="files", channel="C1", thread="t1"), user_id="U1", text="here",
        message_id="m1", attachments=tuple(Attachment(name=n, url=f"x:{n}",
                                                      content_type="text/plain")
                                           for n in names))


def test_names_keep_to_their_folder() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\\\windows\\\\evil.bat") == "evil.bat"
    assert safe_name(".bashrc") == "bashrc"
    assert safe_name("a\u202eb\x00c.txt") == "abc.txt"
    assert safe_name("") == "file"


async def test_a_planted_symlink_is_not_written_through(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside.txt"
    first = await receive_files(_message("notes.txt"), Files(b"one"), FilesConfig(),  # type: ignore[arg-type]
                                workspace)
    folder = (workspace / str(first.attachments[0].saved_as)).parent
    (folder / "notes-2.txt").symlink_to(outside)  # a tool left a trap for the next upload
    again = await receive_files(_message("notes.txt"), Files(b"two"), FilesConfig(),  # type: ignore[arg-type]
                                workspace)
    saved = again.attachments[0].saved_as
    assert saved is not None and saved.endswith("notes-3.txt")
    assert not outside.exists() and (workspace / saved).read_bytes() == b"two"


async def test_an_uploads_folder_leading_outside_the_workspace_is_refused(
    tmp_path: Path,
) -> None:
    workspace, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    elsewhere.mkdir()
    workspace.mkdir()
    (workspace / "uploads").symlink_to(elsewhere, target_is_directory=True)
    got = await receive_files(_message("a.txt"), Files(b"x"), FilesConfig(),  # type: ignore[arg-type]
                              workspace)
    assert got.attachments[0].saved_as is None
    assert "outside the workspace" in (got.attachments[0].note or "")
    assert not any(elsewhere.rglob("*.txt"))
