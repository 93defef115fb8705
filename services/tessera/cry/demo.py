"""Demo: a held-out family's cries of each reason, a quiet room and unknown sounds, through Classify and a stream.

The cries are synthetic (``tessera.cry.vocalisation``): the reason labels are synthetic too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tessera.cry import corpus
from tessera.cry.client import CryClient, pcm_chunk
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.vocalisation import RATE, REASONS


def run(address: str, build_dir: Path) -> None:
    asyncio.run(_run(address))


def _describe(segment: pb.Segment) -> str:
    span = f"{segment.span.start_ms / 1000:5.2f}-{segment.span.end_ms / 1000:5.2f} s"
    if not segment.cry_detected:
        return f"{span}  no cry (p={segment.cry_probability:.2f})"
    if segment.abstained:
        energy = f"energy {segment.energy:.1f} > {segment.energy_threshold:.1f}"
        return f"{span}  a cry-like sound the model does not know: abstained ({energy})"
    reason = pb.Reason.Name(segment.reason).removeprefix("REASON_").lower()
    return f"{span}  cry: {reason} ({segment.confidence:.0%} calibrated)"


async def _run(address: str) -> None:
    rng = np.random.default_rng(23)
    family = corpus.make_family(5000, 23, corpus.EVAL_BACKGROUNDS)  # a family the model never trained on
    print("synthetic cries (reason labels are synthetic): research demo, not for care")
    async with CryClient.connect(address, timeout_s=60) as client:
        model = await client.get_model()
        print(f"model {model.model_version} (round {model.round}): macro-F1 {model.figures.macro_f1:.3f}, "
              f"ECE {model.figures.ece:.3f}, OOD AUROC {model.figures.ood_auroc:.3f}")  # fmt: skip
        for index, reason in enumerate(REASONS):
            recording = corpus.cry(family, rng, 3.0, reason=index)
            reply = await client.classify((recording.audio, RATE))
            print(f"\ntruth: {reason}")
            for segment in reply.segments:
                print(f"  {_describe(segment)}")
        for title, recording in (
            ("a quiet room", corpus.no_cry(family, rng)),
            ("an unknown sound", corpus.unknown_sound(rng)),
        ):
            reply = await client.classify((recording.audio, RATE))
            print(f"\n{title}: {len(reply.segments)} segment(s)")
            for segment in reply.segments:
                print(f"  {_describe(segment)}")
        live = np.concatenate([corpus.cry(family, rng, 3.0, reason=1).audio, np.zeros(RATE, np.float32),
                               corpus.cry(family, rng, 3.0, reason=0).audio])  # fmt: skip
        chunks = [pcm_chunk(live[i : i + 1600], RATE) for i in range(0, len(live), 1600)]
        print("\nlive stream (100 ms chunks): pain, then hunger")
        async for event in client.stream(chunks):
            if event.HasField("segment"):
                print(f"  {_describe(event.segment)}")
            else:
                print(f"  summary: {event.summary.segments} segment(s) in {event.summary.audio_ms / 1000:.1f} s")
