"""Posting pace per channel: Slack allows about one ``chat.postMessage`` per second in a
channel (short bursts pass) and answers 429 beyond it. A token bucket per channel keeps
replies in many threads of one busy channel under that, instead of into a 429 storm."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["ChannelPacer"]


class _Bucket:
    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now
        self.lock = anyio.Lock()


class ChannelPacer:
    """``async with pacer.turn(channel):`` before each post in ``channel``."""

    def __init__(self, per_second: float = 1.0, burst: int = 3, channels: int = 2000) -> None:
        self.per_second = per_second
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = channels

    def _bucket(self, channel: str) -> _Bucket:
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(self.burst, anyio.current_time())
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(channel)
        return bucket

    @asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        bucket = self._bucket(channel)
        async with bucket.lock:  # one waiter at a time per channel, in arrival order
            now = anyio.current_time()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.per_second)
            bucket.stamp = now
            if bucket.tokens < 1:
                await anyio.sleep((1 - bucket.tokens) / self.per_second)
                bucket.tokens, bucket.stamp = 1.0, anyio.current_time()
            bucket.tokens -= 1
        yield
