"""From media to alerts: decoding a clip, turning model outputs into evidence, and replaying it through the rules.

The same steps serve AnalyzeClip (models on Triton), the training script and the benchmark (models in process):
frames are sampled on a fixed grid, audio is cut into the windows a live stream would get, every frame and every
audio window is an evaluation point at the time it becomes available (a frame at its timestamp, a window at its
end), and each point is decided on the context aligned at that time (``evidence.context_at``), exactly as the
streaming fusion worker does. ``Models`` is the seam: ``contracts.MonitoringModels`` on Triton, ``LocalModels`` offline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from numpy.typing import NDArray

from tessera.monitoring.evidence import AudioObs, Box, Context, FrameObs, context_at, stack_tokens
from tessera.monitoring.fusion import AlertDecision, Cooldown, Merge, Policy, decide, revised
from tessera.monitoring.rules import RoomRules
from tessera.monitoring.vision import frame_stats
from tessera.runtime import audio as audio_lib

FUSION_BATCH = 64


class MediaError(ValueError):
    """The clip cannot be decoded or breaks a stated bound; ``field`` is the request field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Models(Protocol):
    object_labels: list[str]
    sound_labels: list[str]

    async def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[tuple[Box, ...]]: ...

    async def sounds(self, windows: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]: ...

    async def fuse(self, visual: NDArray[np.float32], audio: NDArray[np.float32]) -> NDArray[np.float32]: ...


def boxes_from_rows(
    boxes: NDArray[np.float32], scores: NDArray[np.float32], classes: NDArray[np.int32], count: int, labels: list[str]
) -> tuple[Box, ...]:
    """The object_detector contract's tensors for one image -> boxes (unknown class indices are dropped)."""
    out = []
    for i in range(min(int(count), len(scores))):
        cls = int(classes[i])
        if 0 <= cls < len(labels):
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            out.append(Box(labels[cls], float(scores[i]), x0, y0, x1, y1))
    return tuple(out)


@dataclass
class ClipMedia:
    frames: list[tuple[int, NDArray[np.uint8]]]  # (timestamp ms, RGB)
    audio: NDArray[np.float32] | None  # 16 kHz mono
    duration_ms: int


def _open(source: Path | bytes, field: str) -> Any:
    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not readable media ({type(exc).__name__})", field) from None


def decode_video(
    source: Path | bytes, fps: float, *, max_duration_s: float, max_side: int = 640, field: str = "video"
) -> tuple[list[tuple[int, NDArray[np.uint8]]], NDArray[np.float32] | None, int]:
    """Frames on a ``fps`` grid (the first frame at or after each grid time) and the audio track, if any."""
    frames: list[tuple[int, NDArray[np.uint8]]] = []
    audio: NDArray[np.float32] | None = None
    with _open(source, field) as container:
        if not container.streams.video:
            raise MediaError("no video stream", field)
        stream = container.streams.video[0]
        duration_s = float(container.duration / av.time_base) if container.duration else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration_s = max(duration_s, float(stream.duration * stream.time_base))
        if duration_s > max_duration_s:
            raise MediaError(f"longer than {max_duration_s:g} s", field)
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = min(1.0, max_side / max(width, height, 1))
        size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
        step_ms = 1000.0 / fps
        next_ms = 0.0
        last_ms = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t_ms = float(frame.pts * stream.time_base) * 1000.0
                last_ms = max(last_ms, int(t_ms))
                if t_ms > max_duration_s * 1000:
                    raise MediaError(f"longer than {max_duration_s:g} s", field)
                if t_ms + 0.5 >= next_ms:
                    frames.append((round(next_ms), frame.to_ndarray(format="rgb24", width=size[0], height=size[1])))
                    while next_ms <= t_ms + 0.5:
                        next_ms += step_ms
        except av.error.FFmpegError:
            raise MediaError("corrupt video stream", field) from None
    if not frames:
        raise MediaError("no decodable frame", field)
    audio = decode_audio(source, max_duration_s=max_duration_s, field=field, required=False)
    duration_ms = max(int(duration_s * 1000), last_ms + round(step_ms))
    return frames, audio, duration_ms


