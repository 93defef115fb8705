"""FOCUS keyframe selection (arXiv 2510.27280) as a step-wise search over a candidate frame grid.

FOCUS treats temporal clips ("arms") as bandit arms: a coarse pass scores a few frames per arm, a zoom pass
scores more frames in the arms with the highest confidence upper bound (UCB), and the final k frames are a
top-scored share plus softmax draws inside the top-UCB arms over nearest-neighbour interpolated scores.

The caller owns decoding and scoring: it asks :meth:`FocusSearch.coarse_requests`, scores those frames,
reports them with :meth:`FocusSearch.observe`, then does the same for :meth:`FocusSearch.fine_requests`,
and finally calls :meth:`FocusSearch.select`.

Differences from the released reference code (NUS-HPC-AI-Lab/FOCUS, ``focus.py`` / ``select_keyframe.py``):

* Arms split the grid evenly and cover every candidate. The reference derives a frame stride from the arm
  count, which can yield more arms than asked for and leaves the last ``total % stride`` frames in no arm.
* In the released script the zoom frames are planned but never scored: it passes an empty fine list to the
  algorithm and counts only the coarse frames as budget (hence "< 2 % of frames" on 30 fps video), and even
  scored zoom frames would not enter any arm's statistics. Here zoom scores are used for the top-scored
  share and for the within-arm interpolation (all scored frames inside an arm, not only its coarse ones).
  Arms are still ranked by UCB over their coarse samples by default (``rank_with_fine``): every arm has the
  same coarse count, whereas with zoom samples counted the ``n_i`` terms of the bound (several units for
  n_i = 3) dwarf score differences in [0, 1] and push the final frames away from the zoomed arms.
* An arm with no scored frame has an infinite UCB (optimism); the reference gives it its zero mean.
* Interpolated scores are not clipped to [0, 1] (the reference assumes BLIP ITM probabilities); min-max
  normalisation before the softmax makes the clip unnecessary for other score ranges.
* The minimum gap also applies to the top-scored share and between draws from the same arm, and the result
  always has exactly k frames: arms that run dry are topped up by a softmax draw over the whole grid. The
  reference draws all of an arm's frames at once (no gap between them) and may return fewer than k.
* The reference's default gap is adaptive (see :func:`adaptive_min_gap_s`); here ``min_gap_s`` is explicit.
* The published fine pass uses the reference's ``min_zoom_segments = 4`` floor on zoomed arms and its 50/50
  uniform/random split; the final arm count uses its own ratio field (the reference reuses ``zoom_ratio``,
  both 0.25).

Budget: on a 1 fps grid the published defaults score 3 of every 16 candidates in the coarse pass alone
(18.75 %), and the 1 s zoom stride adds about one arm's worth per zoomed arm (about 40 % of a one-hour
grid in all). The lean schedule (:meth:`FocusParams.lean`) caps the total scored frames at a fraction of the
grid with longer arms, one extra coarse sample, and a zoom pass whose frames are shared out over the zoomed
arms by UCB and placed by splitting the widest gaps nearest to high-scoring frames first, so they
concentrate around each arm's best-scoring points.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera.keyframes.baselines import check_k, safe_gap

__all__ = ["FocusParams", "FocusSearch", "adaptive_min_gap_s", "ucb"]

FloatArray = npt.NDArray[np.float64]

# Lean zoom pass: a gap's priority is width * (floor + expected relevance); the floor keeps low-scoring
# stretches from being ignored entirely while gaps next to the best frames get split about 5x finer.
_LEAN_RELEVANCE_FLOOR = 0.25
# Separate random streams per phase so select() does not depend on whether fine_requests() ran.
_STREAM_COARSE, _STREAM_FINE, _STREAM_SELECT = 0, 1, 2


@dataclass(frozen=True)
class FocusParams:
    """FOCUS hyper-parameters. Defaults are the published ones (reference ``select_keyframe.py`` CLI)."""

    arm_seconds: float = 16.0
    min_arms: int = 8  # reference: min_coarse_segments
    coarse_extra_samples: int = 2  # random samples per arm beyond its centre
    zoom_ratio: float = 0.25
    min_zoom_arms: int = 4  # reference: min_zoom_segments
    fine_stride_s: float = 1.0  # published fixed-stride fine pass
    fine_uniform_ratio: float = 0.5  # share of the fixed-stride fine samples placed uniformly, rest random
    # If set: the lean schedule; total frames scored (coarse + fine) <= this fraction of the candidate grid.
    score_budget_fraction: float | None = None
    lean_coarse_share: float = 0.5  # lean only: at most this share of the scoring budget goes to the coarse pass
    top_ratio: float = 0.2
    # Stage-2 arm ranking: False ranks by UCB over the coarse samples, which every arm has equally many of (what
    # the released code effectively does). True also counts zoom samples, as the paper text says; the n_i terms
    # of the bound then dwarf score differences in [0, 1] and favour arms that were *not* zoomed.
    rank_with_fine: bool = False
    select_arm_ratio: float = 0.25
    min_select_arms: int = 4
    max_select_arms: int = 32
    temperature: float = 0.06
    min_variance: float = 1e-6
    min_gap_s: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the first invalid parameter."""

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)!r}")

        def finite(x: float) -> bool:
            return isinstance(x, (int, float)) and math.isfinite(x)

        need(finite(self.arm_seconds) and self.arm_seconds > 0, "arm_seconds", "must be > 0")
        need(self.min_arms >= 1, "min_arms", "must be >= 1")
        need(self.coarse_extra_samples >= 0, "coarse_extra_samples", "must be >= 0")
        need(finite(self.zoom_ratio) and 0 < self.zoom_ratio <= 1, "zoom_ratio", "must be in (0, 1]")
        need(self.min_zoom_arms >= 0, "min_zoom_arms", "must be >= 0")
        need(finite(self.fine_stride_s) and self.fine_stride_s > 0, "fine_stride_s", "must be > 0")
        ratio_ok = finite(self.fine_uniform_ratio) and 0 <= self.fine_uniform_ratio <= 1
        need(ratio_ok, "fine_uniform_ratio", "must be in [0, 1]")
        f = self.score_budget_fraction
        need(f is None or (finite(f) and 0 < f <= 1), "score_budget_fraction", "must be None or in (0, 1]")
        need(
            finite(self.lean_coarse_share) and 0 < self.lean_coarse_share <= 1, "lean_coarse_share", "must be in (0, 1]"
        )
        need(finite(self.top_ratio) and 0 <= self.top_ratio <= 1, "top_ratio", "must be in [0, 1]")
        need(finite(self.select_arm_ratio) and 0 < self.select_arm_ratio <= 1, "select_arm_ratio", "must be in (0, 1]")
        need(self.min_select_arms >= 1, "min_select_arms", "must be >= 1")
        need(self.max_select_arms >= self.min_select_arms, "max_select_arms", "must be >= min_select_arms")
        need(finite(self.temperature) and self.temperature > 0, "temperature", "must be > 0")
        need(finite(self.min_variance) and self.min_variance > 0, "min_variance", "must be > 0")
        need(finite(self.min_gap_s) and self.min_gap_s >= 0, "min_gap_s", "must be >= 0")
        need(self.seed >= 0, "seed", "must be >= 0")

    @classmethod
    def published(cls, **overrides: Any) -> FocusParams:
        """The paper's defaults (fixed 1 s zoom stride), optionally overridden field by field."""
        params = cls(**overrides)
        params.validate()
        return params

    @classmethod
    def lean(cls, budget_fraction: float = 0.05, **overrides: Any) -> FocusParams:
        """Budget-capped schedule: longer arms, one coarse extra, adaptive zoom pass.

        Arms are sized so the coarse pass fills about ``lean_coarse_share`` of the budget on a 1 fps grid
        (80 s arms at 5 %); :class:`FocusSearch` enforces the cap on any grid by merging arms if needed, so on
        short grids the budget wins over ``min_arms`` (at least one frame is always scored).
        """
        ok = isinstance(budget_fraction, (int, float)) and math.isfinite(budget_fraction) and 0 < budget_fraction <= 1
        if not ok:
            raise ValueError(f"budget_fraction: must be in (0, 1], got {budget_fraction!r}")
        extra = int(overrides.pop("coarse_extra_samples", 1))
        share = float(overrides.pop("lean_coarse_share", 0.5))
        if not (math.isfinite(share) and 0 < share <= 1):
            raise ValueError(f"lean_coarse_share: must be in (0, 1], got {share!r}")
        arm_seconds = overrides.pop("arm_seconds", None)
        if arm_seconds is None:
            arm_seconds = float(math.ceil((1 + extra) / (budget_fraction * share) - 1e-9))
        params = cls(
            arm_seconds=float(arm_seconds),
            coarse_extra_samples=extra,
            lean_coarse_share=share,
            score_budget_fraction=float(budget_fraction),
            **overrides,
        )
        params.validate()
        return params


