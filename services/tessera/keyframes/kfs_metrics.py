"""KFS-Bench keyframe-selection metrics (arXiv 2512.14017), measured the way the reference ``eval.py`` does.

Per question the ground truth is a list of scenes; a scene is one or more ``(start, end)`` segments in seconds.
The selection is a list of frame timestamps ``T`` in seconds.

Details taken from the reference ``eval.py`` (NEC-VID/KFS-Bench), which this module follows:

* Every segment end is extended by 1 s, and "inside" is closed on both sides: ``start <= t <= end + 1``.
* ``len_s`` of a scene is the sum of its extended segment lengths ``sum(end + 1 - start)``; overlapping
  segments of one scene are not merged (the overlap counts twice).
* ``n_tp`` counts timestamps inside any segment of any scene (each timestamp once, duplicates in ``T`` count
  once per occurrence). ``hits_s`` counts timestamps inside scene ``s``; a timestamp inside two overlapping
  scenes counts for both, so ``sum(hits) >= n_tp`` is possible.
* BSR threshold per scene: ``max(1, floor(min(len_s / sum(len) * n_tp, n_tp / |S|)))``.
* BDS is the best cosine over ``gamma in {0, 0.1, ..., 1}`` between ``hits`` and ``len ** gamma``; with no
  hit at all it is 0 (the cosine of a zero vector is taken as 0).
* UKSS per question is ``(KFR * BSR * BDS) ** (1/3)`` with no clipping of the individual metrics; the clip at
  0.01 is applied to each question's UKSS, before the geometric mean over questions.
* Dataset KFR and SHR are arithmetic means over questions, not geometric means (see :func:`aggregate`).

Where eval.py is undefined this module chooses: an empty ``T`` gives all-zero metrics (eval.py divides 0 by 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["END_EXTENSION_S", "KfsScores", "Scene", "aggregate", "dataset_score", "score_selection"]

# Annotated GT ends are inclusive at 1 s granularity, so the reference widens each segment by one second.
END_EXTENSION_S = 1.0
_GAMMAS = tuple(0.1 * j for j in range(11))


@dataclass(frozen=True)
class Scene:
    """One ground-truth scene: segments ``(start, end)`` in seconds as given in the GT file (no +1 s yet)."""

    segments: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        # Normalise lists/ints to a hashable tuple of float pairs so equal scenes compare equal.
        segs = tuple((float(s), float(e)) for s, e in self.segments)
        if not segs:
            raise ValueError("segments: a scene needs at least one segment")
        for start, end in segs:
            if not (math.isfinite(start) and math.isfinite(end)):
                raise ValueError(f"segments: non-finite bound in ({start}, {end})")
            if end < start:
                raise ValueError(f"segments: end {end} < start {start}")
        object.__setattr__(self, "segments", segs)

    @property
    def length_s(self) -> float:
        """Scene length as eval.py measures it: sum of extended segment lengths, overlaps not merged."""
        return sum(end + END_EXTENSION_S - start for start, end in self.segments)

    def contains(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Mask of timestamps inside any segment, closed interval ``[start, end + 1]``."""
        mask = np.zeros(t.shape, dtype=bool)
        for start, end in self.segments:
            mask |= (t >= start) & (t <= end + END_EXTENSION_S)
        return mask


@dataclass(frozen=True)
class KfsScores:
    kfr: float
    shr: float
    bsr: float
    bds: float
    ukss: float
    n_tp: int
    hits_per_scene: tuple[int, ...]


def _check_timestamps(timestamps_s: Sequence[float]) -> npt.NDArray[np.float64]:
    t = np.asarray(timestamps_s, dtype=np.float64).reshape(-1)
    if np.isnan(t).any():
        raise ValueError("timestamps_s: NaN timestamp")
    if (t < 0).any():
        raise ValueError("timestamps_s: negative timestamp")
    if np.isinf(t).any():
        raise ValueError("timestamps_s: infinite timestamp")
    return t


