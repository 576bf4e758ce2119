"""What the adapter remembers across restarts, in one JSON file (mode 600): the sync
position, the event ids it handled lately, which rooms are DMs and which not, the rooms it
has told it cannot read encrypted messages. Written atomically after every sync batch,
so a restart resumes where the last batch ended and answers nothing twice."""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["SyncState"]

log = logging.getLogger(__name__)

_KEEP = 5000
"""Handled event ids kept (a sync batch is far smaller)."""


class SyncState:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.since: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.direct: set[str] = set()
        self.group: set[str] = set()
        self.warned_encrypted: set[str] = set()
        if path is not None and path.exists():
            try:
                data: Any = json.loads(path.read_text())
                self.since = data.get("since") or None
                self._seen = OrderedDict.fromkeys(data.get("seen", []))
                self.direct = set(data.get("direct", []))
                self.group = set(data.get("group", []))
                self.warned_encrypted = set(data.get("warned_encrypted", []))
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("matrix: could not read %s (%s); starting a fresh sync", path, exc)

    def seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def mark(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > _KEEP:
            self._seen.popitem(last=False)

    def save(self) -> None:
        if self.path is None:
            return
        data = {"since": self.since, "seen": list(self._seen), "direct": sorted(self.direct),
                "group": sorted(self.group),
                "warned_encrypted": sorted(self.warned_encrypted)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
