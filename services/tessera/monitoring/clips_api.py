"""Clip analysis of the monitoring gateway: ``AnalyzeClip`` runs the live cascade's evidence, model and rules on a
whole clip through Triton directly (``tessera.monitoring.analysis``), with a small cache of decoded evidence."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
from tessera.monitoring import analysis, convert
from tessera.monitoring.analysis import ClipEvidence, ClipMedia, MediaError
from tessera.monitoring.contracts import MonitoringModels
from tessera.monitoring.rooms_api import Rooms, now_ms
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.runtime import audio as audio_lib
from tessera.runtime import config
from tessera.runtime.errors import InvalidArgument, ResourceExhausted
from tessera.runtime.media import resolve_media_path

_SOUND_EVENT_MIN_SCORE = 0.3  # a window's top class is reported as a sound event from this score


class ClipAnalysis:
    def __init__(
        self, own: MonitoringSettings, settings: config.ServerSettings, models: MonitoringModels, rooms: Rooms
    ) -> None:
        self.own = own
        self.settings = settings
        self.models = models
        self.rooms = rooms
        self._clip_cache: OrderedDict[str, ClipEvidence] = OrderedDict()

    def _source(self, source: common_pb2.MediaSource, field: str) -> tuple[Path | bytes, str]:
        kind = source.WhichOneof("source")
        if kind == "uri":
            path = resolve_media_path(source.uri, self.settings.media_roots, field=f"{field}.uri")
            stat = path.stat()
            return path, f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
        if kind == "inline_data":
            if len(source.inline_data) > self.own.inline_max_bytes:
                raise ResourceExhausted(
                    f"inline media larger than {self.own.inline_max_bytes} bytes; pass a uri",
                    field=f"{field}.inline_data",
                )
            if not source.inline_data:
                raise InvalidArgument("must not be empty", field=f"{field}.inline_data")
            return source.inline_data, hashlib.blake2b(source.inline_data, digest_size=16).hexdigest()
        raise InvalidArgument("give a uri or inline_data", field=field)

    async def analyze(self, request: pb.AnalyzeClipRequest) -> pb.AnalyzeClipResponse:
        began = time.perf_counter()
        policy = convert.POLICIES.get(request.policy)
        if policy is None:
            raise InvalidArgument("unknown policy", field="policy")
        fps = request.sampling_fps or 5.0
        if not 0 < fps <= self.own.max_sampling_fps:
            raise InvalidArgument(f"must be in (0, {self.own.max_sampling_fps:g}]", field="sampling_fps")
        if request.HasField("rules"):
            rules = self.rooms.rules(request.rules)
        elif request.room_id:
            rules = self.rooms.rules((await self.rooms.get(request.room_id)).rules, "room_id")
        else:
            raise InvalidArgument("give rules or a room_id whose rules apply", field="rules")
        if request.start_unix_ms < 0:
            raise InvalidArgument("must be >= 0", field="start_unix_ms")
        has_video, has_audio = request.HasField("video"), request.HasField("audio")
        if not has_video and not has_audio:
            raise InvalidArgument("give a video, an audio file, or both", field="video")
        video = self._source(request.video, "video") if has_video else None
        audio = self._source(request.audio, "audio") if has_audio else None
        key = f"{video[1] if video else ''}|{audio[1] if audio else ''}|{fps:g}"
        evidence = self._clip_cache.get(key)
        if evidence is None:
            media = await asyncio.to_thread(self._decode, video, audio, fps)
            evidence = await analysis.gather_evidence(self.models, media)
            self._remember(key, evidence)
        else:
            self._clip_cache.move_to_end(key)
        if policy.uses_model and evidence.scores is None:
            evidence.scores = await analysis.fuse_scores(self.models, evidence.contexts)
        start_unix_ms = request.start_unix_ms or now_ms()
        room_id = request.room_id or "clip"
        decisions = analysis.replay(
            evidence,
            rules=rules,
            policy=policy,
            room_id=room_id,
            start_unix_ms=start_unix_ms,
            sound_labels=self.models.sound_labels,
        )
        published = now_ms()
        reply = pb.AnalyzeClipResponse(
            duration_ms=evidence.duration_ms,
            frames_analyzed=len(evidence.frames),
            audio_windows_analyzed=len(evidence.audio),
            frames=[
                pb.FrameResult(timestamp_ms=f.timestamp_ms, detections=[convert.box_to_proto(b) for b in f.boxes])
                for f in evidence.frames
            ],
            alerts=[convert.alert_to_proto(d, start_unix_ms, published) for d in decisions],
            policy=convert.POLICY_PROTO[policy],
        )
        labels = self.models.sound_labels
        for window in evidence.audio:
            top = int(np.argmax(window.scores))
            if window.scores[top] >= _SOUND_EVENT_MIN_SCORE:
                reply.sound_events.append(
                    pb.SoundEvent(
                        class_name=labels[top],
                        score=float(window.scores[top]),
                        span=common_pb2.TimeRange(start_ms=window.start_ms, end_ms=window.end_ms),
                    )
                )
        if policy.uses_model and evidence.scores is not None:
            reply.scores.extend(
                pb.ScorePoint(time_ms=c.at_ms, score=float(s))
                for c, s in zip(evidence.contexts, evidence.scores, strict=True)
            )
        reply.analysis_ms = (time.perf_counter() - began) * 1000
        return reply

    def _decode(
        self, video: tuple[Path | bytes, str] | None, audio: tuple[Path | bytes, str] | None, fps: float
    ) -> ClipMedia:
        limit = self.own.clip_max_duration_s
        try:
            frames: list[tuple[int, NDArray[np.uint8]]] = []
            track: NDArray[np.float32] | None = None
            duration_ms = 0
            if video is not None:
                frames, track, duration_ms = analysis.decode_video(video[0], fps, max_duration_s=limit, field="video")
            if audio is not None:
                track = analysis.decode_audio(audio[0], max_duration_s=limit, field="audio")
            if track is not None:
                duration_ms = max(duration_ms, len(track) * 1000 // audio_lib.MODEL_RATE)
        except MediaError as exc:
            raise InvalidArgument(str(exc), field=exc.field) from None
        return ClipMedia(frames, track, duration_ms)

    def _remember(self, key: str, evidence: ClipEvidence) -> None:
        if self.own.clip_cache_entries <= 0:
            return
        self._clip_cache[key] = evidence
        while len(self._clip_cache) > self.own.clip_cache_entries:
            self._clip_cache.popitem(last=False)