def decode_audio(
    source: Path | bytes, *, max_duration_s: float, field: str = "audio", required: bool = True
) -> NDArray[np.float32] | None:
    """The first audio track as 16 kHz mono float32; None (or an error when ``required``) without one."""
    chunks: list[NDArray[np.float32]] = []
    limit = int(max_duration_s * audio_lib.MODEL_RATE)
    with _open(source, field) as container:
        if not container.streams.audio:
            if required:
                raise MediaError("no audio stream", field)
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=audio_lib.MODEL_RATE)
        total = 0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    piece = out.to_ndarray().reshape(-1).astype(np.float32)
                    chunks.append(piece)
                    total += len(piece)
                    if total > limit + audio_lib.MODEL_RATE:
                        raise MediaError(f"longer than {max_duration_s:g} s", field)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
        except av.error.FFmpegError:
            raise MediaError("corrupt audio stream", field) from None
    if not chunks:
        if required:
            raise MediaError("no decodable audio", field)
        return None
    return np.concatenate(chunks)


@dataclass
class ClipEvidence:
    frames: list[FrameObs]
    audio: list[AudioObs]
    duration_ms: int
    contexts: list[Context] = field(default_factory=list)
    scores: NDArray[np.float32] | None = None  # learned score per context (None until fused)


def frame_observation(timestamp_ms: int, rgb: NDArray[np.uint8], boxes: tuple[Box, ...], seq: int = 0) -> FrameObs:
    mean, std, detail = frame_stats(rgb)
    return FrameObs(timestamp_ms, boxes, mean, std, detail, seq)


def audio_observation(
    window: audio_lib.Window, scores: NDArray[np.float32], embedding: NDArray[np.float32], seq: int = 0
) -> AudioObs:
    return AudioObs(
        window.start_ms,
        window.end_ms,
        scores.astype(np.float32),
        embedding.astype(np.float32),
        audio_lib.loudness_dbfs(window.samples),
        audio_lib.spectral_centroid(window.samples, window.rate),
        seq,
    )


def schedule(frames: Sequence[FrameObs], audio: Sequence[AudioObs]) -> list[Context]:
    """One context per frame and per audio window, at the time it becomes available, in time order."""
    points = sorted({f.timestamp_ms for f in frames} | {a.end_ms for a in audio})
    return [context_at(frames, audio, t) for t in points]


async def gather_evidence(models: Models, media: ClipMedia, batch: int = 16) -> ClipEvidence:
    frames: list[FrameObs] = []
    for start in range(0, len(media.frames), batch):
        chunk = media.frames[start : start + batch]
        detections = await models.detect([rgb for _, rgb in chunk])
        frames += [
            frame_observation(t, rgb, boxes, seq=start + i + 1)
            for i, ((t, rgb), boxes) in enumerate(zip(chunk, detections, strict=True))
        ]
    observed: list[AudioObs] = []
    if media.audio is not None and len(media.audio):
        windows = audio_lib.clip_windows(media.audio)
        for start in range(0, len(windows), 64):
            chunk_w = windows[start : start + 64]
            rows = np.stack([w.samples[: audio_lib.WINDOW_SAMPLES] for w in chunk_w])
            scores, embeddings = await models.sounds(rows)
            observed += [
                audio_observation(w, scores[i], embeddings[i], seq=start + i + 1) for i, w in enumerate(chunk_w)
            ]
    evidence = ClipEvidence(frames, observed, media.duration_ms)
    evidence.contexts = schedule(frames, observed)
    return evidence


async def fuse_scores(models: Models, contexts: Sequence[Context]) -> NDArray[np.float32]:
    scores: list[NDArray[np.float32]] = []
    for start in range(0, len(contexts), FUSION_BATCH):
        visual, audio = stack_tokens(contexts[start : start + FUSION_BATCH])
        scores.append(await models.fuse(visual, audio))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def replay(
    evidence: ClipEvidence,
    *,
    rules: RoomRules,
    policy: Policy,
    room_id: str,
    start_unix_ms: int,
    sound_labels: Sequence[str],
) -> list[AlertDecision]:
    """The alerts a live room would have raised on this evidence, in time order, after cooldown."""
    cooldown = Cooldown()
    decisions: list[AlertDecision] = []
    for i, context in enumerate(evidence.contexts):
        score = None
        if policy.uses_model and evidence.scores is not None:
            score = float(evidence.scores[i])
        decision = decide(
            room_id=room_id,
            rules=rules,
            policy=policy,
            context=context,
            wall_clock_ms=start_unix_ms + context.at_ms,
            model_score=score,
            labels=sound_labels,
            cooldown=cooldown,
        )
        if isinstance(decision, Merge):  # one event, one alert: a later rule joins the alert it belongs to
            index = next(i for i, d in enumerate(decisions) if d.alert_id == decision.alert_id)
            decisions[index] = revised(decisions[index], decision)
        elif decision is not None:
            decisions.append(decision)
    return decisions
