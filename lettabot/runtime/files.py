"""Files in a message, before its turn: downloaded through the adapter (its credentials,
its platform's hosts only), images kept as image parts for the agent, other files saved in
the agent's workspace (``<cwd>/<files.folder>/<scope>/<name>``) so its tools can read them.

Names are reduced to a safe basename (no path, no hidden file, no control characters), so
a file cannot land outside its folder or overwrite another: a clash gets ``-2``, ``-3``...
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import unicodedata
from pathlib import Path

import anyio

from lettabot.runtime.adapter import Adapter, Attachment, InboundMessage, SupportsDownload
from lettabot.runtime.config import FilesConfig

__all__ = ["IMAGE_TYPES", "receive_files", "safe_name"]

log = logging.getLogger("lettabot.runtime.files")

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def safe_name(name: str) -> str:
    """A file name that stays in its folder: the last path part, printable, not hidden."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in unicodedata.normalize("NFC", base)
                   if unicodedata.category(c)[0] not in ("C", "Z") or c == " ").strip()
    base = base.lstrip(".") or "file"
    stem, dot, ext = base.rpartition(".")
    if dot and len(ext) <= 16:
        return f"{stem[:100]}.{ext}" if stem else f"file.{ext}"
    return base[:120]


def _folder(workspace: Path, config: FilesConfig, message: InboundMessage) -> Path:
    scope = hashlib.sha256(message.scope.key.encode()).hexdigest()[:12]
    return workspace / config.folder / f"{message.scope.adapter}-{scope}"


def _save(folder: Path, workspace: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as a NEW file in ``folder``: never through a symlink (a tool may have
    left one there), never outside the workspace, never over another file."""
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.resolve().is_relative_to(workspace.resolve()):
        raise ValueError("the uploads folder leads outside the workspace")
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, f".{suffix}") if dot and stem else (name, "")
    for n in range(1, 1000):
        target = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        try:  # O_EXCL: fails on anything already there, a dangling symlink included
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return target
    raise ValueError("too many files of that name")


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{max(n, 1) / 1000:.0f} kB"


async def _one(attachment: Attachment, adapter: SupportsDownload, config: FilesConfig,
               folder: Path, workspace: Path) -> Attachment:
    if attachment.size is not None and attachment.size > config.max_bytes:
        return attachment.model_copy(update={"note": (
            f"not downloaded: {_size(attachment.size)}, over the {_size(config.max_bytes)} "
            "limit (files.max_bytes)")})
    try:
        with anyio.fail_after(60):
            data = await adapter.download(attachment, config.max_bytes)
    except TimeoutError:
        return attachment.model_copy(update={"note": "not downloaded: took over 60 s"})
    except Exception as exc:
        log.warning("could not download %s: %s", attachment.name, exc)
        return attachment.model_copy(update={"note": f"not downloaded ({exc})"})
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if kind in IMAGE_TYPES and len(data) <= config.image_max_bytes:
        return attachment.model_copy(update={
            "data_base64": base64.b64encode(data).decode(), "size": len(data)})
    try:
        target = await anyio.to_thread.run_sync(_save, folder, workspace, safe_name(
            attachment.name), data)
    except (OSError, ValueError) as exc:
        log.warning("could not save %s: %s", attachment.name, exc)
        return attachment.model_copy(update={"note": f"not saved ({exc})"})
    return attachment.model_copy(update={
        "saved_as": str(target.relative_to(workspace)), "size": len(data)})


async def receive_files(message: InboundMessage, adapter: Adapter, config: FilesConfig,
                        workspace: Path) -> InboundMessage:
    """``message`` with its attachments downloaded (images inline, other files saved)."""
    if not message.attachments or not config.enabled:
        return message
    if not isinstance(adapter, SupportsDownload):
        return message
    folder = _folder(workspace, config, message)
    received = [a if a.data_base64 or a.saved_as else
                await _one(a, adapter, config, folder, workspace)
                for a in message.attachments]
    return message.model_copy(update={"attachments": tuple(received)})
