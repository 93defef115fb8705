"""Keyframes ``SelectKeyframes`` on a generated multi-scene video, and the direct-Triton baseline beside it.

The video comes from ``tessera.keyframes.longvideo.generate`` (real photographs and clips, cached by its
manifest); the queries are its object questions, taken in turn. A warm-up pass runs each query once, cold: it
decodes the frames the selection needs and fills the service's thumbnail cache and the model's detection cache,
and its phase timings give the CPU profile (decode ms per scored frame). The measured load is the hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput

from loadtest.stack import Target
from tessera.common.v1 import common_pb2
from tessera.keyframes import longvideo
from tessera.keyframes.baselines import uniform_indices
from tessera.keyframes.frame_source import VideoFrameSource
from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.runtime.inference import TritonClient

ROOT = Path(__file__).resolve().parents[2]
MEDIA_DIR = ROOT / "build" / "media" / "loadtest"  # under the stack's default media roots
OPENCV_DOC = ROOT / "build" / "media" / "opencv-doc"
STRATEGIES = {"UNIFORM": pb.STRATEGY_UNIFORM, "FOCUS": pb.STRATEGY_FOCUS, "EXHAUSTIVE": pb.STRATEGY_EXHAUSTIVE_TOP_K}
MODEL = "frame_relevance"
# The service's scorer for this model: the load test and the planner size the detector station (frame_relevance);
# the open-vocabulary default (frame_relevance_open) runs MobileNetV2 besides the detector, about twice the per-frame
# cost, and is not sized here yet.
SCORER = pb.SCORER_DETECTOR
_A = np.arange(16, dtype=np.float32)
_B = np.ones(16, dtype=np.float32)


def scenario_video(minutes: float, seed: int = 11) -> longvideo.VideoSpec:
    if not (OPENCV_DOC / "vtest.avi").exists():
        raise FileNotFoundError(f"real media missing at {OPENCV_DOC}: run `make media`")
    return longvideo.generate(MEDIA_DIR / f"{minutes:g}min", [minutes], opencv_data=OPENCV_DOC, seed=seed)[0]


def video_path(spec: longvideo.VideoSpec) -> Path:
    return Path(spec.path).absolute()


@dataclass
class KeyframesScenario:
    target: Target
    video: longvideo.VideoSpec
    strategy: pb.Strategy.ValueType
    k: int
    timeout_s: float
    name: str = "keyframes"
    channel: grpc.aio.Channel | None = None
    stub: Any = None  # a KeyframeServiceStub on a grpc.aio channel (its generated types are the sync ones)
    warmup: list[dict[str, float]] = field(default_factory=list)
    _turn: int = 0

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any]) -> KeyframesScenario:
        video = scenario_video(float(options.get("video_minutes", 1)))
        return cls(
            target,
            video,
            STRATEGIES[str(options.get("strategy", "FOCUS")).upper()],
            int(options.get("k", 8)),
            float(options.get("timeout_s", 60)),
        )

    def request(
        self, query: str, strategy: pb.Strategy.ValueType | None = None, k: int | None = None
    ) -> pb.SelectKeyframesRequest:
        return pb.SelectKeyframesRequest(
            video=common_pb2.MediaSource(uri=str(Path(self.video.path).absolute())),
            query=query,
            k=k or self.k,
            strategy=self.strategy if strategy is None else strategy,
            focus=pb.FocusOptions(seed=7),
            scorer=SCORER,
        )

    @property
    def queries(self) -> list[str]:
        return [q.question for q in self.video.questions] or ["Find every scene that contains a person."]

    async def setup(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.target.address("keyframes"))
        self.stub = pb_grpc.KeyframeServiceStub(self.channel)
        for query in self.queries:
            began = time.perf_counter()
            reply = await self.stub.SelectKeyframes(self.request(query), timeout=600)
            phases = {p.phase: p.duration_ms for p in reply.stats.phases}
            self.warmup.append(
                {
                    "wall_ms": (time.perf_counter() - began) * 1000,
                    "decode_ms": phases.get("decode", 0.0),
                    "score_ms": phases.get("score", 0.0),
                    "probe_ms": phases.get("probe", 0.0),
                    "frames_decoded": float(reply.stats.frames_decoded),
                    "frames_scored": float(reply.stats.frames_scored),
                }
            )

    async def once(self, scheduled_s: float) -> None:
        assert self.stub is not None
        query = self.queries[self._turn % len(self.queries)]
        self._turn += 1
        await self.stub.SelectKeyframes(self.request(query), timeout=self.timeout_s)

    def extras(self) -> dict[str, Any]:
        scored = sum(w["frames_scored"] for w in self.warmup) or 1.0
        return {
            "video": {"path": self.video.path, "duration_s": self.video.duration_s, "fps": self.video.fps},
            "request": {"strategy": pb.Strategy.Name(self.strategy), "k": self.k, "queries": len(self.queries)},
            "cold_warmup": self.warmup,
            "decode_ms_per_scored_frame": sum(w["decode_ms"] for w in self.warmup) / scored,
        }

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


# -- the direct-Triton baseline ---------------------------------------------------------------------------------


@dataclass
class OverheadProbe:
    """The same frame_relevance inference, once through the keyframes service and once straight to Triton.

    ``SelectKeyframes(STRATEGY_UNIFORM, k=1)`` on the cached test video makes exactly one ``frame_relevance``
    call: one thumbnail (already in the service's cache) and the query. The direct call sends the identical
    tensors (the same thumbnail decoded by the same code, the same query) with ``tritonclient.grpc.aio``. The
    difference of the two latencies is what the service adds to a unary call over direct Triton: its gRPC hop,
    request validation, the video probe, the cache lookup, its Triton client and the response.
    """

    target: Target
    video: longvideo.VideoSpec
    query: str
    frames: NDArray[np.uint8] | None = None
    stub: Any = None  # a KeyframeServiceStub on a grpc.aio channel (its generated types are the sync ones)
    channel: grpc.aio.Channel | None = None
    triton: triton_aio.InferenceServerClient | None = None
    runtime: TritonClient | None = None
    add_sub: bool = False
    phases: dict[str, list[float]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.video.path).absolute()

    async def setup(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.target.address("keyframes"))
        self.stub = pb_grpc.KeyframeServiceStub(self.channel)
        self.triton = triton_aio.InferenceServerClient(self.target.triton_grpc)
        self.runtime = TritonClient(self.target.triton_grpc)
        try:
            self.add_sub = bool(await self.triton.is_model_ready("add_sub"))
        except Exception:
            self.add_sub = False  # a stack without the test model: the library comparison is skipped
        fps = 1.0  # the service's default sampling rate
        candidates = max(1, int(self.video.duration_s * fps))
        source = VideoFrameSource(self.path, "direct", fps, 320, None)
        self.frames = await source.frames(uniform_indices(candidates, 1))
        await self.service()  # fills the service's thumbnail cache and the model's caches for this frame

    def _request(self) -> pb.SelectKeyframesRequest:
        return pb.SelectKeyframesRequest(
            video=common_pb2.MediaSource(uri=str(self.path)),
            query=self.query,
            k=1,
            strategy=pb.STRATEGY_UNIFORM,
            scorer=SCORER,
        )

    async def service(self) -> None:
        assert self.stub is not None
        reply = await self.stub.SelectKeyframes(self._request(), timeout=30)
        for phase in reply.stats.phases:
            self.phases.setdefault(phase.phase, []).append(phase.duration_ms)

    async def direct(self) -> None:
        assert self.triton is not None and self.frames is not None
        frames = InferInput("FRAMES", list(self.frames.shape), "UINT8")
        frames.set_data_from_numpy(self.frames)
        queries = np.array([[self.query.encode()]] * len(self.frames), dtype=np.object_)
        query = InferInput("QUERY", list(queries.shape), "BYTES")
        query.set_data_from_numpy(queries)
        result = await self.triton.infer(MODEL, [frames, query], outputs=[InferRequestedOutput("SCORES")])
        result.as_numpy("SCORES")

    async def evaluate(self) -> None:
        """EvaluateSelection: no model, no media: the floor of a unary call through the service's gRPC stack."""
        assert self.stub is not None
        scene = pb.Scene(segments=[common_pb2.TimeRange(start_ms=0, end_ms=2000)])
        await self.stub.EvaluateSelection(pb.EvaluateSelectionRequest(timestamps_ms=[1000], scenes=[scene]))

    async def add_sub_runtime(self) -> None:
        """add_sub through tessera.runtime.inference (contract check, deadline, error mapping)."""
        assert self.runtime is not None
        await self.runtime.infer("add_sub", {"INPUT0": _A, "INPUT1": _B})

    async def add_sub_direct(self) -> None:
        assert self.triton is not None
        inputs = [InferInput("INPUT0", [16], "FP32"), InferInput("INPUT1", [16], "FP32")]
        inputs[0].set_data_from_numpy(_A)
        inputs[1].set_data_from_numpy(_B)
        outputs = [InferRequestedOutput("SUM"), InferRequestedOutput("DIFF")]
        result = await self.triton.infer("add_sub", inputs, outputs=outputs)
        result.as_numpy("SUM")

    async def measure(self, calls: int, warmup: int) -> dict[str, list[float]]:
        """Interleaved call by call (order alternating), concurrency 1, so drift in machine load hits all alike."""
        kinds = {"service": self.service, "direct": self.direct, "evaluate": self.evaluate}
        if self.add_sub:
            kinds |= {"add_sub_runtime": self.add_sub_runtime, "add_sub_direct": self.add_sub_direct}
        timings: dict[str, list[float]] = {name: [] for name in kinds}
        names = list(kinds)
        for i in range(warmup + calls):
            order = names if i % 2 else names[::-1]
            for name in order:
                began = time.perf_counter()
                await kinds[name]()
                if i >= warmup:
                    timings[name].append((time.perf_counter() - began) * 1000)
        return timings

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.triton is not None:
            await self.triton.close()
        if self.runtime is not None:
            await self.runtime.close()


SCENARIO = KeyframesScenario  # discovered by loadtest.scenarios.factory
