from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tessera.keyframes.baselines import uniform_indices
from tessera.keyframes.focus import FocusParams, FocusSearch, adaptive_min_gap_s, ucb

Scores = npt.NDArray[np.float64]


def planted(n: int, lo: int, hi: int, seed: int = 0) -> Scores:
    """Background relevance ~0.1, a relevant region [lo, hi) at ~0.85."""
    rng = np.random.default_rng(1000 + seed)
    s = 0.1 + 0.05 * rng.random(n)
    s[lo:hi] = 0.8 + 0.1 * rng.random(hi - lo)
    return s


def run(search: FocusSearch, scores: Scores, *, fine: bool = True) -> list[int]:
    coarse = search.coarse_requests()
    search.observe(coarse, scores[coarse].tolist())
    if fine:
        req = search.fine_requests()
        search.observe(req, scores[req].tolist())
    return search.select()


# ----------------------------------------------------------------------------- UCB


def test_ucb_formula_values() -> None:
    # N = 5, ln 5 = 1.6094379
    # arm 0: 0.5 + sqrt(2 * 1.6094 * 0.04 / 4) + 3 * 1.6094 / 4 = 0.5 + 0.179413 + 1.207078 = 1.886491
    # arm 1: var 0 floored to 1e-6: 0.2 + sqrt(2 * 1.6094 * 1e-6 / 1) + 3 * 1.6094 = 0.2 + 0.001794 + 4.828314
    out = ucb(np.array([0.5, 0.2]), np.array([0.04, 0.0]), np.array([4, 1]), 5)
    ln5 = math.log(5)
    assert out[0] == pytest.approx(0.5 + math.sqrt(2 * ln5 * 0.04 / 4) + 3 * ln5 / 4)
    assert out[1] == pytest.approx(0.2 + math.sqrt(2 * ln5 * 1e-6) + 3 * ln5)
    assert out == pytest.approx([1.886491, 5.030108], abs=1e-6)


def test_ucb_edge_cases() -> None:
    # An unsampled arm is maximally optimistic; with N <= 1, ln N = 0 leaves only the mean.
    out = ucb([0.3, 0.0], [0.0, 0.0], [1, 0], 1)
    assert out[0] == pytest.approx(0.3)
    assert math.isinf(out[1])
    with pytest.raises(ValueError, match="shapes"):
        ucb([0.1, 0.2], [0.0], [1, 1], 2)
    with pytest.raises(ValueError, match="total"):
        ucb([0.1], [0.0], [1], -1)


# ----------------------------------------------------------------------------- budget accounting


def test_published_schedule_on_an_hour_at_1fps() -> None:
    search = FocusSearch(3600, 1.0, 64, FocusParams.published())
    # arms = max(8, ceil(3600 / 16)) = 225, each centre + 2 extras = 675 coarse frames = 18.75 % of the grid
    assert len(search.arms) == 225
    coarse = search.coarse_requests()
    assert len(coarse) == 675
    assert len(coarse) / 3600 == pytest.approx(0.1875)
    run(search, planted(3600, 2000, 2060))
    assert len(search.scored) > 0.15 * 3600
    assert search.score_budget is None


