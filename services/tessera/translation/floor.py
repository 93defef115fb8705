"""Floor control for turn-taking: one speaker at a time, a FIFO queue, a maximum hold time.

Only the holder's audio enters the cascade, which is what turns the N(N-1) pipelines of an all-pairs design into
one pipeline per spoken segment (arXiv 2512.13904). Pure: time comes in as an argument, notices go out as values.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class NoticeKind(enum.Enum):
    GRANTED = "granted"  # to the new holder
    QUEUED = "queued"  # to a waiting participant, with its position (1 = next)
    RELEASED = "released"  # to the former holder
    CHANGED = "changed"  # to everyone: the holder is now `holder` (empty: nobody)


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    to: str | None  # participant id; None means everyone
    holder: str
    position: int = 0
    reason: str = ""


class Floor:
    def __init__(self, max_hold_s: float) -> None:
        if max_hold_s <= 0:
            raise ValueError("max_hold_s must be > 0")
        self.max_hold_s = max_hold_s
        self.holder = ""
        self._since = 0.0
        self._queue: deque[str] = deque()

    @property
    def queue(self) -> list[str]:
        return list(self._queue)

    def may_speak(self, participant: str) -> bool:
        return bool(participant) and participant == self.holder

    def expires_at(self) -> float | None:
        return self._since + self.max_hold_s if self.holder else None

    def request(self, participant: str, now: float) -> list[Notice]:
        if participant == self.holder:
            return [Notice(NoticeKind.GRANTED, participant, participant, reason="already held")]
        if not self.holder:
            return self._grant(participant, now, "requested")
        if participant not in self._queue:
            self._queue.append(participant)
        return [Notice(NoticeKind.QUEUED, participant, self.holder, self._queue.index(participant) + 1, "requested")]

    def release(self, participant: str, now: float, reason: str = "released") -> list[Notice]:
        """The holder gives the floor up (or a waiting participant leaves the queue)."""
        if participant in self._queue:
            self._queue.remove(participant)
            return self._positions("queue moved")
        if participant != self.holder:
            return []
        notices = [Notice(NoticeKind.RELEASED, participant, "", reason=reason)]
        self.holder = ""
        if self._queue:
            notices += self._grant(self._queue.popleft(), now, reason)
            notices += self._positions("queue moved")
        else:
            notices.append(Notice(NoticeKind.CHANGED, None, "", reason=reason))
        return notices

    def leave(self, participant: str, now: float) -> list[Notice]:
        """A participant disconnected: release its floor or its place in line."""
        return self.release(participant, now, "disconnected")

    def expire(self, now: float) -> list[Notice]:
        """Take the floor from a holder who has had it longer than the maximum."""
        deadline = self.expires_at()
        if deadline is None or now < deadline:
            return []
        return self.release(self.holder, now, "max_hold")

    def _grant(self, participant: str, now: float, reason: str) -> list[Notice]:
        self.holder, self._since = participant, now
        return [
            Notice(NoticeKind.GRANTED, participant, participant, reason=reason),
            Notice(NoticeKind.CHANGED, None, participant, reason=reason),
        ]

    def _positions(self, reason: str) -> list[Notice]:
        return [Notice(NoticeKind.QUEUED, p, self.holder, i + 1, reason) for i, p in enumerate(self._queue)]