def adaptive_min_gap_s(
    duration_s: float, k: int, max_gap_s: float = 1.0, ratio_of_mean_spacing: float = 0.25, disable_below_s: float = 0.2
) -> float:
    """The reference script's default gap: min(1 s, a quarter of the mean spacing), none for dense selections."""
    if k <= 0:
        raise ValueError(f"k: must be positive, got {k}")
    spacing = duration_s / k
    if spacing <= disable_below_s:
        return 0.0
    return min(ratio_of_mean_spacing * spacing, max_gap_s)


def ucb(
    mean: npt.ArrayLike, var: npt.ArrayLike, n: npt.ArrayLike, total: int, min_variance: float = 1e-6
) -> FloatArray:
    """Bernstein-style upper bound per arm.

    ``UCB_i = mu_i + sqrt(2 ln N * max(var_i, min_variance) / n_i) + 3 ln N / n_i`` with ``N = total`` samples
    over all arms (``ln N`` taken as 0 for ``N <= 1``, as in the reference) and ``var_i`` the population variance.
    Arms with ``n_i == 0`` get ``+inf`` so that an unexplored arm always ranks first.
    """
    mu = np.asarray(mean, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    cnt = np.asarray(n, dtype=np.float64)
    if mu.shape != v.shape or mu.shape != cnt.shape:
        raise ValueError(f"mean/var/n: shapes differ: {mu.shape}, {v.shape}, {cnt.shape}")
    if total < 0:
        raise ValueError(f"total: must be >= 0, got {total}")
    if (cnt < 0).any():
        raise ValueError("n: counts must be >= 0")
    log_n = math.log(total) if total > 1 else 0.0
    out = np.full(mu.shape, np.inf, dtype=np.float64)
    seen = cnt > 0
    ni = cnt[seen]
    out[seen] = mu[seen] + np.sqrt(2.0 * log_n * np.maximum(v[seen], min_variance) / ni) + 3.0 * log_n / ni
    return out


def _nearest_estimate(xs: npt.NDArray[np.int64], vs: FloatArray, query: npt.NDArray[np.int64]) -> FloatArray:
    """Nearest-neighbour interpolation of samples (xs sorted); equidistant ties take the left sample."""
    pos = np.searchsorted(xs, query)
    left = np.clip(pos - 1, 0, len(xs) - 1)
    right = np.clip(pos, 0, len(xs) - 1)
    use_right = np.abs(xs[right] - query) < np.abs(query - xs[left])
    return np.where(use_right, vs[right], vs[left])


def _minmax(x: FloatArray) -> FloatArray:
    lo, hi = float(x.min()), float(x.max())
    if hi > lo:
        return (x - lo) / (hi - lo)
    return np.ones_like(x)


def _allocate(total: int, weights: FloatArray, caps: npt.NDArray[np.int64]) -> list[int]:
    """Share ``total`` items by weight (largest remainder), at most ``caps[i]`` each, one each first if possible."""
    m = len(weights)
    alloc = np.zeros(m, dtype=np.int64)
    total = min(total, int(caps.sum()))
    if total <= 0:
        return [0] * m
    # A floor of one per arm keeps every zoomed arm's estimate refined a little.
    if total >= int((caps > 0).sum()):
        alloc = np.minimum(caps, 1)
    left = total - int(alloc.sum())
    while left > 0:
        room = caps - alloc
        open_ = room > 0
        w = np.where(open_, np.maximum(weights, 0.0), 0.0)
        if w.sum() <= 0:
            w = open_.astype(np.float64)
        quota = w / w.sum() * left
        add = np.minimum(np.floor(quota).astype(np.int64), room)
        rest = left - int(add.sum())
        if rest > 0:
            frac = np.where(open_ & (add < room), quota - np.floor(quota), -1.0)
            for i in np.argsort(-frac, kind="stable")[:rest]:
                if frac[i] >= 0:
                    add[i] += 1
        if int(add.sum()) == 0:
            break
        alloc += add
        left = total - int(alloc.sum())
    return [int(a) for a in alloc]


class FocusSearch:
    """Step-wise so that the caller (a gRPC adapter) decodes and scores frames however it likes, in batches,
    and can report progress between phases.

    Candidates are indices ``0..num_candidates-1`` of a grid sampled at ``fps`` frames per second.
    """

    def __init__(self, num_candidates: int, fps: float, k: int, params: FocusParams) -> None:
        check_k(num_candidates, k)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps: must be positive and finite, got {fps}")
        params.validate()
        self._n = int(num_candidates)
        self._fps = float(fps)
        self._k = int(k)
        self._p = params
        self._budget: int | None = None
        if params.score_budget_fraction is not None:
            # At least one frame so that even a very short video gets one anchor score.
            self._budget = max(1, math.floor(params.score_budget_fraction * self._n + 1e-9))

        duration = self._n / self._fps
        arms = max(params.min_arms, math.ceil(duration / params.arm_seconds - 1e-9))
        arms = min(arms, self._n)
        extra = params.coarse_extra_samples
        if self._budget is not None:
            cap = max(1, math.floor(self._budget * params.lean_coarse_share))
            if arms * (1 + extra) > cap:
                # Prefer fewer, longer arms over dropping the extra samples that give each arm a variance.
                if cap // (1 + extra) >= 1:
                    arms = cap // (1 + extra)
                else:
                    arms, extra = 1, cap - 1
        edges = [(i * self._n) // arms for i in range(arms + 1)]
        self._arms: list[tuple[int, int]] = [(edges[i], edges[i + 1]) for i in range(arms)]
        self._starts = np.array(edges[:-1], dtype=np.int64)

        rng = np.random.default_rng([params.seed, _STREAM_COARSE])
        coarse: set[int] = set()
        for start, end in self._arms:
            centre = (start + end - 1) // 2
            coarse.add(centre)
            size = end - start
            take = min(extra, size - 1)
            if take > 0:
                # Draw among the arm's other positions, skipping the centre.
                offs = rng.choice(size - 1, size=take, replace=False)
                coarse.update(int(start + o + (1 if start + o >= centre else 0)) for o in offs)
        self._coarse = sorted(coarse)
        self._fine: list[int] | None = None
        self._scores: dict[int, float] = {}

    # ----------------------------------------------------------------- public state

    @property
    def scored(self) -> dict[int, float]:
        """Copy of every observed score, by candidate index."""
        return dict(self._scores)

    @property
    def arms(self) -> list[tuple[int, int]]:
        """Arm extents as ``(start, end)`` candidate indices, end exclusive."""
        return list(self._arms)

    @property
    def score_budget(self) -> int | None:
        """Most frames the lean schedule will ask to score; None for the published schedule."""
        return self._budget

    # ----------------------------------------------------------------- steps

    def coarse_requests(self) -> list[int]:
        """Candidate indices to score in the coarse pass (sorted, unique): each arm's centre plus random extras."""
        return list(self._coarse)

    def observe(self, indices: Sequence[int], scores: Sequence[float]) -> None:
        """Record relevance scores; a re-observed index keeps the latest score."""
        if len(indices) != len(scores):
            raise ValueError(f"scores: length {len(scores)} != len(indices) {len(indices)}")
        staged: dict[int, float] = {}
        for i, s in zip(indices, scores, strict=True):
            idx = int(i)
            if idx != i or not 0 <= idx < self._n:
                raise ValueError(f"indices: {i!r} is not a candidate index in 0..{self._n - 1}")
            val = float(s)
            if not math.isfinite(val):
                raise ValueError(f"scores: non-finite score {s!r} for index {idx}")
            staged[idx] = val
        self._scores.update(staged)

    def fine_requests(self) -> list[int]:
        """Indices to score in the zoom pass (sorted, unique, none already scored or requested for coarse).

        Planned once, from the scores observed so far, on the first call; later calls return the same plan.
        """
        if self._fine is None:
            if not self._scores:
                raise RuntimeError("fine_requests: observe the coarse scores first")
            rng = np.random.default_rng([self._p.seed, _STREAM_FINE])
            if self._budget is None:
                self._fine = self._plan_fixed_stride(rng)
            else:
                self._fine = self._plan_adaptive()
        return list(self._fine)

    def select(self) -> list[int]:
        """Exactly k sorted unique candidate indices (stage 2 of FOCUS).

        ``round(top_ratio * min(k, #scored))`` frames are the best-scored ones; the rest are split evenly over
        the top-UCB arms and drawn by softmax (temperature T) over min-max normalised nearest-neighbour scores.
        Drawn frames need not have been scored. Repeated calls give the same answer.

        The minimum gap holds between all k frames. If the draws paint themselves into a corner with the
        requested gap, selection is redone with the gap lowered to one that always fits (see ``safe_gap``).
        """
        requested = max(1, round(self._p.min_gap_s * self._fps))
        picked = self._select_with_gap(requested)
        if picked is None:
            picked = self._select_with_gap(max(1, safe_gap(self._n, self._k, requested)))
        if picked is None:  # unreachable: safe_gap always leaves room
            raise AssertionError("select: no feasible selection")
        return sorted(picked)

    def _select_with_gap(self, gap: int) -> list[int] | None:
        """One stage-2 pass with a fixed gap (1 = only no repeats); None if k frames could not be placed."""
        p = self._p
        rng = np.random.default_rng([p.seed, _STREAM_SELECT])
        blocked = np.zeros(self._n, dtype=bool)
        chosen: list[int] = []

        def take(i: int) -> None:
            chosen.append(i)
            blocked[max(0, i - gap + 1) : min(self._n, i + gap)] = True

        # Stage 2a: best observed frames, skipping ones too close to a better one.
        k_top = round(p.top_ratio * min(self._k, len(self._scores)))
        for idx, _ in sorted(self._scores.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(chosen) >= k_top:
                break
            if not blocked[idx]:
                take(idx)

        # Stage 2b: even split of the rest over the top-UCB arms.
        num_arms = len(self._arms)
        s = math.ceil(num_arms * p.select_arm_ratio - 1e-9)
        s = min(max(p.min_select_arms, min(s, p.max_select_arms)), num_arms)
        remaining = self._k - len(chosen)
        if remaining > 0:
            ranked = self._rank_arms(with_fine=p.rank_with_fine)[:s]
            base, extra = divmod(remaining, s)
            for rank, a in enumerate(ranked):
                need = base + (1 if rank < extra else 0)
                start, end = self._arms[a]
                pool = np.arange(start, end, dtype=np.int64)
                xs, vs = self._samples_in(start, end)
                self._draw(pool=pool, xs=xs, vs=vs, need=need, blocked=blocked, take=take, rng=rng)

        # Top-up: arms that ran dry leave a shortfall; draw it over the whole grid so k is always met.
        short = self._k - len(chosen)
        if short > 0:
            xs, vs = self._samples_in(0, self._n)
            grid = np.arange(self._n, dtype=np.int64)
            self._draw(pool=grid, xs=xs, vs=vs, need=short, blocked=blocked, take=take, rng=rng)
        return chosen if len(chosen) == self._k else None

    # ----------------------------------------------------------------- internals

    def _samples_in(self, start: int, end: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
        xs = np.array(sorted(i for i in self._scores if start <= i < end), dtype=np.int64)
        vs = np.array([self._scores[int(i)] for i in xs], dtype=np.float64)
        return xs, vs

    def _arm_ucb(self, *, with_fine: bool = False) -> FloatArray:
        m = len(self._arms)
        if with_fine:
            items = list(self._scores.items())
        else:
            items = [(i, self._scores[i]) for i in self._coarse if i in self._scores]
        idx = np.array([i for i, _ in items], dtype=np.int64)
        val = np.array([v for _, v in items], dtype=np.float64)
        arm_of = np.searchsorted(self._starts, idx, side="right") - 1
        n = np.bincount(arm_of, minlength=m).astype(np.float64)
        sums = np.bincount(arm_of, weights=val, minlength=m)
        mean = np.divide(sums, n, out=np.zeros(m), where=n > 0)
        sq = np.bincount(arm_of, weights=(val - mean[arm_of]) ** 2, minlength=m)
        var = np.divide(sq, n, out=np.zeros(m), where=n > 0)
        return ucb(mean, var, n, len(items), self._p.min_variance)

    def _rank_arms(self, *, with_fine: bool = False) -> list[int]:
        u = self._arm_ucb(with_fine=with_fine)
        # Highest UCB first; ties by arm position for determinism.
        return [int(a) for a in np.lexsort((np.arange(len(u)), -u))]

    def _zoom_arms(self) -> list[int]:
        m = len(self._arms)
        count = min(m, max(self._p.min_zoom_arms, math.ceil(m * self._p.zoom_ratio - 1e-9)))
        return self._rank_arms()[:count]

    def _plan_fixed_stride(self, rng: np.random.Generator) -> list[int]:
        """Published zoom pass: ``fine_stride_s`` stride in a window of +-half an arm around each zoomed centre."""
        p = self._p
        m = len(self._arms)
        stride = max(1, round(p.fine_stride_s * self._fps))
        stride = min(stride, max(1, self._n // m))
        half = max(1, round(self._n / m / 2))
        taken = set(self._scores) | set(self._coarse)
        fine: set[int] = set()
        for a in self._zoom_arms():
            start, end = self._arms[a]
            centre = (start + end - 1) // 2
            lo, hi = max(0, centre - half), min(self._n - 1, centre + half)
            width = hi - lo + 1
            required = max(1, width // stride)
            n_uniform = round(required * p.fine_uniform_ratio)
            if n_uniform > 0:
                if width <= n_uniform:
                    grid = [(lo + hi) // 2]
                else:
                    step = width / n_uniform
                    grid = [min(lo + int(i * step + step / 2), hi) for i in range(n_uniform)]
                fine.update(g for g in grid if g not in taken)
            n_random = required - n_uniform
            free = [i for i in range(lo, hi + 1) if i not in taken and i not in fine]
            if n_random > 0 and free:
                picks = rng.choice(len(free), size=min(n_random, len(free)), replace=False)
                fine.update(free[int(j)] for j in picks)
        return sorted(fine)

    def _plan_adaptive(self) -> list[int]:
        """Lean zoom pass: share the remaining budget over zoomed arms by UCB, then split their best gaps."""
        assert self._budget is not None
        taken = set(self._scores) | set(self._coarse)
        # Unobserved coarse requests still count against the budget: the caller may score them late.
        left = self._budget - len(taken)
        if left <= 0:
            return []
        zoom = self._zoom_arms()
        caps = np.array([sum(1 for i in range(*self._arms[a]) if i not in taken) for a in zoom], dtype=np.int64)

        u_all = self._arm_ucb()
        finite = u_all[np.isfinite(u_all)]
        floor = float(finite.min()) if finite.size else 0.0
        top = float(finite.max()) if finite.size else 0.0
        # Weight by how far each arm's UCB clears the weakest arm; an unexplored (inf) arm counts as the best.
        u = np.where(np.isfinite(u_all[zoom]), u_all[zoom], top) - floor
        u = u + 0.05 * max(float(u.max()), 1e-9)
        alloc = _allocate(left, u, caps)

        values = np.fromiter(self._scores.values(), dtype=np.float64)
        lo_v, hi_v = float(values.min()), float(values.max())
        span = hi_v - lo_v

        def rel(i: int) -> float:
            s = self._scores.get(i)
            return 0.0 if s is None or span <= 0 else (s - lo_v) / span

        fine: list[int] = []
        for a, count in zip(zoom, alloc, strict=True):
            if count > 0:
                fine.extend(self._split_gaps(a, count, taken, rel))
        return sorted(fine)

    def _split_gaps(self, arm: int, count: int, taken: set[int], rel: Callable[[int], float]) -> list[int]:
        """Place ``count`` new frames in an arm by repeatedly halving the gap with the highest priority.

        Priority is ``free positions * (floor + expected relevance at the gap's midpoint)``, where the expected
        relevance is the best scored anchor's normalised score decayed with distance (scale: an eighth of the
        arm). Gaps near high-scoring frames are thus split finer, while wide gaps elsewhere still get covered.
        """
        start, end = self._arms[arm]
        anchors = sorted(i for i in taken if start <= i < end)
        pos = np.array([i for i in anchors if i in self._scores], dtype=np.float64)
        lvl = np.array([float(rel(int(i))) for i in pos], dtype=np.float64)
        scale = max(2.0, (end - start) / 8.0)

        def expected(x: int) -> float:
            if pos.size == 0:
                return 0.0
            return float(np.max(lvl * np.exp(-np.abs(pos - x) / scale)))

        def push(heap: list[tuple[float, int, int]], left: int, right: int) -> None:
            free = right - left - 1
            if free > 0:
                prio = free * (_LEAN_RELEVANCE_FLOOR + expected((left + right) // 2))
                heapq.heappush(heap, (-prio, left, right))

        heap: list[tuple[float, int, int]] = []
        for left, right in itertools.pairwise([start - 1, *anchors, end]):  # start-1 and end are walls
            push(heap, left, right)
        out: list[int] = []
        while heap and len(out) < count:
            _, left, right = heapq.heappop(heap)
            mid = (left + right) // 2
            out.append(mid)
            push(heap, left, mid)
            push(heap, mid, right)
        return out

    def _draw(
        self,
        *,
        pool: npt.NDArray[np.int64],
        xs: npt.NDArray[np.int64],
        vs: FloatArray,
        need: int,
        blocked: npt.NDArray[np.bool_],
        take: Callable[[int], None],
        rng: np.random.Generator,
    ) -> None:
        """Draw up to ``need`` frames from ``pool`` by softmax over normalised interpolated scores, one at a time."""
        if need <= 0 or pool.size == 0:
            return
        open_ = pool[~blocked[pool]]
        if open_.size == 0:
            return
        # Normalise once over the frames open at the start, as the reference does per arm.
        est = _nearest_estimate(xs, vs, open_) if xs.size else np.zeros(open_.size)
        logits = _minmax(est) / self._p.temperature
        for _ in range(need):
            mask = ~blocked[open_]
            if not mask.any():
                return
            cand, lg = open_[mask], logits[mask]
            w = np.exp(lg - lg.max())
            pick = int(cand[rng.choice(cand.size, p=w / w.sum())])
            take(pick)
