"""Cut a live speech stream into segments at silences, using any voice-activity detector.

The detector is injected (Silero VAD in the service, a threshold in unit tests):
``detect(audio, offset) -> [(start, end), ...]`` in samples relative to ``audio``; ``offset`` is where ``audio``
starts in the stream, so a detector can cache what it computed for earlier calls. A segment is cut once speech has
been followed by ``min_silence_ms`` of silence, or when it reaches ``max_segment_s`` (then at the longest pause
inside it), so each segment is a sentence-like unit that the ASR can transcribe on its own and the listener hears
soon after the speaker pauses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tessera.translation.audio import ASR_RATE

Detector = Callable[[NDArray[np.float32], int], list[tuple[int, int]]]


@dataclass(frozen=True)
class Segment:
    start_sample: int  # absolute, from the start of the participant's stream
    end_sample: int
    audio: NDArray[np.float32]


class Segmenter:
    def __init__(
        self,
        detect: Detector,
        *,
        sample_rate: int = ASR_RATE,
        min_silence_ms: int = 500,
        max_segment_s: float = 15.0,
        min_speech_ms: int = 200,
        pad_ms: int = 150,
        check_every_ms: int = 200,
    ) -> None:
        self.detect = detect
        self.rate = sample_rate
        self.min_silence = sample_rate * min_silence_ms // 1000
        self.max_segment = int(sample_rate * max_segment_s)
        self.min_speech = sample_rate * min_speech_ms // 1000
        self.pad = sample_rate * pad_ms // 1000
        self.check_every = sample_rate * check_every_ms // 1000
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # absolute sample index of _buffer[0]
        self._unchecked = 0

    @property
    def buffered_s(self) -> float:
        return len(self._buffer) / self.rate

    def push(self, samples: NDArray[np.float32]) -> list[Segment]:
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self._unchecked += len(samples)
        if self._unchecked < self.check_every and len(self._buffer) < self.max_segment:
            return []
        self._unchecked = 0
        return self._cut(final=False)

    def flush(self) -> list[Segment]:
        """End of the speaker's turn: whatever speech is buffered becomes a segment."""
        segments = self._cut(final=True)
        self._drop(len(self._buffer))
        return segments

    def _cut(self, final: bool) -> list[Segment]:
        out: list[Segment] = []
        while True:
            spans = [(s, e) for s, e in self.detect(self._buffer, self._offset) if e > s] if len(self._buffer) else []
            if not spans:
                self._drop(max(0, len(self._buffer) - self.pad))  # silence: keep only a lead-in pad
                return out
            first, last_end = spans[0][0], spans[-1][1]
            if final or len(self._buffer) - last_end >= self.min_silence:
                end = last_end
            elif len(self._buffer) >= self.max_segment:
                end = _longest_pause(spans) or len(self._buffer)  # too long: cut at the longest pause
            else:
                return out  # still talking
            speech = sum(min(e, end) - s for s, e in spans if s < end)
            start, stop = max(0, first - self.pad), min(len(self._buffer), end + self.pad)
            if speech >= self.min_speech:  # a click or a cough is not a segment
                out.append(Segment(self._offset + start, self._offset + stop, self._buffer[start:stop].copy()))
            self._drop(end)

    def _drop(self, count: int) -> None:
        self._buffer = self._buffer[count:]
        self._offset += count


def _longest_pause(spans: list[tuple[int, int]]) -> int | None:
    """The end of the speech span that is followed by the longest pause, if there are two spans or more."""
    if len(spans) < 2:
        return None
    gaps = [(spans[i + 1][0] - spans[i][1], spans[i][1]) for i in range(len(spans) - 1)]
    return max(gaps)[1]
