"""Getting cascade results to listeners: de-duplication, per-conference order, bounded per-listener queues.

Results can arrive twice (a worker restarted after publishing, before acking) or out of order (stages run in
parallel). ``SegmentOrder`` releases each stream's events in segment order, once each. It stops waiting for a
missing segment after a timeout, so one slow segment (a worker restarting) cannot stall a conference; when that
segment does arrive it is still delivered, late, rather than lost. ``ListenerQueue`` bounds what a slow
listener can hold: it drops that listener's oldest events and reports how many, so the others never wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class SegmentOrder(Generic[T]):
    """Releases items of one stream (e.g. Spanish speech of a conference) in ``seq`` order, each seq once.

    ``expects(seq)`` says whether this stream will ever carry ``seq`` (a segment planned without Spanish listeners
    has no Spanish speech); sequence numbers it will not carry are passed over without waiting.
    """

    next_seq: int = 1
    gap_timeout_s: float = 10.0
    expects: Callable[[int], bool] = field(default=lambda _seq: True)
    _pending: dict[int, T] = field(default_factory=dict)
    _waiting_since: float | None = None
    _skipped: set[int] = field(default_factory=set)  # passed over while missing; delivered late if they come

    def offer(self, seq: int, item: T, now: float) -> list[T]:
        if seq in self._skipped:
            self._skipped.discard(seq)
            return [item]  # late, but not lost
        if seq < self.next_seq or seq in self._pending:
            return []  # a duplicate
        self._pending[seq] = item
        return self._release(now)

    def poll(self, now: float) -> list[T]:
        """Call periodically: skips a missing segment once later ones have waited ``gap_timeout_s``."""
        return self._release(now)

    def skip_to(self, seq: int) -> None:
        """A listener who joins mid-conference starts at the next segment."""
        self.next_seq = max(self.next_seq, seq)
        self._pending = {s: v for s, v in self._pending.items() if s >= self.next_seq}

    def _release(self, now: float) -> list[T]:
        out: list[T] = []
        while True:
            while self._pending and self.next_seq not in self._pending and not self.expects(self.next_seq):
                self.next_seq += 1
            if self.next_seq in self._pending:
                out.append(self._pending.pop(self.next_seq))
                self.next_seq += 1
                self._waiting_since = None
                continue
            if not self._pending:
                self._waiting_since = None
                return out
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < self.gap_timeout_s:
                return out
            resume = min(self._pending)  # stop waiting for the gap; remember it for a late arrival
            self._skipped.update(s for s in range(self.next_seq, resume) if self.expects(s))
            if len(self._skipped) > 10_000:
                self._skipped = set(sorted(self._skipped)[-10_000:])
            self.next_seq = resume
            self._waiting_since = None


class ListenerQueue(Generic[T]):
    """A bounded queue for one listener: when full, the oldest event is dropped and counted."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._items: deque[T] = deque()
        self.capacity = capacity
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, item: T) -> None:
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    def take_dropped(self) -> int:
        count, self.dropped = self.dropped, 0
        return count

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