@pytest.mark.parametrize("n", [1800, 1801, 2400, 2999, 3599, 3600])
def test_lean_schedule_stays_within_5_percent(n: int) -> None:
    search = FocusSearch(n, 1.0, 64, FocusParams.lean(0.05))
    coarse = search.coarse_requests()
    coarse_set = set(coarse)
    search.observe(coarse, planted(n, n // 3, n // 3 + 60)[coarse].tolist())
    fine = search.fine_requests()
    assert fine, "the adaptive zoom pass should spend the rest of the budget"
    assert coarse_set.isdisjoint(fine)
    total = len(coarse) + len(fine)
    assert total <= 0.05 * n
    assert total >= 0.04 * n  # and it does use most of it


def test_lean_budget_also_holds_on_a_denser_grid() -> None:
    # One hour at 2 fps: 7200 candidates, budget floor(0.05 * 7200) = 360.
    search = FocusSearch(7200, 2.0, 64, FocusParams.lean(0.05))
    selected = run(search, planted(7200, 5000, 5120))
    assert search.score_budget == 360
    assert len(search.scored) <= 360
    assert len(selected) == 64


def test_lean_params() -> None:
    p = FocusParams.lean(0.05)
    # coarse (1 + 1 extra) per arm should fill half of 5 %: arm = 2 / (0.05 * 0.5) = 80 s
    assert (p.arm_seconds, p.coarse_extra_samples, p.score_budget_fraction) == (80.0, 1, 0.05)
    assert FocusParams.lean(0.05, arm_seconds=120.0).arm_seconds == 120.0
    assert FocusParams.published() == FocusParams()


# ----------------------------------------------------------------------------- structure


def test_arms_tile_the_grid_and_coarse_hits_every_centre() -> None:
    search = FocusSearch(1000, 1.0, 16, FocusParams.published())
    arms = search.arms
    assert arms[0][0] == 0 and arms[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(arms))
    coarse = search.coarse_requests()
    assert coarse == sorted(set(coarse))
    for start, end in arms:
        inside = [i for i in coarse if start <= i < end]
        assert (start + end - 1) // 2 in inside
        assert len(inside) == 3  # centre + 2 extras


def test_published_fine_pass_stays_near_zoomed_centres() -> None:
    n = 3600
    search = FocusSearch(n, 1.0, 64, FocusParams.published())
    scores = planted(n, 2000, 2060)
    coarse = search.coarse_requests()
    search.observe(coarse, scores[coarse].tolist())
    fine = search.fine_requests()
    assert fine == sorted(set(fine))
    assert set(fine).isdisjoint(coarse)
    centres = np.array([(s + e - 1) // 2 for s, e in search.arms])
    # windows are centre +- round(16 / 2) = 8 frames
    dist = np.min(np.abs(np.array(fine)[:, None] - centres[None, :]), axis=1)
    assert int(dist.max()) <= 8
    assert search.fine_requests() == fine  # planned once


def test_lean_fine_pass_concentrates_near_the_relevant_region() -> None:
    n, lo, hi = 3600, 1980, 2040
    for seed in range(4):
        search = FocusSearch(n, 1.0, 64, FocusParams.lean(0.05, seed=seed))
        scores = planted(n, lo, hi, seed)
        coarse = search.coarse_requests()
        search.observe(coarse, scores[coarse].tolist())
        fine = search.fine_requests()
        near = sum(1 for i in fine if lo - 80 <= i < hi + 80)
        # that neighbourhood is 6 % of the grid and about one of the 12 zoomed arms
        assert near / len(fine) > 0.3, (seed, near, len(fine))


def test_lean_fine_samples_cluster_around_each_arms_best_point() -> None:
    # 1600 candidates, lean 5 %: budget 80, 20 arms of 80 frames, 40 coarse. Every arm's centre scores 0.9 and
    # its extra 0.1, so all arms tie and 5 zoomed arms share 40 fine frames. Spread evenly, about 21/80 of them
    # would land within 10 frames of a centre (~10); relevance-weighted splitting puts about half there.
    for seed in range(3):
        search = FocusSearch(1600, 1.0, 16, FocusParams.lean(0.05, seed=seed))
        coarse = search.coarse_requests()
        centres = [(s + e - 1) // 2 for s, e in search.arms]
        search.observe(coarse, [0.9 if i in centres else 0.1 for i in coarse])
        fine = search.fine_requests()
        assert len(fine) == 40
        dist = [min(abs(i - c) for c in centres) for i in fine]
        near, far = sum(d <= 10 for d in dist), sum(d > 20 for d in dist)
        assert near >= 15 and near > far, (seed, near, far)


# ----------------------------------------------------------------------------- selection


@pytest.mark.parametrize("schedule", ["published", "lean"])
@pytest.mark.parametrize(("n", "k"), [(3600, 64), (1000, 32), (200, 50), (97, 13), (40, 40)])
def test_select_returns_k_unique_sorted(schedule: str, n: int, k: int) -> None:
    params = FocusParams.published() if schedule == "published" else FocusParams.lean()
    out = run(FocusSearch(n, 1.0, k, params), planted(n, n // 2, n // 2 + max(2, n // 20)))
    assert len(out) == k
    assert out == sorted(set(out))
    assert out[0] >= 0 and out[-1] < n


def test_top_share_is_the_best_scored_frames() -> None:
    search = FocusSearch(3600, 1.0, 64, FocusParams.published())
    out = run(search, planted(3600, 1000, 1060))
    best = sorted(search.scored, key=lambda i: -search.scored[i])[: round(0.2 * 64)]
    assert set(best) <= set(out)


@pytest.mark.parametrize("schedule", ["published", "lean"])
def test_min_gap_is_respected(schedule: str) -> None:
    extra: dict[str, Any] = {"min_gap_s": 5.0}
    params = FocusParams.published(**extra) if schedule == "published" else FocusParams.lean(**extra)
    # a dense relevant region tempts many picks close together
    out = run(FocusSearch(600, 1.0, 40, params), planted(600, 300, 330))
    assert len(out) == 40
    assert min(np.diff(out)) >= 5
    # at 2 fps a 3 s gap is 6 candidates
    out2 = run(FocusSearch(1200, 2.0, 40, FocusParams.published(min_gap_s=3.0)), planted(1200, 600, 660))
    assert min(np.diff(out2)) >= 6


def test_min_gap_is_relaxed_when_k_frames_cannot_fit() -> None:
    # 30 frames 5 apart need 146 candidates; 50 are available, so the gap gives way and k still holds.
    out = run(FocusSearch(50, 1.0, 30, FocusParams.published(min_gap_s=5.0)), planted(50, 10, 20))
    assert len(out) == 30 and out == sorted(set(out))


@pytest.mark.parametrize("schedule", ["published", "lean"])
def test_focus_finds_a_planted_region_better_than_uniform(schedule: str) -> None:
    n, k = 3600, 64
    for seed, lo in enumerate([300, 1980, 3100]):
        hi = lo + 60
        scores = planted(n, lo, hi, seed)
        extra: dict[str, Any] = {"seed": seed}
        params = FocusParams.published(**extra) if schedule == "published" else FocusParams.lean(**extra)
        out = run(FocusSearch(n, 1.0, k, params), scores)
        focus_hits = sum(1 for i in out if lo <= i < hi)
        uniform_hits = sum(1 for i in uniform_indices(n, k) if lo <= i < hi)
        # uniform expects 64 * 60 / 3600 ~ 1 hit; FOCUS gets the 13 top-scored frames plus arm draws
        assert focus_hits >= 13, (seed, focus_hits)
        assert focus_hits > 4 * uniform_hits, (seed, focus_hits, uniform_hits)


def test_ranking_with_fine_samples_drifts_away_from_zoomed_arms() -> None:
    # With zoom samples counted, the 3 ln N / n_i term (~7 at n_i = 3 vs ~1 at n_i = 20) outranks any score
    # difference in [0, 1], so arm draws leave the relevant (zoomed) arms: only the top-scored share remains.
    n, lo, hi = 3600, 1980, 2040
    scores = planted(n, lo, hi)
    hits = {}
    for flag in (False, True):
        out = run(FocusSearch(n, 1.0, 64, FocusParams.published(rank_with_fine=flag)), scores)
        hits[flag] = sum(1 for i in out if lo <= i < hi)
    assert hits[False] > hits[True] + 5


def test_deterministic_for_a_seed() -> None:
    scores = planted(3600, 700, 760)

    def trace(seed: int) -> tuple[list[int], list[int], list[int]]:
        s = FocusSearch(3600, 1.0, 64, FocusParams.published(seed=seed))
        c = s.coarse_requests()
        s.observe(c, scores[c].tolist())
        f = s.fine_requests()
        s.observe(f, scores[f].tolist())
        return c, f, s.select()

    assert trace(7) == trace(7)
    assert trace(7)[0] != trace(8)[0]
    assert trace(7)[2] != trace(8)[2]
    lean = FocusSearch(3600, 1.0, 64, FocusParams.lean(seed=3))
    out = run(lean, scores)
    assert lean.select() == out  # repeated select is stable


@pytest.mark.parametrize("schedule", ["published", "lean"])
@pytest.mark.parametrize(("n", "k"), [(5, 3), (1, 1), (3, 3), (2, 1), (9, 4)])
def test_tiny_videos(schedule: str, n: int, k: int) -> None:
    params = FocusParams.published() if schedule == "published" else FocusParams.lean()
    search = FocusSearch(n, 1.0, k, params)
    out = run(search, np.linspace(0.1, 0.9, n))
    assert len(out) == k and out == sorted(set(out)) and out[-1] < n
    assert set(search.scored) <= set(range(n))


@pytest.mark.parametrize("schedule", ["published", "lean"])
def test_k_equals_num_candidates(schedule: str) -> None:
    params = FocusParams.published() if schedule == "published" else FocusParams.lean()
    assert run(FocusSearch(20, 1.0, 20, params), planted(20, 5, 8)) == list(range(20))


def test_select_works_without_fine_pass_or_scores() -> None:
    assert len(run(FocusSearch(500, 1.0, 16, FocusParams.published()), planted(500, 0, 30), fine=False)) == 16
    assert len(FocusSearch(500, 1.0, 16, FocusParams.published()).select()) == 16


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("arm_seconds", 0.0),
        ("arm_seconds", float("nan")),
        ("min_arms", 0),
        ("coarse_extra_samples", -1),
        ("zoom_ratio", 0.0),
        ("zoom_ratio", 1.5),
        ("fine_stride_s", 0.0),
        ("fine_uniform_ratio", 1.2),
        ("score_budget_fraction", 0.0),
        ("score_budget_fraction", 1.5),
        ("top_ratio", -0.1),
        ("select_arm_ratio", 0.0),
        ("min_select_arms", 0),
        ("max_select_arms", 2),
        ("temperature", 0.0),
        ("min_gap_s", -1.0),
        ("seed", -1),
    ],
)
def test_invalid_params_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        FocusParams.published(**{field: value})
    with pytest.raises(ValueError, match=field):
        FocusSearch(100, 1.0, 4, FocusParams(**{field: value}))


def test_invalid_lean_fraction() -> None:
    with pytest.raises(ValueError, match="budget_fraction"):
        FocusParams.lean(0.0)


@pytest.mark.parametrize(
    ("n", "fps", "k", "name"),
    [(0, 1.0, 1, "num_candidates"), (10, 1.0, 0, "k"), (10, 1.0, 11, "k"), (10, 0.0, 1, "fps")],
)
def test_invalid_search_arguments(n: int, fps: float, k: int, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FocusSearch(n, fps, k, FocusParams())


def test_observe_validation_and_order() -> None:
    search = FocusSearch(10, 1.0, 2, FocusParams())
    with pytest.raises(RuntimeError, match="coarse"):
        search.fine_requests()
    with pytest.raises(ValueError, match="indices"):
        search.observe([10], [0.5])
    with pytest.raises(ValueError, match="scores"):
        search.observe([1], [float("nan")])
    with pytest.raises(ValueError, match="scores"):
        search.observe([1, 2], [0.5])
    assert search.scored == {}  # nothing half-applied
    search.observe([3, 3], [0.1, 0.4])
    view = search.scored
    view[3] = 9.0
    assert search.scored == {3: 0.4}  # last value wins; the property is a copy


def test_adaptive_min_gap() -> None:
    # 1 h, 64 frames: spacing 56.25 s, quarter = 14.06 s, capped at 1 s
    assert adaptive_min_gap_s(3600, 64) == pytest.approx(1.0)
    # 20 s, 64 frames: spacing 0.3125 s > 0.2 s -> 0.25 * 0.3125 = 0.078 s
    assert adaptive_min_gap_s(20, 64) == pytest.approx(0.078125)
    # 10 s, 64 frames: spacing 0.156 s <= 0.2 s -> no gap
    assert adaptive_min_gap_s(10, 64) == 0.0
