"""Cry ``Classify`` on a small pool of clips, and the classifier straight through Triton.

The pool is one 3.5 s clip per reason (half a second of the room, then a 3 s cry) of a family the model never trained
on, made once in setup with a fixed seed (``tessera.cry.corpus``: synthetic cries in real packaged sounds) and
encoded once as the PCM16 16 kHz request a client sends. One request is one ``Classify`` of a clip of the pool,
taken in turn: PCM decode, segmentation and one ``cry_classifier`` call per segment.

A warm-up pass classifies each clip once, cold. The CPU profile comes from setup as well: the classifier alone,
straight through ``tritonclient`` at concurrency 1 on segments of 1 s and 3 s (fixed + per-audio-second cost),
which ``loadtest.run.cpu_profile`` turns into the planner's CPU-class ``cry_classifier`` profile.
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
from tessera.cry import corpus
from tessera.cry.client import pcm_chunk
from tessera.cry.contracts import CLASSIFIER
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.v1 import cry_pb2_grpc as pb_grpc
from tessera.cry.vocalisation import RATE, REASONS

SEED = 7
FAMILY_ID = 8000  # not among the training families (0-23), nor validation (1000+) or test (2000+)


def clip_pool(seed: int = SEED) -> list[tuple[str, NDArray[np.float32]]]:
    """(reason, 3.5 s of 16 kHz audio) for each reason, in ``REASONS`` order: the same clips for a seed."""
    family = corpus.make_family(FAMILY_ID, seed, corpus.EVAL_BACKGROUNDS)
    rng = np.random.default_rng(seed)
    pool = []
    for index, reason in enumerate(REASONS):
        room = corpus.no_cry(family, rng, 0.5).audio * 0.3
        pool.append((reason, np.concatenate([room, corpus.cry(family, rng, 3.0, reason=index).audio])))
    return pool


def classifier_inputs(audio: NDArray[np.float32]) -> list[InferInput]:
    tensor = InferInput("AUDIO", [len(audio)], "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(audio, np.float32))
    return [tensor]


@dataclass
class CryScenario:
    target: Target
    timeout_s: float
    probe_calls: int
    seed: int = SEED
    name: str = "cry"
    pool: list[tuple[str, NDArray[np.float32]]] = field(default_factory=list)
    requests: list[pb.ClassifyRequest] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    stub: Any = None  # a CryServiceStub on a grpc.aio channel
    warmup: list[dict[str, Any]] = field(default_factory=list)
    direct: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    segments: int = 0
    audio_s: float = 0.0
    _turn: int = 0

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any]) -> CryScenario:
        return cls(
            target,
            float(options.get("timeout_s", 30)),
            int(options.get("probe_calls", 6)),
            int(options.get("seed", SEED)),
        )

    async def setup(self) -> None:
        self.pool = clip_pool(self.seed)
        self.requests = [pb.ClassifyRequest(pcm=pcm_chunk(audio, RATE)) for _, audio in self.pool]
        self.channel = grpc.aio.insecure_channel(self.target.address("cry"))
        self.stub = pb_grpc.CryServiceStub(self.channel)
        for (reason, _), request in zip(self.pool, self.requests, strict=True):  # cold: each clip once
            began = time.perf_counter()
            reply = await self.stub.Classify(request, timeout=600)
            self.warmup.append(
                {
                    "reason": reason,
                    "wall_ms": (time.perf_counter() - began) * 1000,
                    "segments": len(reply.segments),
                    "found": [pb.Reason.Name(s.reason) for s in reply.segments],
                }
            )
        await self._profile_model()
        self._turn = 0

    async def _profile_model(self) -> None:
        """The classifier alone at concurrency 1 on 1 s and 3 s segments of the pool (the first call left out)."""
        triton = triton_aio.InferenceServerClient(self.target.triton_grpc)
        calls: list[dict[str, float]] = []
        try:
            for call in range(self.probe_calls + 1):
                _, audio = self.pool[call % len(self.pool)]
                for seconds in (1.0, 3.0):
                    segment = audio[-int(seconds * RATE) :]
                    began = time.perf_counter()
                    out = await triton.infer(
                        CLASSIFIER, classifier_inputs(segment), outputs=[InferRequestedOutput("PROBS")]
                    )
                    out.as_numpy("PROBS")
                    if call:
                        calls.append({"audio_s": seconds, "ms": (time.perf_counter() - began) * 1000})
        finally:
            await triton.close()
        self.direct = {CLASSIFIER: calls}

    async def once(self, scheduled_s: float) -> dict[str, float]:
        assert self.stub is not None
        request = self.requests[self._turn % len(self.requests)]
        self._turn += 1
        reply = await self.stub.Classify(request, timeout=self.timeout_s)
        self.segments += len(reply.segments)
        self.audio_s += reply.duration_ms / 1000
        return {"segments_found": float(len(reply.segments))}  # "segments" is the per-segment timings key

    def extras(self) -> dict[str, Any]:
        return {
            "request": {
                "clips": f"{len(self.pool)} clips of {len(self.pool[0][1]) / RATE if self.pool else 0:.1f} s (one per "
                f"reason, family {FAMILY_ID}, seed {self.seed}), PCM16 16 kHz",
                "clip_s": len(self.pool[0][1]) / RATE if self.pool else None,
            },
            "cold_warmup": self.warmup,
            "audio_s_sent": self.audio_s,
            "segments_classified": self.segments,
            "direct_triton": self.direct,
        }

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


SCENARIO = CryScenario  # discovered by loadtest.scenarios.factory
