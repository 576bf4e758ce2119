"""What the web chat keeps across restarts, beside its token in the data dir
(``<data_dir>/web-chat.json``, mode 600; in memory only without a data dir):

- each user's conversations: the tab ids (a tab id is a scope, and so a conversation with
  its own workspace folder), a title (the first message, or a name given), when last used;
- the answers each tab offered a rating on: the item id the rating is stored under (the
  store's ``message_ref``), the end of the answer's text, and the latest rating. After a
  restart the page's transcript is rebuilt from the conversation's stored messages, whose
  ids are not the page's: :meth:`WebState.match` finds each restored answer's old id by
  its text, in order, so a rating shows again and a new click changes the same rating.

Small and written at once (atomically) on each change: a message sent, a rename, an answer
offered or rated; never while a reply streams.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

__all__ = ["STATE_FILE", "WebState"]

log = logging.getLogger("lettabot.web")

STATE_FILE = "web-chat.json"
MAX_CONVERSATIONS = 200
"""Per user: the least recently used are forgotten (their conversations stay in Letta)."""
MAX_ANSWERS = 200
"""Per tab: ratings of older answers are still stored, but not shown on restored ones."""
MAX_TITLE = 80
_TAIL = 300
"""Characters of an answer's end kept to recognise it among restored messages."""

Rating = Literal["good", "bad"]


def _one_line(text: str, limit: int = MAX_TITLE) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _norm(text: str) -> str:
    return " ".join(text.split())


class WebState:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._users: dict[str, dict[str, dict[str, Any]]] = {}
        self._answers: dict[str, list[dict[str, Any]]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text("utf-8"))
                self._users = {str(u): dict(c) for u, c in (data.get("users") or {}).items()}
                self._answers = {str(t): list(a) for t, a in (data.get("answers") or {}).items()}
            except (OSError, ValueError, AttributeError, TypeError):
                log.warning("web chat: %s is unreadable; starting an empty list of "
                            "conversations", path, exc_info=True)

    # conversations ---------------------------------------------------------------

    def conversations(self, user: str) -> list[dict[str, Any]]:
        """The user's conversations, most recently used first."""
        mine = self._users.get(user, {})
        return sorted(({"tab": tab, **entry} for tab, entry in mine.items()),
                      key=lambda c: c.get("updated", 0), reverse=True)

    def owner(self, tab: str) -> str | None:
        return next((u for u, c in self._users.items() if tab in c), None)

    def touch(self, user: str, tab: str, text: str) -> bool:
        """A message in ``tab``: listed (titled after it) if new, else moved to the top.
        True if it is new."""
        mine = self._users.setdefault(user, {})
        now = time.time()
        entry = mine.get(tab)
        new = entry is None or not entry.get("title")
        if entry is None:
            entry = mine[tab] = {"created": now}
        if new:
            entry["title"] = _one_line(text) or "Conversation"
        entry["updated"] = now
        while len(mine) > MAX_CONVERSATIONS:
            oldest = min(mine, key=lambda t: mine[t].get("updated", 0))
            del mine[oldest]
            self._answers.pop(oldest, None)
        self._save()
        return new

    def rename(self, user: str, tab: str, title: str) -> bool:
        """Name one of the user's conversations; False if it is not theirs or the name is
        empty."""
        entry = self._users.get(user, {}).get(tab)
        title = _one_line(title)
        if entry is None or not title:
            return False
        entry["title"] = title
        entry["named"] = True
        self._save()
        return True

    def untitle(self, tab: str) -> None:
        """The tab's conversation was reset: its next message names it (unless it was
        named), and its old answers are not the new conversation's."""
        for mine in self._users.values():
            entry = mine.get(tab)
            if entry is not None and not entry.get("named"):
                entry["title"] = ""
        self._answers.pop(tab, None)
        self._save()

    # answers -----------------------------------------------------------------

    def answer(self, tab: str, item_id: str, text: str) -> None:
        """``item_id`` of ``tab`` was offered 👍/👎."""
        answers = self._answers.setdefault(tab, [])
        if any(a["id"] == item_id for a in answers):
            return
        answers.append({"id": item_id, "tail": _norm(text)[-_TAIL:]})
        del answers[:-MAX_ANSWERS]
        self._save()

    def rate(self, tab: str, item_id: str, rating: Rating, text: str = "") -> None:
        """The latest rating of ``item_id`` (recorded first if it was not offered here)."""
        answers = self._answers.setdefault(tab, [])
        found = next((a for a in answers if a["id"] == item_id), None)
        if found is None:
            found = {"id": item_id, "tail": _norm(text)[-_TAIL:]}
            answers.append(found)
            del answers[:-MAX_ANSWERS]
        found["rating"] = rating
        self._save()

    def match(self, tab: str, texts: list[str]) -> list[tuple[str, str] | None]:
        """For restored answers (oldest first): (the id their rating is stored under, the
        rating or ``"offered"``), or None for one never offered a rating. In order: an
        answer is the next recorded one whose text ends as the restored text does (what
        the page showed may start with tool notes)."""
        answers = self._answers.get(tab, [])
        out: list[tuple[str, str] | None] = []
        start = 0
        for text in texts:
            end = _norm(text)[-_TAIL:]
            found = None
            for n in range(start, len(answers)):
                tail = answers[n]["tail"]
                if end and tail and (tail.endswith(end) or end.endswith(tail)):
                    found = n
                    break
            if found is None:
                out.append(None)
                continue
            start = found + 1
            out.append((answers[found]["id"], answers[found].get("rating") or "offered"))
        return out

    # disk --------------------------------------------------------------------

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"users": self._users, "answers": self._answers},
                          ensure_ascii=False, separators=(",", ":"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".web-chat.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp: mode 600
                    out.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            log.warning("web chat: could not save %s", self.path, exc_info=True)
