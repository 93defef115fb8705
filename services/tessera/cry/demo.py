"""Demo: a held-out family's cries of each reason, a quiet room and unknown sounds, through Classify and a stream;
then a short federation of simulated families (Flower, SecAgg+) whose rounds the running service picks up.

The cries are synthetic (``tessera.cry.vocalisation``): the reason labels are synthetic too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tessera.cry import corpus
from tessera.cry.client import CryClient, pcm_chunk
from tessera.cry.fl import simulation
from tessera.cry.fl.settings import FederationSettings
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.vocalisation import RATE, REASONS
from tessera.runtime import config
from tessera.runtime.stack import StackState


def run(address: str, build_dir: Path) -> None:
    asyncio.run(_run(address))
    state = StackState.load(build_dir / "stack" / "state.json")
    if state is not None and state.triton_http:
        asyncio.run(_federate(address, build_dir / "model_repository", f"http://{state.triton_http}"))


async def _federate(address: str, repository: Path, triton_http_url: str) -> None:
    """Three rounds over six families' devices, fine-tuning the served adapters; each accepted round is published
    into the stack's model repository and Triton serves it at once."""
    settings = config.load(
        FederationSettings,
        rounds=3,
        families=6,
        reset_adapters=False,
        lr=0.002,  # fine-tuning adapters that are already trained: gentler than the from-scratch default
        model_repository=repository,
        triton_http_url=triton_http_url,
    )
    print(f"\nfederation: {settings.rounds} rounds, {settings.families} simulated families, SecAgg+ (Flower)")
    record = await asyncio.to_thread(simulation.run, settings)
    assert record.coordinator is not None
    for outcome in record.coordinator.history:
        sent = record.wire.per_client(outcome.round)
        upload = f"{max(sent) / 1024:.1f} KiB up per family" if sent else "nothing sent"
        verdict = f"published as version {outcome.version}" if outcome.accepted else f"refused: {outcome.reason}"
        print(f"  round {outcome.round}: {outcome.clients_aggregated} families summed, {outcome.clients_dropped} "
              f"dropped, {upload}; validation macro-F1 {outcome.figures.get('macro_f1', 0):.3f}; "
              f"{verdict}")  # fmt: skip
    async with CryClient.connect(address, timeout_s=60) as client:
        model = await client.get_model()
        print(f"served now, no restart: {model.model_version} (round {model.round}), macro-F1 "
              f"{model.figures.macro_f1:.3f}, {model.clients_aggregated} families in its round")  # fmt: skip


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
