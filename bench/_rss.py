"""Memory sampling for the benchmarks: RSS of this process's descendants, and its peak."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def rss_kb(pid: int | str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def letta_rss_mb() -> float:
    """The Letta processes this benchmark started (not others on the machine)."""
    total = 0
    for pid in descendants(os.getpid()):
        try:
            if b"letta" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += rss_kb(pid)
        except OSError:
            continue
    return total / 1024


def own_and_descendants_rss_mb() -> float:
    """This process plus everything it started (lettabot plus its App Servers)."""
    return (rss_kb("self") + sum(rss_kb(p) for p in descendants(os.getpid()))) / 1024


class Peak:
    """Samples ``measure`` every 100 ms until ``stop`` is set; keeps the highest value."""

    def __init__(self, measure: Callable[[], float]) -> None:
        self.measure = measure
        self.peak = 0.0
        self.stop = anyio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.measure())
            with anyio.move_on_after(0.1):
                await self.stop.wait()
