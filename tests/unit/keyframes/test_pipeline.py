"""The selection pipeline with an in-memory frame source and scorer: what each strategy looks at and returns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from tessera.keyframes.focus import FocusParams
from tessera.keyframes.pipeline import Strategy, select


class PlantedVideo:
    """Frame i carries its index in pixel [0, 0, 0..2]; relevance is high inside [lo, hi)."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.requested: list[int] = []

    async def frames(self, indices: Sequence[int]) -> NDArray[np.uint8]:
        self.requested += list(indices)
        out = np.zeros((len(indices), 4, 4, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row, 0, 0] = [index // 65536, (index // 256) % 256, index % 256]
        return out

    async def score(self, frames: NDArray[np.uint8], query: str) -> NDArray[np.float32]:
        idx = frames[:, 0, 0, 0].astype(int) * 65536 + frames[:, 0, 0, 1].astype(int) * 256 + frames[:, 0, 0, 2]
        return np.where((idx >= self.lo) & (idx < self.hi), 0.9, 0.1).astype(np.float32)


async def test_exhaustive_scores_everything_and_keeps_the_best() -> None:
    video = PlantedVideo(100, 140)
    result = await select(
        Strategy.EXHAUSTIVE_TOP_K,
        num_candidates=300,
        fps=1.0,
        k=10,
        query="q",
        source=video,
        scorer=video,
        batch_size=64,
    )
    assert result.frames_scored == 300 and sorted(video.requested) == list(range(300))
    assert all(100 <= i < 140 for i in result.indices)
    assert result.phases_ms.keys() >= {"decode", "score", "select"}


async def test_uniform_scores_only_its_picks() -> None:
    video = PlantedVideo(0, 0)
    result = await select(Strategy.UNIFORM, num_candidates=100, fps=1.0, k=4, query="q", source=video, scorer=video)
    assert result.frames_scored == 4 and sorted(video.requested) == result.indices


async def test_focus_finds_the_planted_region_scoring_few_frames() -> None:
    video = PlantedVideo(2000, 2060)
    progress: list[tuple[str, int, int]] = []

    async def report(phase: str, scored: int, total: int) -> None:
        progress.append((phase, scored, total))

    result = await select(
        Strategy.FOCUS,
        num_candidates=3600,
        fps=1.0,
        k=16,
        query="q",
        source=video,
        scorer=video,
        focus_params=FocusParams.lean(0.05),
        progress=report,
    )
    assert result.frames_scored <= 0.05 * 3600
    assert len(set(video.requested)) == result.frames_scored  # nothing decoded twice
    inside = sum(2000 <= i < 2060 for i in result.indices)
    # FOCUS spreads most of k over several top arms by design; uniform would land 16 * 60 / 3600 < 1 frame here.
    assert inside >= 4, result.indices
    assert progress[0][0] == "coarse" and progress[-1][0] == "fine"
    assert all(total == 3600 for _, _, total in progress)
    assert len(result.selected_scores) == 16


async def test_k_out_of_range() -> None:
    video = PlantedVideo(0, 1)
    with pytest.raises(ValueError, match=r"k: must be in 1\.\.5"):
        await select(Strategy.UNIFORM, num_candidates=5, fps=1.0, k=6, query="q", source=video, scorer=video)
