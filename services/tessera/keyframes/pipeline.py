"""Run one keyframe selection: decode and score candidates in batches, as each strategy asks.

The decoder and the scorer are injected (a PyAV frame source and a Triton client in the service, fakes in unit
tests), so this module holds only the order of work: which frames to look at, in which phase, and what it cost.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tessera.keyframes.baselines import check_k, top_k_indices, uniform_indices
from tessera.keyframes.focus import FocusParams, FocusSearch


class Strategy(enum.Enum):
    UNIFORM = "uniform"
    EXHAUSTIVE_TOP_K = "exhaustive_top_k"
    FOCUS = "focus"


class FrameSource(Protocol):
    """Thumbnails for candidate indices of one video's sampling grid."""

    async def frames(self, indices: Sequence[int]) -> NDArray[np.uint8]: ...


class Scorer(Protocol):
    async def score(self, frames: NDArray[np.uint8], query: str) -> NDArray[np.float32]: ...


# (phase, frames scored so far, frames on the candidate grid)
ProgressCallback = Callable[[str, int, int], Awaitable[None]]


@dataclass
class Selection:
    indices: list[int]
    scores: dict[int, float]  # every scored candidate
    selected_scores: list[float]  # per selected index; interpolated from the nearest scored frame when unscored
    frames_scored: int
    phases_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class _Run:
    source: FrameSource
    scorer: Scorer
    num_candidates: int
    query: str
    batch_size: int
    progress: ProgressCallback | None
    scores: dict[int, float] = field(default_factory=dict)
    phases_ms: dict[str, float] = field(default_factory=dict)

    def _add(self, phase: str, started: float) -> None:
        self.phases_ms[phase] = self.phases_ms.get(phase, 0.0) + (time.perf_counter() - started) * 1000

    async def score(self, indices: Sequence[int], phase: str) -> list[float]:
        todo = [i for i in dict.fromkeys(indices) if i not in self.scores]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            began = time.perf_counter()
            frames = await self.source.frames(chunk)
            self._add("decode", began)
            began = time.perf_counter()
            values = await self.scorer.score(frames, self.query)
            self._add("score", began)
            if len(values) != len(chunk):
                raise RuntimeError(f"scorer returned {len(values)} scores for {len(chunk)} frames")
            for index, value in zip(chunk, values, strict=True):
                self.scores[index] = float(value) if np.isfinite(value) else 0.0
            if self.progress is not None:
                await self.progress(phase, len(self.scores), self.num_candidates)
        return [self.scores[i] for i in indices]


def _nearest_scores(indices: Sequence[int], scores: dict[int, float]) -> list[float]:
    if not scores:
        return [0.0 for _ in indices]
    known = np.array(sorted(scores))
    out = []
    for index in indices:
        if index in scores:
            out.append(scores[index])
            continue
        pos = int(np.searchsorted(known, index))
        candidates = [known[p] for p in (pos - 1, pos) if 0 <= p < len(known)]
        nearest = min(candidates, key=lambda c: abs(int(c) - index))
        out.append(scores[int(nearest)])
    return out


async def select(
    strategy: Strategy,
    *,
    num_candidates: int,
    fps: float,
    k: int,
    query: str,
    source: FrameSource,
    scorer: Scorer,
    focus_params: FocusParams | None = None,
    batch_size: int = 32,
    progress: ProgressCallback | None = None,
) -> Selection:
    check_k(num_candidates, k)  # before any frame is scored
    run = _Run(source, scorer, num_candidates, query, batch_size, progress)
    if strategy is Strategy.UNIFORM:
        chosen = uniform_indices(num_candidates, k)
        await run.score(chosen, "uniform")
    elif strategy is Strategy.EXHAUSTIVE_TOP_K:
        every = list(range(num_candidates))
        values = await run.score(every, "exhaustive")
        began = time.perf_counter()
        chosen = top_k_indices(values, k)
        run._add("select", began)
    else:
        search = FocusSearch(num_candidates, fps, k, focus_params or FocusParams.lean())
        coarse = search.coarse_requests()
        search.observe(coarse, await run.score(coarse, "coarse"))
        fine = search.fine_requests()
        search.observe(fine, await run.score(fine, "fine"))
        began = time.perf_counter()
        chosen = search.select()
        run._add("select", began)
    chosen = sorted(chosen)
    return Selection(chosen, run.scores, _nearest_scores(chosen, run.scores), len(run.scores), run.phases_ms)
