"""Reference keyframe selectors that FOCUS is compared against: uniform spacing and exhaustive top-k."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["check_k", "safe_gap", "top_k_indices", "uniform_indices"]


def check_k(num_candidates: int, k: int) -> None:
    """The one rule on ``k`` every selector keeps: 1 <= k <= the candidates there are (ValueError naming it)."""
    if num_candidates <= 0:
        raise ValueError(f"num_candidates: must be positive, got {num_candidates}")
    if k <= 0 or k > num_candidates:
        raise ValueError(f"k: must be in 1..{num_candidates}, got {k}")


def safe_gap(num_candidates: int, k: int, min_gap: int) -> int:
    """Largest gap <= ``min_gap`` for which greedy selection of ``k`` frames can never get stuck.

    Each chosen frame blocks at most ``2 * gap - 1`` grid positions, so while ``(k - 1) * (2 * gap - 1) <
    num_candidates`` a free position always remains for the next pick, whatever was picked before.
    """
    if min_gap <= 1 or k <= 1:
        return max(min_gap, 0)
    return min(min_gap, ((num_candidates - 1) // (k - 1) + 1) // 2)


def uniform_indices(num_candidates: int, k: int) -> list[int]:
    """Centres of ``k`` equal bins over ``0..num_candidates-1`` (distinct because each bin is >= 1 wide)."""
    check_k(num_candidates, k)
    # Integer form of floor((i + 0.5) * n / k), so no float rounding can merge neighbours.
    return [((2 * i + 1) * num_candidates) // (2 * k) for i in range(k)]


def top_k_indices(scores: Sequence[float], k: int, min_gap: int = 0) -> list[int]:
    """Exhaustive top-k by score, returned sorted by index; ties go to the lower index.

    With ``min_gap`` > 1, picks are greedy in score order and skip frames closer than ``min_gap`` to an
    earlier pick. If fewer than ``k`` frames fit that way, the pass is redone with :func:`safe_gap`.
    """
    n = len(scores)
    check_k(n, k)
    if min_gap < 0:
        raise ValueError(f"min_gap: must be >= 0, got {min_gap}")
    if any(math.isnan(float(s)) for s in scores):
        raise ValueError("scores: NaN score")
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    picked = _greedy(order, n, k, min_gap)
    if picked is None:
        picked = _greedy(order, n, k, safe_gap(n, k, min_gap))
    if picked is None:  # unreachable: safe_gap always leaves room
        raise AssertionError("top_k_indices: no feasible selection")
    return sorted(picked)


def _greedy(order: Sequence[int], n: int, k: int, gap: int) -> list[int] | None:
    """Take frames in ``order``, skipping any closer than ``gap`` to a taken one; None if fewer than k fit."""
    if gap <= 1:
        return list(order[:k])
    blocked = [False] * n
    chosen: list[int] = []
    for i in order:
        if blocked[i]:
            continue
        chosen.append(i)
        if len(chosen) == k:
            return chosen
        for j in range(max(0, i - gap + 1), min(n, i + gap)):
            blocked[j] = True
    return None
