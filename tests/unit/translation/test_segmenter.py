"""Segmentation with a transparent threshold detector: speech is where |sample| > 0.1."""

from __future__ import annotations

import numpy as np

from tessera.translation.segmenter import Segmenter

RATE = 16000


def threshold(audio: np.ndarray, offset: int) -> list[tuple[int, int]]:
    loud = np.abs(audio) > 0.1
    spans, start = [], None
    for i, on in enumerate(loud):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(audio)))
    return spans


def speech(seconds: float) -> np.ndarray:
    return np.full(int(seconds * RATE), 0.5, dtype=np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def feed(seg: Segmenter, audio: np.ndarray, chunk_s: float = 0.1) -> list:
    out = []
    step = int(chunk_s * RATE)
    for i in range(0, len(audio), step):
        out += seg.push(audio[i : i + step])
    return out


def test_cuts_after_silence_with_absolute_positions() -> None:
    seg = Segmenter(threshold, min_silence_ms=500, pad_ms=100)
    stream = np.concatenate([silence(1.0), speech(2.0), silence(1.0), speech(1.5), silence(1.0)])
    cuts = feed(seg, stream)
    assert len(cuts) == 2
    first, second = cuts
    # speech 1.0-3.0 s padded by 0.1 s each side; second 4.0-5.5 s.
    assert (first.start_sample, first.end_sample) == (int(0.9 * RATE), int(3.1 * RATE))
    assert (second.start_sample, second.end_sample) == (int(3.9 * RATE), int(5.6 * RATE))
    assert len(first.audio) == first.end_sample - first.start_sample
    assert seg.flush() == []


def test_short_pause_does_not_cut() -> None:
    seg = Segmenter(threshold, min_silence_ms=500)
    cuts = feed(seg, np.concatenate([speech(1.0), silence(0.3), speech(1.0), silence(0.2)]))
    assert cuts == []
    flushed = seg.flush()
    assert len(flushed) == 1 and flushed[0].end_sample - flushed[0].start_sample >= 2.3 * RATE


def test_long_speech_is_cut_at_the_longest_pause() -> None:
    seg = Segmenter(threshold, min_silence_ms=500, max_segment_s=5.0, pad_ms=0)
    stream = np.concatenate([speech(2.0), silence(0.2), speech(1.0), silence(0.4), speech(3.0)])
    cuts = feed(seg, stream)
    assert len(cuts) == 1
    assert cuts[0].end_sample == int(3.2 * RATE)  # end of the speech before the 0.4 s pause
    rest = seg.flush()
    assert len(rest) == 1 and rest[0].start_sample == int(3.6 * RATE)


def test_clicks_are_not_segments_and_silence_is_not_buffered() -> None:
    seg = Segmenter(threshold, min_silence_ms=300, min_speech_ms=200)
    assert feed(seg, np.concatenate([silence(0.5), speech(0.05), silence(1.0)])) == []
    feed(seg, silence(30.0))
    assert seg.buffered_s < 1.0  # memory stays bounded through long silences
