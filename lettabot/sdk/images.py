"""Images for :meth:`Session.send`: from base64, a file, or a URL (as the TS SDK's
``imageFromBase64`` / ``imageFromFile`` / ``imageFromURL``)."""

from __future__ import annotations

import base64
import urllib.request
from pathlib import Path

import anyio

from lettabot.sdk.types import ImagePart

__all__ = ["MAX_IMAGE_BYTES", "image_from_base64", "image_from_file", "image_from_url"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The largest image these helpers read (larger ones raise ValueError)."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _media_type(data: bytes) -> str:
    """The type the bytes say (models take these four; a name or header can lie)."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("not an image (PNG, JPEG, GIF or WebP expected)")


def image_from_base64(data: str, media_type: str = "image/png") -> ImagePart:
    """An image part from base64 text."""
    return ImagePart.from_base64(data, media_type)


def _part(data: bytes) -> ImagePart:
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"the image is larger than {MAX_IMAGE_BYTES} bytes")
    return ImagePart.from_base64(base64.b64encode(data).decode(), _media_type(data))


def image_from_file(path: str | Path) -> ImagePart:
    """An image part from a file (its type from its bytes)."""
    file = Path(path)
    if file.stat().st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"{file} is larger than {MAX_IMAGE_BYTES} bytes")
    return _part(file.read_bytes())


async def image_from_url(url: str, *, timeout: float = 30.0) -> ImagePart:  # noqa: ASYNC109
    """An image part from an ``http(s)`` URL, downloaded now (the CLI gets the bytes)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")

    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read(MAX_IMAGE_BYTES + 1))

    return _part(await anyio.to_thread.run_sync(fetch))