def score_selection(timestamps_s: Sequence[float], scenes: Sequence[Scene]) -> KfsScores:
    """KFR, SHR, BSR, BDS and UKSS of one question's selected timestamps against its GT scenes."""
    if len(scenes) == 0:
        raise ValueError("scenes: at least one ground-truth scene is required")
    t = _check_timestamps(timestamps_s)

    per_scene = np.stack([sc.contains(t) for sc in scenes]) if t.size else np.zeros((len(scenes), 0), dtype=bool)
    hits = per_scene.sum(axis=1).astype(np.int64)
    n_tp = int(per_scene.any(axis=0).sum())
    lens = np.array([sc.length_s for sc in scenes], dtype=np.float64)

    if t.size == 0:
        # eval.py would compute 0/0 here; an empty selection simply finds nothing.
        return KfsScores(0.0, 0.0, 0.0, 0.0, 0.0, 0, tuple(int(h) for h in hits))

    kfr = n_tp / t.size
    shr = float((hits > 0).mean())

    # Each scene must get its length-proportional share of the hits, capped by an equal share, but at least one.
    share = np.minimum(lens / lens.sum() * n_tp, np.full(len(scenes), n_tp / len(scenes)))
    thresholds = np.maximum(np.floor(share), 1.0)
    bsr = float((hits >= thresholds).mean())

    bds = 0.0
    if n_tp > 0:
        hv = hits.astype(np.float64)
        hn = float(np.linalg.norm(hv))
        for gamma in _GAMMAS:
            lv = lens**gamma
            bds = max(bds, float(hv @ lv) / (hn * float(np.linalg.norm(lv))))

    ukss = (kfr * bsr * bds) ** (1.0 / 3.0)
    return KfsScores(
        kfr=float(kfr),
        shr=shr,
        bsr=bsr,
        bds=bds,
        ukss=float(ukss),
        n_tp=n_tp,
        hits_per_scene=tuple(int(h) for h in hits),
    )


def dataset_score(values: Sequence[float], floor: float = 0.01) -> float:
    """Geometric mean over questions, each value first clipped from below at ``floor`` (eval.py uses 1e-2)."""
    if not (math.isfinite(floor) and floor > 0):
        raise ValueError(f"floor: must be a positive finite number, got {floor}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("values: at least one value is required")
    if np.isnan(v).any():
        raise ValueError("values: NaN value")
    return float(np.exp(np.mean(np.log(np.maximum(v, floor)))))


def aggregate(scores: Sequence[KfsScores]) -> dict[str, float]:
    """Dataset-level metrics, as eval.py reports them.

    eval.py averages differently per metric: UKSS is the geometric mean of per-question UKSS clipped at 0.01
    (:func:`dataset_score`), while KFR and SHR are plain arithmetic means. eval.py does not report BSR and BDS;
    they are given here as arithmetic means like the other component metrics.
    """
    if len(scores) == 0:
        raise ValueError("scores: at least one question is required")
    return {
        "kfr": float(np.mean([s.kfr for s in scores])),
        "shr": float(np.mean([s.shr for s in scores])),
        "bsr": float(np.mean([s.bsr for s in scores])),
        "bds": float(np.mean([s.bds for s in scores])),
        "ukss": dataset_score([s.ukss for s in scores]),
    }


def oracle_timestamps(scenes: Sequence[Scene], k: int, fps: float, duration_s: float) -> list[float]:
    """What a selector that knows the ground truth picks: ``k`` grid frames inside the scenes, shared out by scene
    length (largest remainder, at least one per scene while ``k`` allows), evenly spaced within each scene.

    Its UKSS is the ceiling a scorer+sampler is measured against (KFR 1, every scene hit in its length share).
    Timestamps lie on the ``fps`` grid below ``duration_s`` and inside the annotated (unextended) segments.
    """
    if k <= 0 or fps <= 0:
        raise ValueError("k and fps must be positive")
    grids = []
    for scene in scenes:
        frames = sorted(
            {
                i
                for start, end in scene.segments
                for i in range(math.ceil(start * fps), math.floor(min(end, duration_s) * fps) + 1)
                if i / fps < duration_s
            }
        )
        grids.append(frames)
    lens = np.array([len(g) for g in grids], dtype=np.float64)
    usable = [i for i, g in enumerate(grids) if g]
    if not usable:
        return []
    budget = min(k, int(lens.sum()))
    share = np.zeros(len(grids))
    share[usable] = lens[usable] / lens[usable].sum() * budget
    counts = np.floor(share).astype(int)
    if budget >= len(usable):
        counts[usable] = np.maximum(counts[usable], 1)
    for i in np.argsort(-(share - np.floor(share))):
        if counts.sum() >= budget:
            break
        if counts[i] < lens[i] and i in usable:
            counts[i] += 1
    while counts.sum() > budget:  # the "at least one" floor can overshoot: take back from the largest
        counts[int(np.argmax(counts))] -= 1
    picked: set[int] = set()
    for grid, wanted in zip(grids, counts, strict=True):
        count = min(int(wanted), len(grid))
        picked.update(grid[((2 * j + 1) * len(grid)) // (2 * count)] for j in range(count))
    return [i / fps for i in sorted(picked)]
