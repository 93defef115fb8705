"""What the detectors saw, aligned by stream time, and the tokens the fusion network reads.

A room's evidence is a short history of analysed frames (detections + frame statistics) and scored audio windows
(AudioSet probabilities + YAMNet embedding + loudness and spectral centroid). ``RoomEvidence.context(t)`` aligns the
two modalities on stream time: the last ``visual_tokens`` frames and the last ``audio_tokens`` audio windows at or
before ``t``. Visual tokens follow arXiv 2511.18698 (box counts, confidences, motion, wavelet energy); audio tokens
are the embedding plus spectral features. Pure numpy.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

VISUAL_TOKENS = 5  # 1 s of frames at 5 fps
AUDIO_TOKENS = 4  # the last 4 audio windows (200 ms apart, each 0.982 s long)
CONTEXT_MS = 1500  # evidence older than this relative to the evaluation time is not in the context
TOKEN_DETECTION_FLOOR = 0.25  # detections below this confidence do not enter the tokens
EMBEDDING_DIM = 1024
AUDIO_CLASSES = 521

_GROUPS: dict[str, tuple[str, ...]] = {
    "bag": ("backpack", "handbag", "suitcase", "umbrella"),
    "vehicle": ("bicycle", "car", "motorbike", "motorcycle", "aeroplane", "airplane", "bus", "train", "truck", "boat"),
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "furniture": ("chair", "sofa", "couch", "bed", "diningtable", "dining table", "toilet", "bench", "pottedplant"),
    "electronics": ("tvmonitor", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "sharp": ("knife", "scissors", "baseball bat", "fork"),
}
_GROUP_OF = {name: group for group, names in _GROUPS.items() for name in names}
_GROUP_ORDER = (*_GROUPS, "other")
_GROUP_SCALE = {"bag": 3.0, "vehicle": 3.0, "animal": 3.0, "furniture": 5.0, "electronics": 3.0, "sharp": 2.0}

# present, persons, all boxes, person max/mean confidence, person area, 7 groups, motion, luma mean/std, detail
VISUAL_DIM = 6 + len(_GROUP_ORDER) + 4
# present, loudness, centroid, embedding
AUDIO_DIM = 3 + EMBEDDING_DIM


@dataclass(frozen=True)
class Box:
    class_name: str
    score: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def area(self) -> float:
        return max(0.0, self.x_max - self.x_min) * max(0.0, self.y_max - self.y_min)

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre: where an object stands, the point tested against zones."""
        return (self.x_min + self.x_max) / 2.0, self.y_max

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x_min + self.x_max) / 2.0, (self.y_min + self.y_max) / 2.0


@dataclass(frozen=True)
class FrameObs:
    timestamp_ms: int
    boxes: tuple[Box, ...]
    luma_mean: float = 0.0
    luma_std: float = 0.0
    detail_energy: float = 0.0
    seq: int = 0


@dataclass(frozen=True)
class AudioObs:
    start_ms: int
    end_ms: int
    scores: NDArray[np.float32]  # [521] class probabilities
    embedding: NDArray[np.float32]  # [1024]
    loudness_dbfs: float
    centroid_hz: float
    seq: int = 0


@dataclass(frozen=True)
class Context:
    """The evidence aligned at one stream time: frames and audio windows, oldest first."""

    at_ms: int
    frames: tuple[FrameObs, ...]
    audio: tuple[AudioObs, ...]

    @property
    def latest_frame(self) -> FrameObs | None:
        return self.frames[-1] if self.frames else None

    @property
    def latest_audio(self) -> AudioObs | None:
        return self.audio[-1] if self.audio else None

    @property
    def span(self) -> tuple[int, int]:
        starts = [f.timestamp_ms for f in self.frames] + [a.start_ms for a in self.audio]
        return (min(starts) if starts else self.at_ms), self.at_ms


@dataclass
class RoomEvidence:
    """A bounded, time-ordered history of one room's analysed frames and audio windows.

    Repeats (the same frame or window delivered twice, e.g. after a worker restart) are ignored by ``seq``.
    """

    keep_ms: int = 6000
    frames: list[FrameObs] = field(default_factory=list)
    audio: list[AudioObs] = field(default_factory=list)
    _frame_seqs: set[int] = field(default_factory=set)
    _audio_seqs: set[int] = field(default_factory=set)

    @property
    def latest_ms(self) -> int:
        last_frame = self.frames[-1].timestamp_ms if self.frames else -1
        last_audio = self.audio[-1].end_ms if self.audio else -1
        return max(last_frame, last_audio)

    def add_frame(self, frame: FrameObs) -> bool:
        if frame.seq and frame.seq in self._frame_seqs:
            return False
        keys = [f.timestamp_ms for f in self.frames]
        self.frames.insert(bisect.bisect_right(keys, frame.timestamp_ms), frame)
        if frame.seq:
            self._frame_seqs.add(frame.seq)
        self._trim()
        return True

    def add_audio(self, window: AudioObs) -> bool:
        if window.seq and window.seq in self._audio_seqs:
            return False
        keys = [a.end_ms for a in self.audio]
        self.audio.insert(bisect.bisect_right(keys, window.end_ms), window)
        if window.seq:
            self._audio_seqs.add(window.seq)
        self._trim()
        return True

    def _trim(self) -> None:
        horizon = self.latest_ms - self.keep_ms
        while self.frames and self.frames[0].timestamp_ms < horizon:
            self._frame_seqs.discard(self.frames.pop(0).seq)
        while self.audio and self.audio[0].end_ms < horizon:
            self._audio_seqs.discard(self.audio.pop(0).seq)

    def context(self, at_ms: int, *, visual_tokens: int = VISUAL_TOKENS, audio_tokens: int = AUDIO_TOKENS) -> Context:
        return context_at(self.frames, self.audio, at_ms, visual_tokens=visual_tokens, audio_tokens=audio_tokens)


