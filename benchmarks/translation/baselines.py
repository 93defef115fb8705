"""The all-pairs baselines: one ASR -> MT -> TTS pipeline per (speaker, listener) pair, on the same Triton models.

Gated (measured): only the pairs of the speaker who is talking run, once per VAD segment - the segments the
gateway cut for the cascade run, captured from NATS, so both sides transcribe exactly the same audio. Each pair
runs its own chain through ``tessera.runtime.inference.TritonClient`` (what the cascade workers use):

* a cross-language pair (en -> es, en -> ca): ASR, MT en -> listener language, TTS in that language - 3 calls;
* a same-language pair (en -> en): ASR and TTS (Piper) - 2 calls. No en -> en MT model exists; an identity
  "translation" is not a model call, so it is not counted. The nominal 3(N-1) is reported beside what ran.

MT and TTS are skipped when the transcript is empty (the cascade's workers do the same). The segments are given
to the baseline for free (no VAD cost on its side), which only flatters the baseline.

Continuous (computed): every ordered pair of the N participants processes its speaker's stream all the time, in
windows as long as the mean segment; silent streams still pay ASR (measured here on low-level noise windows), and
MT/TTS whenever the ASR returns text for them (measured hallucination rate).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
from benchmarks.translation import procstat
from benchmarks.translation.observe import stats_delta, triton_stats
from numpy.typing import NDArray

from tessera.runtime.inference import TritonClient

LANGUAGES = ("en", "es", "ca")
SPEAKER_LANGUAGE = "en"


def languages_of(participants: int) -> list[str]:
    """Participant 0 is the English speaker; listeners 1..N-1 take en, es, ca in turn."""
    return [SPEAKER_LANGUAGE] + [LANGUAGES[i % len(LANGUAGES)] for i in range(participants - 1)]


def pair_counts(participants: int) -> tuple[int, int]:
    """(cross-language, same-language) pairs from the speaker to each listener."""
    listeners = languages_of(participants)[1:]
    same = sum(1 for lang in listeners if lang == SPEAKER_LANGUAGE)
    return len(listeners) - same, same


def _bytes(value: str) -> NDArray[np.object_]:
    return np.array([value.encode("utf-8")], dtype=np.object_)


def _text(array: NDArray[np.object_]) -> str:
    value = array.reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass
class GatedRun:
    participants: int
    segments_run: int
    segments_total: int
    calls: dict[str, int]  # Triton inference_count deltas
    compute_s: dict[str, float]  # Triton compute time deltas
    cpu_s: dict[str, float]  # triton.asr / .mt / .tts / .server and driver (this process)
    wall_s: float
    texts: int  # segments (of those run) whose transcript was not empty, per pair

    @property
    def cpu_total_s(self) -> float:
        return sum(self.cpu_s.values())


async def pair_chain(client: TritonClient, audio: NDArray[np.float32], listener: str) -> str:
    out = await client.infer("asr", {"AUDIO": audio, "LANGUAGE": _bytes(SPEAKER_LANGUAGE)})
    text = _text(out["TEXT"])
    if not text.strip():
        return text
    if listener != SPEAKER_LANGUAGE:
        out = await client.infer(
            "mt", {"TEXT": _bytes(text), "SOURCE": _bytes(SPEAKER_LANGUAGE), "TARGET": _bytes(listener)}
        )
        text = _text(out["TEXT_OUT"])
    if text.strip():
        await client.infer("tts", {"TEXT": _bytes(text), "LANGUAGE": _bytes(listener)})
    return text


async def _measured(
    triton_url: str, meter: procstat.CpuMeter, jobs: list[tuple[NDArray[np.float32], str]], concurrency: int
) -> tuple[dict[str, int], dict[str, float], dict[str, float], float, list[str]]:
    client = TritonClient(triton_url, default_timeout_s=600)
    try:
        await client.wait_ready(["asr", "mt", "tts"])
        gate = asyncio.Semaphore(concurrency)

        async def one(audio: NDArray[np.float32], listener: str) -> str:
            async with gate:
                return await pair_chain(client, audio, listener)

        stats0, cpu0, self0, began = (
            await triton_stats(triton_url),
            meter.snapshot(),
            procstat.self_cpu_s(),
            time.time(),
        )
        texts = await asyncio.gather(*(one(audio, listener) for audio, listener in jobs))
        wall = time.time() - began
        stats = stats_delta(stats0, await triton_stats(triton_url))
        cpu = procstat.delta(cpu0, meter.snapshot())
        driver = procstat.self_cpu_s() - self0
    finally:
        await client.close()
    cpu_s = {k: v for k, v in cpu.items() if k.startswith("triton.")}
    cpu_s["driver"] = driver
    return (
        {m: s.inferences for m, s in stats.items()},
        {m: s.compute_s for m, s in stats.items()},
        cpu_s,
        wall,
        list(texts),
    )


async def run_gated(
    triton_url: str,
    meter: procstat.CpuMeter,
    segments: list[NDArray[np.float32]],
    participants: int,
    *,
    segments_total: int,
    concurrency: int = 4,
) -> GatedRun:
    """Every pair of the speaker with each of the N-1 listeners runs its chain on every segment."""
    listeners = languages_of(participants)[1:]
    jobs = [(audio, listener) for audio in segments for listener in listeners]
    calls, compute, cpu, wall, texts = await _measured(triton_url, meter, jobs, concurrency)
    nonempty = sum(1 for i in range(0, len(texts), len(listeners)) if texts[i].strip())
    return GatedRun(participants, len(segments), segments_total, calls, compute, cpu, wall, nonempty)


@dataclass(frozen=True)
class CallCosts:
    """Platform CPU seconds per model call, pooled over the measured gated runs."""

    asr_s: float
    mt_s: float
    tts_s: float
    shared_s: float  # tritonserver itself + the calling process, per call of any model

    @classmethod
    def from_runs(cls, runs: list[GatedRun]) -> CallCosts:
        calls = {m: sum(r.calls[m] for r in runs) for m in ("asr", "mt", "tts")}
        cpu = {m: sum(r.cpu_s.get(f"triton.{m}", 0.0) for r in runs) for m in ("asr", "mt", "tts")}
        shared = sum(r.cpu_s.get("triton.server", 0.0) + r.cpu_s["driver"] for r in runs)
        total_calls = max(1, sum(calls.values()))
        return cls(
            cpu["asr"] / max(1, calls["asr"]),
            cpu["mt"] / max(1, calls["mt"]),
            cpu["tts"] / max(1, calls["tts"]),
            shared / total_calls,
        )


def gated_calls(participants: int, segments: int, texts: int) -> dict[str, int]:
    """Model calls the gated baseline makes for a clip of ``segments`` segments, ``texts`` with words."""
    cross, same = pair_counts(participants)
    return {"asr": (cross + same) * segments, "mt": cross * texts, "tts": (cross + same) * texts}


def gated_cpu_s(costs: CallCosts, participants: int, segments: int, texts: int) -> float:
    calls = gated_calls(participants, segments, texts)
    return (
        calls["asr"] * costs.asr_s
        + calls["mt"] * costs.mt_s
        + calls["tts"] * costs.tts_s
        + sum(calls.values()) * costs.shared_s
    )


@dataclass
class SilenceCosts:
    windows: int
    window_s: float
    asr_cpu_s: float  # per ASR call on a silent window, shared share included
    text_rate: float  # fraction of silent windows for which the ASR returned text (hallucination)
    samples: list[str]


async def measure_silence(
    triton_url: str, meter: procstat.CpuMeter, window_s: float, windows: int, seed: int = 7
) -> SilenceCosts:
    """ASR on ``windows`` windows of low-level noise (-60 dBFS gaussian, a quiet room through a microphone)."""
    rng = np.random.default_rng(seed)
    samples = int(window_s * 16000)
    jobs = [((rng.standard_normal(samples) * 1e-3).astype(np.float32), "") for _ in range(windows)]
    client = TritonClient(triton_url, default_timeout_s=600)
    try:
        stats0, cpu0, self0 = await triton_stats(triton_url), meter.snapshot(), procstat.self_cpu_s()
        texts = []
        for audio, _ in jobs:
            out = await client.infer("asr", {"AUDIO": audio, "LANGUAGE": _bytes(SPEAKER_LANGUAGE)})
            texts.append(_text(out["TEXT"]))
        stats = stats_delta(stats0, await triton_stats(triton_url))
        cpu = procstat.delta(cpu0, meter.snapshot())
        driver = procstat.self_cpu_s() - self0
    finally:
        await client.close()
    calls = max(1, stats["asr"].inferences)
    asr = (cpu.get("triton.asr", 0.0) + cpu.get("triton.server", 0.0) + driver) / calls
    said = [t for t in texts if t.strip()]
    return SilenceCosts(windows, window_s, asr, len(said) / max(1, len(texts)), said[:5])


def continuous(
    costs: CallCosts,
    silence: SilenceCosts,
    participants: int,
    *,
    clip_s: float,
    speech_s: float,
    segments: int,
    texts: int,
) -> tuple[float, float]:
    """(model calls per segment, platform CPU seconds over the clip) when all N(N-1) pairs run continuously.

    Calls: each ordered pair runs its full chain once per segment-long window (3 calls cross-language, 2 same).
    CPU: the speaker's N-1 pairs pay the gated cost for the speech plus silent-window ASR for the pauses; every
    other participant's stream is silent for the whole clip, each of its N-1 pairs paying silent-window ASR, and
    MT/TTS at the measured hallucination rate. Non-English speakers' ASR is priced like English (tiny.en).
    """
    langs = languages_of(participants)
    pairs = [(s, listener) for s in range(participants) for listener in range(participants) if s != listener]
    cross = sum(1 for s, listener in pairs if langs[s] != langs[listener])
    calls_per_window = 3 * cross + 2 * (len(pairs) - cross)
    window = silence.window_s
    silent_chain_cross = silence.asr_cpu_s + silence.text_rate * (costs.mt_s + costs.tts_s + 2 * costs.shared_s)
    silent_chain_same = silence.asr_cpu_s + silence.text_rate * (costs.tts_s + costs.shared_s)
    cpu = gated_cpu_s(costs, participants, segments, texts)  # the speaker's pairs, on its speech
    pause_windows = max(0.0, clip_s - speech_s) / window
    cpu += pause_windows * sum(
        silent_chain_cross if langs[0] != langs[listener] else silent_chain_same for listener in range(1, participants)
    )
    silent_windows = clip_s / window
    for s, listener in pairs:
        if s != 0:
            cpu += silent_windows * (silent_chain_cross if langs[s] != langs[listener] else silent_chain_same)
    return float(calls_per_window), cpu
