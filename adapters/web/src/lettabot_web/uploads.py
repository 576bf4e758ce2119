"""Files a page uploaded, held until the runtime downloads them for the message that
carries them (``upload:<id>`` attachment URLs). Bounded in files and bytes: the oldest go."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from lettabot.runtime.adapter import Attachment

__all__ = ["MAX_UPLOAD", "Uploads"]

MAX_UPLOAD = 10_000_000
"""Bytes per file."""


@dataclass
class _Upload:
    tab: str
    name: str
    content_type: str
    data: bytes


class Uploads:
    def __init__(self, max_bytes: int = 64_000_000, max_files: int = 256) -> None:
        self._files: OrderedDict[str, _Upload] = OrderedDict()
        self._max_bytes = max_bytes
        self._max_files = max_files

    def add(self, tab: str, name: str, content_type: str, data: bytes) -> str:
        upload_id = secrets.token_urlsafe(12)
        self._files[upload_id] = _Upload(tab, name, content_type, data)
        while len(self._files) > self._max_files or sum(
                len(u.data) for u in self._files.values()) > self._max_bytes:
            self._files.popitem(last=False)
        return upload_id

    def attachments(self, tab: str, ids: list[str]) -> list[Attachment]:
        """The tab's own uploads among ``ids`` (another tab's, or unknown ones, are not)."""
        out = []
        for upload_id in ids:
            upload = self._files.get(upload_id)
            if upload is not None and upload.tab == tab:
                out.append(Attachment(name=upload.name, url=f"upload:{upload_id}",
                                      content_type=upload.content_type,
                                      size=len(upload.data)))
        return out

    def get(self, upload_id: str, tab: str | None = None) -> tuple[str, str, bytes] | None:
        """(name, content type, bytes) of a file, kept (a download may be repeated); None
        if unknown or, with ``tab``, another tab's."""
        upload = self._files.get(upload_id)
        if upload is None or (tab is not None and upload.tab != tab):
            return None
        return upload.name, upload.content_type, upload.data

    def take(self, url: str) -> bytes | None:
        """The bytes behind an ``upload:<id>`` URL, once."""
        upload = self._files.pop(url.removeprefix("upload:"), None) if url.startswith(
            "upload:") else None
        return upload.data if upload else None