def context_at(
    frames: Sequence[FrameObs],
    audio: Sequence[AudioObs],
    at_ms: int,
    *,
    visual_tokens: int = VISUAL_TOKENS,
    audio_tokens: int = AUDIO_TOKENS,
    context_ms: int = CONTEXT_MS,
) -> Context:
    """The last frames with timestamp in (at - context, at] and audio windows ending in (at - context, at]."""
    low = at_ms - context_ms
    chosen_frames = [f for f in frames if low < f.timestamp_ms <= at_ms][-visual_tokens:]
    chosen_audio = [a for a in audio if low < a.end_ms <= at_ms][-audio_tokens:]
    return Context(at_ms, tuple(chosen_frames), tuple(chosen_audio))


def _motion(current: FrameObs, previous: FrameObs | None) -> float:
    """How far detected objects moved since the previous frame (normalised image units, capped at 1).

    An object that appears with nothing before it counts as 0.5; nothing at all is 0.
    """
    now = [b for b in current.boxes if b.score >= TOKEN_DETECTION_FLOOR]
    if not now:
        return 0.0
    before = [b for b in previous.boxes if b.score >= TOKEN_DETECTION_FLOOR] if previous is not None else []
    if not before:
        return 0.5 if previous is not None else 0.0
    moves: list[float] = []
    for box in now:
        cx, cy = box.centre
        same = [b for b in before if b.class_name == box.class_name] or before
        moves.append(min(float(np.hypot(cx - b.centre[0], cy - b.centre[1])) for b in same))
    return min(1.0, float(np.mean(moves)) * 5.0)


def visual_token(frame: FrameObs, previous: FrameObs | None = None) -> NDArray[np.float32]:
    boxes = [b for b in frame.boxes if b.score >= TOKEN_DETECTION_FLOOR]
    persons = [b for b in boxes if b.class_name == "person"]
    groups = dict.fromkeys(_GROUP_ORDER, 0)
    for box in boxes:
        if box.class_name != "person":
            groups[_GROUP_OF.get(box.class_name, "other")] += 1
    token = [
        1.0,
        min(len(persons), 10) / 5.0,
        min(len(boxes), 20) / 10.0,
        max([b.score for b in persons] or [0.0]),
        float(np.mean([b.score for b in persons])) if persons else 0.0,
        min(1.0, sum(b.area for b in persons)),
        *[min(groups[g], 10) / _GROUP_SCALE.get(g, 5.0) for g in _GROUP_ORDER],
        _motion(frame, previous),
        frame.luma_mean,
        frame.luma_std,
        min(1.0, frame.detail_energy),
    ]
    return np.asarray(token, dtype=np.float32)


def audio_token(window: AudioObs) -> NDArray[np.float32]:
    head = np.asarray(
        [
            1.0,
            float(np.clip((window.loudness_dbfs + 80.0) / 80.0, 0.0, 1.0)),
            float(np.clip(window.centroid_hz / 8000.0, 0.0, 1.0)),
        ],
        dtype=np.float32,
    )
    return np.concatenate([head, window.embedding.astype(np.float32).reshape(-1)])


def tokens(
    context: Context, *, visual_tokens: int = VISUAL_TOKENS, audio_tokens: int = AUDIO_TOKENS
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """[visual_tokens, VISUAL_DIM] and [audio_tokens, AUDIO_DIM], oldest first, zero-padded at the front.

    A padded token has its "present" feature at 0, which the network reads as a mask.
    """
    visual = np.zeros((visual_tokens, VISUAL_DIM), dtype=np.float32)
    frames = context.frames[-visual_tokens:]
    offset = visual_tokens - len(frames)
    for i, frame in enumerate(frames):
        previous = frames[i - 1] if i > 0 else None
        visual[offset + i] = visual_token(frame, previous)
    audio = np.zeros((audio_tokens, AUDIO_DIM), dtype=np.float32)
    windows = context.audio[-audio_tokens:]
    offset = audio_tokens - len(windows)
    for i, window in enumerate(windows):
        audio[offset + i] = audio_token(window)
    return visual, audio


def stack_tokens(
    contexts: Iterable[Context],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    pairs = [tokens(c) for c in contexts]
    if not pairs:
        return np.zeros((0, VISUAL_TOKENS, VISUAL_DIM), np.float32), np.zeros((0, AUDIO_TOKENS, AUDIO_DIM), np.float32)
    return np.stack([v for v, _ in pairs]), np.stack([a for _, a in pairs])
