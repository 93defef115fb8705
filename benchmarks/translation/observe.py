"""Watch one conference's cascade on NATS (a core subscription beside the JetStream consumers) and record when
each stage's output appeared: the timeline behind the latency breakdown, and the exact segments the gateway cut
(reused by the all-pairs baselines). Also: Triton's own per-model statistics, and machine-wide CPU use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import numpy as np
import tritonclient.grpc.aio as triton_aio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from numpy.typing import NDArray

from tessera.translation import cascade
from tessera.translation.v1 import cascade_pb2 as msg


@dataclass
class SegmentTrace:
    seq: int
    cut_unix: float = 0.0  # StageTimes.cut_unix_ms / 1000 (the gateway's clock: same machine)
    audio_seen: float = 0.0
    duration_s: float = 0.0  # of the segment's audio
    targets: tuple[str, ...] = ()  # the MT worker translates in this order
    audio: NDArray[np.float32] | None = None
    transcript_seen: float = 0.0
    transcript: str = ""
    text_seen: dict[str, float] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    speech_seen: dict[str, float] = field(default_factory=dict)
    speech_samples: dict[str, int] = field(default_factory=dict)
    times: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # language -> (asr, mt, tts) ms


class Observer:
    """Records the cascade messages of one conference; ``keep_audio`` keeps each segment's samples."""

    def __init__(self, conference_id: str, *, all_stages: bool, keep_audio: bool) -> None:
        self.conference_id = conference_id
        self.all_stages = all_stages
        self.keep_audio = keep_audio
        self.segments: dict[int, SegmentTrace] = {}
        self._nc: NatsClient | None = None

    async def start(self, url: str) -> None:
        self._nc = await nats.connect(url, name="translation-benchmark-observer")
        stage = ">" if self.all_stages else "audio"
        await self._nc.subscribe(cascade.subject(self.conference_id, stage), cb=self._on)
        await self._nc.flush()

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.drain()

    def _segment(self, seq: int) -> SegmentTrace:
        return self.segments.setdefault(seq, SegmentTrace(seq))

    async def _on(self, message: Msg) -> None:
        now = time.time()
        parts = message.subject.split(".")
        stage = parts[3]
        if stage == "audio":
            audio = msg.SegmentAudio.FromString(message.data)
            trace = self._segment(audio.seq)
            trace.audio_seen, trace.cut_unix = now, audio.times.cut_unix_ms / 1000
            trace.duration_s = len(audio.pcm_f32) / 4 / 16000
            trace.targets = tuple(audio.target_languages)
            if self.keep_audio:
                trace.audio = np.frombuffer(audio.pcm_f32, dtype=np.float32).copy()
        elif stage == "transcript":
            text = msg.SegmentText.FromString(message.data)
            trace = self._segment(text.seq)
            trace.transcript_seen, trace.transcript = now, text.text
        elif stage == "text":
            text = msg.SegmentText.FromString(message.data)
            trace = self._segment(text.seq)
            trace.text_seen[text.language], trace.text[text.language] = now, text.text
        elif stage == "speech":
            speech = msg.SegmentSpeech.FromString(message.data)
            trace = self._segment(speech.seq)
            trace.speech_seen[speech.language] = now
            trace.speech_samples[speech.language] = len(speech.pcm16) // 2
            t = speech.times
            trace.times[speech.language] = (t.asr_ms, t.mt_ms, t.tts_ms)


@dataclass(frozen=True)
class ModelStats:
    inferences: int
    executions: int
    compute_s: float  # compute_input + compute_infer + compute_output
    queue_s: float


async def triton_stats(url: str, models: tuple[str, ...] = cascade.MODELS) -> dict[str, ModelStats]:
    """Triton's own cumulative counters for each model (tritonclient get_inference_statistics)."""
    client = triton_aio.InferenceServerClient(url)
    try:
        out: dict[str, ModelStats] = {}
        for model in models:
            reply: dict[str, Any] = await client.get_inference_statistics(model, as_json=True)
            stats = reply["model_stats"][0]
            inference = stats.get("inference_stats", {})

            def ns(key: str, inference: dict[str, Any] = inference) -> float:
                return int(inference.get(key, {}).get("ns", 0)) / 1e9

            out[model] = ModelStats(
                int(stats.get("inference_count", 0)),
                int(stats.get("execution_count", 0)),
                ns("compute_input") + ns("compute_infer") + ns("compute_output"),
                ns("queue"),
            )
        return out
    finally:
        await client.close()


def stats_delta(before: dict[str, ModelStats], after: dict[str, ModelStats]) -> dict[str, ModelStats]:
    return {
        m: ModelStats(
            after[m].inferences - before[m].inferences,
            after[m].executions - before[m].executions,
            after[m].compute_s - before[m].compute_s,
            after[m].queue_s - before[m].queue_s,
        )
        for m in after
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = fields[3] + fields[4]
    ticks = float(os.sysconf("SC_CLK_TCK"))
    return (total - idle) / ticks, total / ticks
