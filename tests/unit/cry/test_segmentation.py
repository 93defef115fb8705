"""Segments follow the sound, adapt to the room's level, and a stream gives what the clip gives."""

from __future__ import annotations

import numpy as np

from tessera.cry import corpus
from tessera.cry.segmentation import RATE, Settings, StreamSegmenter, segments
from tessera.cry.vocalisation import Voice, vocalisation


def _tone(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (10 ** (level_db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)).astype(np.float32) + _noise(
        seconds, -70, rng
    )


def _noise(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(int(seconds * RATE)) * 10 ** (level_db / 20)).astype(np.float32)


def test_events_in_quiet_are_found_where_they_are() -> None:
    rng = np.random.default_rng(0)
    clip = np.concatenate(
        [
            _noise(1.0, -60, rng),
            _tone(1.0, -20, rng),
            _noise(1.5, -60, rng),
            _tone(0.6, -25, rng),
            _noise(1.0, -60, rng),
        ]
    )
    found = [(s.start_ms, s.end_ms) for s in segments(clip)]
    assert len(found) == 2
    assert abs(found[0][0] - 1000) <= 20 and abs(found[0][1] - 2000) <= 20
    assert abs(found[1][0] - 3500) <= 20 and abs(found[1][1] - 4100) <= 20


def test_the_floor_adapts_to_a_loud_room_and_short_blips_and_silence_give_nothing() -> None:
    rng = np.random.default_rng(1)
    loud_room = np.concatenate(
        [_noise(5.0, -30, rng), _noise(1.0, -30, rng) + _tone(1.0, -12, rng), _noise(2.0, -30, rng)]
    )
    found = segments(loud_room)
    assert len(found) == 1 and abs(found[0].start_ms - 5000) <= 30
    assert segments(np.zeros(3 * RATE, np.float32)) == []
    blip = np.concatenate([_noise(1.0, -60, rng), _tone(0.1, -20, rng), _noise(1.0, -60, rng)])
    assert segments(blip) == []


def test_a_cry_bout_with_pauses_is_one_segment_and_long_sound_is_cut_at_the_maximum() -> None:
    rng = np.random.default_rng(2)
    bout = vocalisation("hunger", Voice(), 4.0, rng)
    clip = np.concatenate([_noise(1.0, -65, rng), bout + _noise(4.0, -65, rng), _noise(1.0, -65, rng)])
    found = segments(clip)
    assert len(found) == 1 and 900 <= found[0].start_ms <= 1300 and found[0].end_ms >= 4500
    long_bout = vocalisation("hunger", Voice(), 14.0, rng) + _noise(14.0, -65, rng)
    pieces = segments(np.concatenate([_noise(1.0, -65, rng), long_bout]), Settings(max_segment_ms=6000))
    assert [s.end_ms - s.start_ms for s in pieces[:2]] == [6000, 6000] and pieces[-1].end_ms >= 14_000


def test_a_stream_in_odd_chunks_gives_the_segments_of_the_whole_clip() -> None:
    family = corpus.make_family(1, 5)
    rng = np.random.default_rng(3)
    clip = np.concatenate(
        [corpus.cry(family, rng, 3.0).audio, _noise(2.0, -60, rng), corpus.cry(family, rng, 2.0).audio]
    )
    whole = segments(clip)
    streamer = StreamSegmenter()
    found = []
    at = 0
    for size in rng.integers(1, 4000, 400):
        found += streamer.push(clip[at : at + int(size)])
        at += int(size)
        if at >= len(clip):
            break
    found += streamer.flush()
    assert found == whole and len(whole) >= 2


def test_a_recording_that_starts_mid_cry_finds_the_cry_from_its_first_frame() -> None:
    rng = np.random.default_rng(6)
    bout = vocalisation("pain", Voice(), 3.0, rng) + _noise(3.0, -60, rng)
    clip = np.concatenate([bout[int(0.2 * RATE) :], _noise(2.0, -60, rng)])  # the first unit is already under way
    found = segments(clip)
    assert found and found[0].start_ms <= 30
    streamer = StreamSegmenter()
    live = [span for i in range(0, len(clip), 1600) for span in streamer.push(clip[i : i + 1600])] + streamer.flush()
    assert live == found
    short = segments(np.concatenate([_noise(0.3, -60, rng), _tone(0.5, -20, rng)]))  # shorter than the warm-up
    assert len(short) == 1 and abs(short[0].start_ms - 300) <= 20
