"""gRPC adapter of the keyframe service: protos <-> pipeline, input bounds, status codes."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import grpc
import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.keyframes import kfs_metrics, pipeline
from tessera.keyframes.baselines import check_k
from tessera.keyframes.focus import FocusParams
from tessera.keyframes.frame_source import ThumbnailCache, VideoFrameSource
from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.keyframes.video import TruncatedVideo, VideoError, VideoInfo, probe
from tessera.runtime import config
from tessera.runtime.errors import InvalidArgument, OutOfRange, ResourceExhausted
from tessera.runtime.inference import TritonClient
from tessera.runtime.media import resolve_media_path
from tessera.runtime.server import ServiceRegistration
from tessera.runtime.service import Capability, serving_when_models_ready

SERVICE_NAME = "tessera.keyframes.v1.KeyframeService"


class KeyframesSettings(BaseSettings):
    """``TESSERA_KEYFRAMES_*``: the service's own bounds and knobs."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_KEYFRAMES_", extra="ignore")

    model_name: str = "frame_relevance"  # the detector scorer (SCORER_DETECTOR)
    open_vocabulary_model_name: str = "frame_relevance_open"  # SCORER_OPEN_VOCABULARY
    default_scorer: Literal["open_vocabulary", "detector"] = "open_vocabulary"  # what SCORER_UNSPECIFIED gets
    inline_max_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_duration_s: float = Field(4 * 3600, gt=0)
    max_sampling_fps: float = Field(10.0, gt=0)
    max_query_chars: int = Field(1000, ge=1)
    thumbnail_max_side: int = Field(320, ge=32, le=1024)
    cache_bytes: int = Field(512 * 1024 * 1024, ge=0)
    score_batch: int = Field(32, ge=1, le=64)
    max_evaluate_items: int = Field(100_000, ge=1)


_STRATEGIES = {
    pb.STRATEGY_UNIFORM: pipeline.Strategy.UNIFORM,
    pb.STRATEGY_EXHAUSTIVE_TOP_K: pipeline.Strategy.EXHAUSTIVE_TOP_K,
    pb.STRATEGY_FOCUS: pipeline.Strategy.FOCUS,
    pb.STRATEGY_UNSPECIFIED: pipeline.Strategy.FOCUS,  # FOCUS is the service's reason to exist
}
_SCORERS = {"open_vocabulary": pb.SCORER_OPEN_VOCABULARY, "detector": pb.SCORER_DETECTOR}
_TO_PROTO = {value: key for key, value in _STRATEGIES.items() if key != pb.STRATEGY_UNSPECIFIED}
_FOCUS_FIELDS = (
    "arm_seconds",
    "min_arms",
    "coarse_extra_samples",
    "zoom_ratio",
    "fine_stride_s",
    "score_budget_fraction",
    "top_ratio",
    "temperature",
    "min_gap_s",
    "seed",
)


@dataclass
class TritonScorer:
    client: TritonClient
    model: str
    feature_cache: bool = True

    async def score(self, frames: NDArray[np.uint8], query: str) -> NDArray[np.float32]:
        queries = np.array([[query.encode()]] * len(frames), dtype=np.object_)
        params: dict[str, str | int | bool] | None = None if self.feature_cache else {"feature_cache": False}
        out = await self.client.infer(self.model, {"FRAMES": frames, "QUERY": queries}, parameters=params)
        return out["SCORES"].reshape(-1).astype(np.float32)


@dataclass
class _Request:
    video: Path | bytes
    video_key: str
    query: str
    k: int
    strategy: pipeline.Strategy
    fps: float
    focus: FocusParams
    scorer: int  # pb.Scorer, resolved (never UNSPECIFIED)


def focus_params(options: pb.FocusOptions) -> FocusParams:
    """Schedule defaults, then every field the client set; ValueError names the bad field."""
    if options.schedule == pb.FOCUS_SCHEDULE_PUBLISHED:
        params = FocusParams.published()
    elif options.schedule in (pb.FOCUS_SCHEDULE_LEAN, pb.FOCUS_SCHEDULE_UNSPECIFIED):
        params = FocusParams.lean()
    else:
        raise InvalidArgument(f"unknown schedule {options.schedule}", field="focus.schedule")
    overrides: dict[str, Any] = {
        name: getattr(options, name)
        for name in _FOCUS_FIELDS
        if options.HasField(name)  # type: ignore[arg-type]
    }
    for name, value in overrides.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument("must be finite", field=f"focus.{name}")
    try:
        params = replace(params, **overrides)
        params.validate()
    except (ValueError, TypeError) as exc:
        named = next((n for n in _FOCUS_FIELDS if n in str(exc)), "")
        raise InvalidArgument(str(exc), field=f"focus.{named}" if named else "focus") from None
    return params


