"""Frame shedding: what happens when frames arrive faster than detection can take them.

Stated policy (per room):

1. At most ``max_in_flight`` frames are between the gateway and a detection result. A frame gets a credit when it is
   published; the credit comes back when its detection (or its shed marker) is seen, or after ``credit_timeout_s``
   (a lost result must not stall the room forever).
2. Frames without a credit wait in a queue of ``max_waiting``. When it is full, the OLDEST waiting frame is dropped
   and counted: the newest view of the room is what matters.
3. A detector that reaches a frame older than ``max_lag_ms`` (wall clock since the gateway accepted it) drops it and
   says so in a shed marker, so a backlog drains from its oldest end.
4. Audio is never shed (it is small and a sound of concern must not be lost); alerts are never shed (they go to a
   durable stream and ``Watch`` reads from it).

Every drop is counted by cause; ``RoomStats.frames_shed`` and the ``tessera_monitoring_frames_shed_total`` metric
report them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class FrameShedder(Generic[T]):
    """Credit-based admission of one room's frames, dropping the oldest waiting frame on overflow."""

    max_in_flight: int = 8
    max_waiting: int = 4
    credit_timeout_s: float = 10.0
    shed: int = 0
    admitted: int = 0
    _waiting: deque[tuple[int, T]] = field(default_factory=deque)
    _in_flight: OrderedDict[int, float] = field(default_factory=OrderedDict)  # seq -> when published (monotonic)

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_waiting < 0:
            raise ValueError("max_in_flight must be >= 1 and max_waiting >= 0")

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def offer(self, seq: int, item: T, now: float) -> tuple[list[tuple[int, T]], list[tuple[int, T]]]:
        """A new frame: returns (frames to publish now, frames dropped), both oldest first."""
        self._expire(now)
        self._waiting.append((seq, item))
        released = self._release(now)
        dropped: list[tuple[int, T]] = []
        while len(self._waiting) > self.max_waiting:
            dropped.append(self._waiting.popleft())
        self.shed += len(dropped)
        return released, dropped

    def done(self, seq: int, now: float) -> list[tuple[int, T]]:
        """A detection result (or a shed marker) for ``seq`` was seen: its credit returns."""
        self._in_flight.pop(seq, None)
        self._expire(now)
        return self._release(now)

    def poll(self, now: float) -> list[tuple[int, T]]:
        """Reclaims timed-out credits; returns frames that may go now."""
        self._expire(now)
        return self._release(now)

    def _expire(self, now: float) -> None:
        while self._in_flight:
            seq, sent = next(iter(self._in_flight.items()))
            if now - sent < self.credit_timeout_s:
                break
            del self._in_flight[seq]

    def _release(self, now: float) -> list[tuple[int, T]]:
        out = []
        while self._waiting and self.in_flight < self.max_in_flight:
            seq, item = self._waiting.popleft()
            self._in_flight[seq] = now
            self.admitted += 1
            out.append((seq, item))
        return out


def is_stale(accepted_unix_ms: int, now_unix_ms: int, max_lag_ms: int) -> bool:
    """Rule 3: a frame the detector reaches more than ``max_lag_ms`` after it was accepted is dropped."""
    return max_lag_ms > 0 and accepted_unix_ms > 0 and now_unix_ms - accepted_unix_ms > max_lag_ms
