from __future__ import annotations

import numpy as np

from tessera.monitoring.evidence import (
    AUDIO_DIM,
    AUDIO_TOKENS,
    VISUAL_DIM,
    VISUAL_TOKENS,
    AudioObs,
    Box,
    FrameObs,
    RoomEvidence,
    context_at,
    stack_tokens,
    tokens,
    visual_token,
)


def frame(t: int, *boxes: Box, seq: int | None = None) -> FrameObs:
    return FrameObs(t, boxes, 0.4, 0.2, 0.05, seq=t + 1 if seq is None else seq)


def window(end: int) -> AudioObs:
    return AudioObs(end - 982, end, np.zeros(521, np.float32), np.full(1024, 0.5, np.float32), -20.0, 2000.0, seq=end)


def person(x: float, score: float = 0.9) -> Box:
    return Box("person", score, x, 0.2, x + 0.1, 0.6)


def test_evidence_is_time_ordered_deduplicated_and_bounded() -> None:
    evidence = RoomEvidence(keep_ms=2000)
    assert evidence.add_frame(frame(400))
    assert evidence.add_frame(frame(200))  # late arrival lands in order
    assert not evidence.add_frame(frame(400))  # a redelivery is kept once
    assert [f.timestamp_ms for f in evidence.frames] == [200, 400]
    evidence.add_audio(window(1182))
    evidence.add_frame(frame(3000))
    assert [f.timestamp_ms for f in evidence.frames] == [3000]  # older than 2 s behind the newest is dropped
    assert [a.end_ms for a in evidence.audio] == [1182]
    assert evidence.latest_ms == 3000


def test_context_aligns_both_modalities_on_time() -> None:
    frames = [frame(t) for t in range(0, 3000, 200)]
    audio = [window(t) for t in range(982, 3000, 200)]
    context = context_at(frames, audio, 2000)
    assert [f.timestamp_ms for f in context.frames] == [1200, 1400, 1600, 1800, 2000]
    assert [a.end_ms for a in context.audio] == [1382, 1582, 1782, 1982]
    assert context.span == (400, 2000)  # the oldest audio window in the context starts at 400
    early = context_at(frames, audio, 100)
    assert [f.timestamp_ms for f in early.frames] == [0] and early.audio == ()


def test_tokens_pad_at_the_front_with_presence_flags() -> None:
    context = context_at([frame(0), frame(200, person(0.1))], [window(982)], 982)
    visual, audio = tokens(context)
    assert visual.shape == (VISUAL_TOKENS, VISUAL_DIM) and audio.shape == (AUDIO_TOKENS, AUDIO_DIM)
    assert list(visual[:, 0]) == [0, 0, 0, 1, 1] and list(audio[:, 0]) == [0, 0, 0, 1]
    assert visual[4, 1] == np.float32(0.2)  # one person / 5
    assert visual[4, 13] == np.float32(0.5)  # appeared with nothing before it
    assert np.allclose(audio[3, 3:], 0.5) and 0 < audio[3, 1] < 1
    v, a = stack_tokens([context, context])
    assert v.shape == (2, VISUAL_TOKENS, VISUAL_DIM) and a.shape == (2, AUDIO_TOKENS, AUDIO_DIM)


def test_motion_follows_the_boxes() -> None:
    still = visual_token(frame(200, person(0.1)), frame(0, person(0.1)))
    moving = visual_token(frame(200, person(0.3)), frame(0, person(0.1)))
    assert still[13] == 0.0 and moving[13] > 0.5
    weak = visual_token(frame(0, person(0.1, score=0.1)))
    assert weak[1] == 0.0  # below the token floor: not counted