class KeyframeServicer(pb_grpc.KeyframeServiceServicer):
    def __init__(self, settings: config.ServerSettings, own: KeyframesSettings, triton: TritonClient) -> None:
        self.settings = settings
        self.own = own
        self.triton = triton
        self.cache = ThumbnailCache(own.cache_bytes) if own.cache_bytes else None
        # Probing opens and demuxes the file (~1.5 ms); the key changes whenever the content does.
        self._probes: OrderedDict[str, VideoInfo] = OrderedDict()

    def _parse(self, request: pb.SelectKeyframesRequest) -> _Request:
        kind = request.video.WhichOneof("source")
        video: Path | bytes
        if kind == "uri":
            video = resolve_media_path(request.video.uri, self.settings.media_roots, field="video.uri")
            stat = video.stat()
            key = f"{video}:{stat.st_size}:{stat.st_mtime_ns}"
        elif kind == "inline_data":
            data = request.video.inline_data
            if not data:
                raise InvalidArgument("is empty", field="video.inline_data")
            if len(data) > self.own.inline_max_bytes:
                raise ResourceExhausted(
                    f"{len(data)} bytes exceeds the inline limit of {self.own.inline_max_bytes} bytes; pass a uri",
                    field="video.inline_data",
                )
            video, key = data, "sha256:" + hashlib.sha256(data).hexdigest()
        else:
            raise InvalidArgument("set uri or inline_data", field="video")
        query = request.query.strip()
        if not query:
            raise InvalidArgument("must not be empty", field="query")
        if len(query) > self.own.max_query_chars:
            raise InvalidArgument(f"longer than {self.own.max_query_chars} characters", field="query")
        if request.k <= 0:
            raise InvalidArgument("must be >= 1", field="k")
        if request.strategy not in _STRATEGIES:
            raise InvalidArgument(f"unknown strategy {request.strategy}", field="strategy")
        fps = request.sampling_fps or 1.0
        if not math.isfinite(fps) or fps <= 0 or fps > self.own.max_sampling_fps:
            raise InvalidArgument(f"must be in (0, {self.own.max_sampling_fps}] Hz", field="sampling_fps")
        scorer = request.scorer or _SCORERS[self.own.default_scorer]
        if scorer not in _SCORERS.values():
            raise InvalidArgument(f"unknown scorer {request.scorer}", field="scorer")
        return _Request(
            video, key, query, request.k, _STRATEGIES[request.strategy], fps, focus_params(request.focus), scorer
        )

    def _model(self, scorer: int) -> str:
        return self.own.model_name if scorer == pb.SCORER_DETECTOR else self.own.open_vocabulary_model_name

    async def _select(
        self, request: pb.SelectKeyframesRequest, progress: pipeline.ProgressCallback | None
    ) -> pb.SelectKeyframesResponse:
        began = time.perf_counter()
        parsed = self._parse(request)
        info = self._probes.get(parsed.video_key)
        if info is None:
            try:
                info = await asyncio.to_thread(probe, parsed.video)
            except VideoError as exc:
                raise InvalidArgument(str(exc), field="video", reason="VIDEO_UNREADABLE") from None
            self._probes[parsed.video_key] = info
            while len(self._probes) > 4096:
                self._probes.popitem(last=False)
        if info.duration_s > self.own.max_duration_s:
            raise OutOfRange(
                f"video lasts {info.duration_s:.0f} s, limit {self.own.max_duration_s:.0f} s", field="video"
            )
        candidates = max(1, int(info.duration_s * parsed.fps))
        try:
            check_k(candidates, parsed.k)
        except ValueError:
            raise InvalidArgument(
                f"k={parsed.k} exceeds the {candidates} frames sampled at {parsed.fps} fps", field="k"
            ) from None
        probe_ms = (time.perf_counter() - began) * 1000
        source = VideoFrameSource(parsed.video, parsed.video_key, parsed.fps, self.own.thumbnail_max_side, self.cache)
        try:
            selection = await pipeline.select(
                parsed.strategy,
                num_candidates=candidates,
                fps=parsed.fps,
                k=parsed.k,
                query=parsed.query,
                source=source,
                scorer=TritonScorer(self.triton, self._model(parsed.scorer)),
                focus_params=parsed.focus,
                batch_size=self.own.score_batch,
                progress=progress,
            )
        except TruncatedVideo as exc:
            raise InvalidArgument(str(exc), field="video", reason="VIDEO_TRUNCATED") from None
        except VideoError as exc:
            raise InvalidArgument(str(exc), field="video", reason="VIDEO_CORRUPT") from None
        phases = {"probe": probe_ms, **selection.phases_ms}
        return pb.SelectKeyframesResponse(
            strategy=_TO_PROTO[parsed.strategy],
            scorer=parsed.scorer,  # type: ignore[arg-type]
            frames=[
                pb.SelectedFrame(index=i, timestamp_ms=source.timestamp_ms(i), score=s, scored=i in selection.scores)
                for i, s in zip(selection.indices, selection.selected_scores, strict=True)
            ],
            stats=pb.SelectionStats(
                frames_decoded=source.decoded,
                frames_scored=selection.frames_scored,
                frames_sampled=candidates,
                scored_fraction=selection.frames_scored / candidates,
                video_duration_ms=int(info.duration_s * 1000),
                phases=[pb.PhaseTiming(phase=name, duration_ms=ms) for name, ms in phases.items()],
                cache_hits=source.cache_hits,
            ),
        )

    async def SelectKeyframes(
        self, request: pb.SelectKeyframesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SelectKeyframesResponse:
        return await self._select(request, None)

    async def StreamSelectKeyframes(
        self, request: pb.SelectKeyframesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamSelectKeyframesResponse]:
        events: asyncio.Queue[pb.StreamSelectKeyframesResponse] = asyncio.Queue(maxsize=256)

        async def report(phase: str, scored: int, sampled: int) -> None:
            if events.full():
                return  # progress is advisory; a slow reader must not stall the selection
            events.put_nowait(
                pb.StreamSelectKeyframesResponse(
                    progress=pb.Progress(phase=phase, frames_scored=scored, frames_sampled=sampled)
                )
            )

        task = asyncio.ensure_future(self._select(request, report))
        try:
            while not task.done() or not events.empty():
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield pb.StreamSelectKeyframesResponse(result=task.result())
        finally:
            task.cancel()

    async def EvaluateSelection(
        self, request: pb.EvaluateSelectionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateSelectionResponse:
        limit = self.own.max_evaluate_items
        if len(request.timestamps_ms) > limit:
            raise InvalidArgument(f"more than {limit} timestamps", field="timestamps_ms")
        if not request.scenes:
            raise InvalidArgument("at least one ground-truth scene is required", field="scenes")
        if len(request.scenes) > limit:
            raise InvalidArgument(f"more than {limit} scenes", field="scenes")
        for i, t in enumerate(request.timestamps_ms):
            if t < 0:
                raise InvalidArgument("must be >= 0", field=f"timestamps_ms[{i}]")
        scenes = []
        for i, scene in enumerate(request.scenes):
            if not scene.segments:
                raise InvalidArgument("a scene needs at least one segment", field=f"scenes[{i}].segments")
            for j, seg in enumerate(scene.segments):
                if seg.start_ms < 0 or seg.end_ms < seg.start_ms:
                    raise InvalidArgument("needs 0 <= start_ms <= end_ms", field=f"scenes[{i}].segments[{j}]")
            scenes.append(kfs_metrics.Scene(tuple((s.start_ms / 1000, s.end_ms / 1000) for s in scene.segments)))
        scores = kfs_metrics.score_selection([t / 1000 for t in request.timestamps_ms], scenes)
        return pb.EvaluateSelectionResponse(
            kfr=scores.kfr,
            shr=scores.shr,
            bsr=scores.bsr,
            bds=scores.bds,
            ukss=scores.ukss,
            hits_per_scene=list(scores.hits_per_scene),
        )


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(KeyframesSettings)
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = KeyframeServicer(settings, own, triton)
    return Capability(
        name="keyframes",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_KeyframeServiceServicer_to_server, servicer)],
        on_close=[triton.close],
        on_start=[serving_when_models_ready(triton, SERVICE_NAME, [own.model_name, own.open_vocabulary_model_name])],
    )
