"""Demo scenario: pick keyframes for a question on a generated 10-minute video, FOCUS against exhaustive top-k."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tessera.keyframes import longvideo
from tessera.keyframes.client import KeyframesClient
from tessera.keyframes.v1 import keyframes_pb2 as pb


def run(address: str, build_dir: Path, minutes: float = 10.0, k: int = 16) -> None:
    asyncio.run(_run(address, build_dir, minutes, k))


async def _run(address: str, build_dir: Path, minutes: float, k: int) -> None:
    media = build_dir / "media"
    spec = longvideo.generate(media / "demo", [minutes], opencv_data=media / "opencv-doc", seed=3)[0]
    question = spec.questions[0]
    scenes = [[(int(a * 1000), int(b * 1000)) for a, b in segs] for segs in question.scenes]
    print(f"video  {spec.path} ({spec.duration_s / 60:.0f} min, {len(spec.timeline)} scenes)")
    print(f"query  {question.question!r}  ground truth: {len(scenes)} scenes")
    async with KeyframesClient.connect(address, timeout_s=600) as client:
        for strategy in (pb.STRATEGY_FOCUS, pb.STRATEGY_EXHAUSTIVE_TOP_K, pb.STRATEGY_UNIFORM):
            began = time.perf_counter()
            reply = await client.select(spec.path, question.question, k, strategy=strategy)
            wall = time.perf_counter() - began
            stamps = [f.timestamp_ms for f in reply.frames]
            score = await client.evaluate(stamps, scenes, timeout_s=30)
            name = pb.Strategy.Name(strategy).removeprefix("STRATEGY_").lower()
            print(
                f"\n{name}: {wall:.2f} s, scored {reply.stats.frames_scored}/{reply.stats.frames_sampled} frames "
                f"({100 * reply.stats.scored_fraction:.1f}%), decoded {reply.stats.frames_decoded}"
            )
            print("  timestamps (s): " + " ".join(f"{t / 1000:.0f}" for t in stamps))
            print(
                f"  KFS: KFR {score.kfr:.2f}  SHR {score.shr:.2f}  BSR {score.bsr:.2f}  BDS {score.bds:.2f}  "
                f"UKSS {score.ukss:.2f}"
            )
