"""Adaptive energy segmentation of 16 kHz audio into sound events (pure numpy), for clips and live streams alike.

Per 10 ms frame, the level (dB of RMS) is compared with an adaptive noise floor: a low percentile of the last few
seconds' frame levels, so a louder room raises the bar and a quiet nursery lowers it. A frame more than ``margin_db``
above the floor (and above an absolute minimum) is active. Active frames separated by less than ``merge_gap_ms``
belong to one segment (the pauses inside a cry bout); a segment closes after that much quiet, or when it reaches
``max_segment_ms``; segments shorter than ``min_segment_ms`` are dropped. ``StreamSegmenter`` keeps this state
across chunks, so a stream and the same audio as one clip give the same segments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

RATE = 16_000
FRAME = RATE // 100  # 10 ms
FLOOR_EVERY = 10  # frames between noise-floor estimates (100 ms)


@dataclass(frozen=True)
class Settings:
    margin_db: float = 9.0
    absolute_min_db: float = -62.0
    floor_percentile: float = 15.0
    floor_window_ms: int = 4000
    merge_gap_ms: int = 450
    min_segment_ms: int = 250
    max_segment_ms: int = 6000
    warmup_ms: int = 1500  # the first frames are decided once this much is heard with a quiet part in it
    warmup_max_ms: int = 6000  # ... or once this much is heard at all
    warmup_quiet_ms: int = 100  # how much quiet (margin_db below the loud part) decides the start


@dataclass(frozen=True)
class Span:
    start: int  # sample index, inclusive
    end: int  # sample index, exclusive

    @property
    def start_ms(self) -> int:
        return self.start * 1000 // RATE

    @property
    def end_ms(self) -> int:
        return self.end * 1000 // RATE


def frame_levels(samples: NDArray[np.float32]) -> NDArray[np.float64]:
    """dB (RMS, full scale 1.0) of each whole 10 ms frame."""
    n = len(samples) // FRAME
    frames = samples[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.asarray(20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9))


@dataclass
class StreamSegmenter:
    """Feed 16 kHz samples in any chunk sizes; get each segment's span (in samples since the start) as it closes."""

    settings: Settings = field(default_factory=Settings)
    _history: deque[float] = field(default_factory=deque)
    _pending: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    _frame_index: int = 0
    _start: int | None = None  # first active frame of the open segment
    _last_active: int = -1
    _floor_db: float | None = None
    _warmup: list[float] = field(default_factory=list)  # levels of the first frames, not decided yet

    def push(self, samples: NDArray[np.float32]) -> list[Span]:
        data = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(data) // FRAME * FRAME
        self._pending = data[whole:]
        closed: list[Span] = []
        for level in frame_levels(data[:whole]):
            closed += self._take(float(level))
        return closed

    def flush(self) -> list[Span]:
        """The open segment, if long enough (end of a clip or a stream)."""
        closed = self._decide_warmup(self._warmup_floor()) if self._warmup else []
        span = self._close(self._last_active + 1)
        return closed + ([span] if span is not None else [])

    def _take(self, level: float) -> list[Span]:
        """A recording may start in the middle of a cry: its first frames are held until at least ``warmup_ms`` is
        heard and it holds a quiet part (``margin_db`` below its loud part: a pause between cry units is enough),
        or until ``warmup_max_ms``; then they are decided against that quiet part, not against the loud first
        frame. Only the start of a stream waits: after that, each frame is decided as it comes."""
        s = self.settings
        if self._frame_index == 0:
            self._warmup.append(level)
            held = len(self._warmup)
            if held < s.warmup_ms // 10:
                return []
            loud = float(np.percentile(self._warmup, 90))
            quiet = [x for x in self._warmup if x < loud - s.margin_db]
            if len(quiet) * 10 >= s.warmup_quiet_ms:
                return self._decide_warmup(float(np.median(quiet)))
            if held >= s.warmup_max_ms // 10:
                return self._decide_warmup(float(np.percentile(self._warmup, s.floor_percentile)))
            return []
        span = self._step(level)
        return [span] if span is not None else []

    def _warmup_floor(self) -> float:
        """For a recording shorter than the warm-up: its quiet part if it has one, else its low percentile."""
        loud = float(np.percentile(self._warmup, 90))
        quiet = [x for x in self._warmup if x < loud - self.settings.margin_db]
        return float(np.median(quiet)) if quiet else float(np.percentile(self._warmup, self.settings.floor_percentile))

    def _decide_warmup(self, floor: float) -> list[Span]:
        held, self._warmup = self._warmup, []
        self._floor_db = floor
        closed = []
        for level in held:
            span = self._step(level, fixed_floor=True)
            if span is not None:
                closed.append(span)
        return closed

    def _floor(self) -> float:
        """Re-estimated every ``FLOOR_EVERY`` frames (on the frame index, so any chunking gives the same floor): a
        percentile per frame costs more than the classifier. The frame itself is in the history, so a recording
        that starts loud starts no segment until quiet is heard."""
        if self._frame_index % FLOOR_EVERY == 1 or self._floor_db is None:
            self._floor_db = float(np.percentile(self._history, self.settings.floor_percentile))
        return self._floor_db

    def _step(self, level: float, fixed_floor: bool = False) -> Span | None:
        s = self.settings
        index = self._frame_index
        self._frame_index += 1
        self._history.append(level)
        if len(self._history) > s.floor_window_ms // 10:
            self._history.popleft()
        floor = self._floor_db if fixed_floor and self._floor_db is not None else self._floor()
        active = level > max(floor + s.margin_db, s.absolute_min_db)
        closed = None
        if active:
            if self._start is None:
                self._start = index
            self._last_active = index
            if (index + 1 - self._start) * 10 >= s.max_segment_ms:
                closed = self._close(index + 1)
        elif self._start is not None and (index - self._last_active) * 10 >= s.merge_gap_ms:
            closed = self._close(self._last_active + 1)
        return closed

    def _close(self, end_frame: int) -> Span | None:
        start, self._start = self._start, None
        if start is None or (end_frame - start) * 10 < self.settings.min_segment_ms:
            return None
        return Span(start * FRAME, end_frame * FRAME)


def segments(samples: NDArray[np.float32], settings: Settings | None = None) -> list[Span]:
    """A whole clip's segments (the stream segmenter fed in one go)."""
    segmenter = StreamSegmenter(settings or Settings())
    return segmenter.push(samples) + segmenter.flush()
