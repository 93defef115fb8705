"""Triage ``Assess`` on a small pool of synthetic fundus photographs, and the two models straight through Triton.

The pool is one photograph per grade (``tessera.triage.grading.CLASSES``), made once in setup with a fixed seed
(``tessera.triage.cases.sample_counts`` then ``tessera.triage.fundus.synthesise``: skimage's real retina with
drawn lesions) and encoded once as the PNG a client sends (``tessera.triage.client.image_message``), so the load
is the service and its models, never the client's encoder. One request is one ``Assess`` of
``images_per_request`` photographs of the pool, taken in turn: decode and orientation in the service, one
``triage_captioner`` call for all its images, one ``triage_reasoner`` call (unless the images are referred as not
a fundus), and the audit record published to JetStream before the answer.

A warm-up pass assesses each photograph once, cold (the models' first calls, the audit stream's first writes). The
CPU profile comes from setup as well: the service's per-image work (PNG decode and orientation, the same
``photos.decode`` and ``fundus.orient`` the service runs) timed here in thread CPU time, and each model alone,
straight through ``tritonclient`` at concurrency 1 (the captioner at 1 and ``probe_batch`` images per call, the
reasoner on the captioner's own findings text of each photograph), which ``loadtest.run.cpu_profile`` turns into
the planner's CPU-class ``triage_captioner`` and ``triage_reasoner`` profiles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput

from loadtest.stack import Target
from tessera.common.v1 import common_pb2
from tessera.runtime import config
from tessera.triage import cases, fundus, grading, photos
from tessera.triage.client import image_message
from tessera.triage.contracts import CAPTIONER, REASONER
from tessera.triage.settings import TriageSettings
from tessera.triage.v1 import triage_pb2 as pb
from tessera.triage.v1 import triage_pb2_grpc as pb_grpc

SEED = 5
CLINICAL_TEXT = "type 2 diabetes, 12 years"


def fundus_pool(seed: int = SEED) -> list[tuple[str, NDArray[np.uint8]]]:
    """(grade, 256 x 256 RGB) for each grade, in ``grading.CLASSES`` order: the same photographs for a seed."""
    rng = np.random.default_rng(seed)
    return [(cls, fundus.synthesise(cases.sample_counts(cls, rng), rng).image) for cls in grading.CLASSES]


def frames_of(pool: list[tuple[str, NDArray[np.uint8]]]) -> NDArray[np.uint8]:
    """The pool in the normalised frame [N, 256, 256, 3] (disc on the left): the captioner's IMAGE, as the
    service sends it."""
    return np.stack([fundus.orient(rgb).frame for _, rgb in pool])


def captioner_inputs(frames: NDArray[np.uint8]) -> list[InferInput]:
    image = InferInput("IMAGE", list(frames.shape), "UINT8")
    image.set_data_from_numpy(np.ascontiguousarray(frames))
    return [image]


def reasoner_inputs(findings_text: bytes, clinical_text: bytes = b"") -> list[InferInput]:
    inputs = []
    for name, value in (("FINDINGS", findings_text), ("CLINICAL", clinical_text)):
        tensor = InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value]], dtype=np.object_))
        inputs.append(tensor)
    return inputs


class OutOfDistribution(Exception):
    """A pool photograph referred as not a fundus: the reasoner never ran, so it is not the measured path."""

    status = "REFERRED_OUT_OF_DISTRIBUTION"


@dataclass
class TriageScenario:
    target: Target
    images_per_request: int
    clinical_text: str
    timeout_s: float
    probe_calls: int
    probe_batch: int
    seed: int = SEED
    name: str = "triage"
    pool: list[tuple[str, NDArray[np.uint8]]] = field(default_factory=list)
    messages: list[common_pb2.Image] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    stub: Any = None  # a TriageServiceStub on a grpc.aio channel (its generated types are the sync ones)
    warmup: list[dict[str, Any]] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    direct: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    service_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    _turn: int = 0

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any]) -> TriageScenario:
        images = int(options.get("images_per_request", 1))
        most = config.load(TriageSettings).max_images
        if not 1 <= images <= most:
            raise ValueError(f"triage images_per_request must be 1..{most} (TESSERA_TRIAGE_MAX_IMAGES), got {images}")
        return cls(
            target,
            images,
            str(options.get("clinical_text", CLINICAL_TEXT)),
            float(options.get("timeout_s", 30)),
            int(options.get("probe_calls", 6)),
            int(options.get("probe_batch", 4)),
            int(options.get("seed", SEED)),
        )

    def request(self, first: int) -> pb.AssessRequest:
        count = len(self.messages)
        return pb.AssessRequest(
            task=grading.TASK,
            images=[self.messages[(first + i) % count] for i in range(self.images_per_request)],
            clinical_text=self.clinical_text,
        )

    async def setup(self) -> None:
        self.pool = fundus_pool(self.seed)
        self.messages = [image_message(rgb) for _, rgb in self.pool]  # encoded once: PNG, as the client sends
        self._profile_decode()
        self.channel = grpc.aio.insecure_channel(self.target.address("triage"))
        self.stub = pb_grpc.TriageServiceStub(self.channel)
        for i, (grade, _) in enumerate(self.pool):  # cold: each photograph assessed once before any measurement
            began = time.perf_counter()
            reply = await self.stub.Assess(self.request(i), timeout=600)
            self.warmup.append(
                {
                    "grade": grade,
                    "wall_ms": (time.perf_counter() - began) * 1000,
                    "service_ms": reply.latency_ms,
                    "class_name": reply.decision.class_name,
                    "refer_reason": pb.ReferReason.Name(reply.refer_reason),
                }
            )
        await self._profile_models()
        self._turn = 0

    def _profile_decode(self, rounds: int = 3) -> None:
        """The service's per-image CPU work (``TriageServicer._decode``), in this process's thread CPU time."""
        own = config.load(TriageSettings)
        limits = photos.Limits(own.max_image_bytes, own.max_pixels, own.min_side_px)
        for _ in range(rounds):
            for message in self.messages:
                began = time.thread_time()
                rgb = photos.decode(message.data, "png", message.width_px, message.height_px, limits)
                fundus.orient(rgb)
                self.decode_ms.append((time.thread_time() - began) * 1000)

    async def _profile_models(self) -> None:
        """Each model alone through tritonclient at concurrency 1: the per-call times the CPU profile is fitted to.

        The captioner alternates calls of 1 and ``probe_batch`` images (fixed + per-image cost); the reasoner gets
        the captioner's own findings text of each photograph. The first call of each kind is left out (warm).
        """
        frames = frames_of(self.pool)
        triton = triton_aio.InferenceServerClient(self.target.triton_grpc)
        captioner: list[dict[str, float]] = []
        reasoner: list[dict[str, float]] = []
        try:
            result = await triton.infer(CAPTIONER, captioner_inputs(frames), outputs=[InferRequestedOutput("FINDINGS")])
            texts = [bytes(t) for t in result.as_numpy("FINDINGS").reshape(-1)]
            batch = max(1, min(self.probe_batch, len(frames)))
            for call in range(self.probe_calls + 1):
                for images in sorted({1, batch}):
                    chosen = np.stack([frames[(call + i) % len(frames)] for i in range(images)])
                    began = time.perf_counter()
                    out = await triton.infer(
                        CAPTIONER, captioner_inputs(chosen), outputs=[InferRequestedOutput("FINDINGS")]
                    )
                    out.as_numpy("FINDINGS")
                    if call:
                        captioner.append({"images": float(images), "ms": (time.perf_counter() - began) * 1000})
                inputs = reasoner_inputs(texts[call % len(texts)], self.clinical_text.encode())
                began = time.perf_counter()
                out = await triton.infer(REASONER, inputs, outputs=[InferRequestedOutput("PROBS")])
                out.as_numpy("PROBS")
                if call:
                    reasoner.append({"assessments": 1.0, "ms": (time.perf_counter() - began) * 1000})
        finally:
            await triton.close()
        self.direct = {CAPTIONER: captioner, REASONER: reasoner}

    async def once(self, scheduled_s: float) -> dict[str, float]:
        assert self.stub is not None
        first = self._turn
        self._turn += self.images_per_request
        reply = await self.stub.Assess(self.request(first), timeout=self.timeout_s)
        reason = pb.ReferReason.Name(reply.refer_reason)
        self.outcomes[reason] = self.outcomes.get(reason, 0) + 1
        if reply.refer_reason == pb.REFER_REASON_OUT_OF_DISTRIBUTION:
            raise OutOfDistribution(reply.rationale)
        self.service_ms.append(reply.latency_ms)
        return {"service_ms": reply.latency_ms}

    def extras(self) -> dict[str, Any]:
        ordered = sorted(self.service_ms)
        return {
            "request": {
                "task": grading.TASK,
                "images_per_request": self.images_per_request,
                "clinical_text": bool(self.clinical_text),
                "images": f"{len(self.pool)} synthetic fundus photographs (one per grade, seed {self.seed}), "
                f"{fundus.SIZE} px, PNG",
                "image_bytes": [len(m.data) for m in self.messages],
            },
            "cold_warmup": self.warmup,
            "outcomes": self.outcomes,  # refer reasons of the measured calls (REFER_REASON_UNSPECIFIED: graded)
            "service_latency_ms_p50": ordered[len(ordered) // 2] if ordered else None,
            "decode_ms_per_image": sum(self.decode_ms) / len(self.decode_ms) if self.decode_ms else None,
            "direct_triton": self.direct,
        }

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


SCENARIO = TriageScenario  # discovered by loadtest.scenarios.factory
