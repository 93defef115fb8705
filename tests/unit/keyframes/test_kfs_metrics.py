"""Hand-worked KFS-Bench metric cases; the arithmetic is in the comments next to each expectation."""

from __future__ import annotations

import math

import pytest

from tessera.keyframes.kfs_metrics import KfsScores, Scene, aggregate, dataset_score, score_selection


def scene(*segments: tuple[float, float]) -> Scene:
    return Scene(segments=tuple(segments))


def test_two_scenes_all_metrics() -> None:
    # A = [10, 14] -> extended [10, 15], len 5.  B = [30, 31] + [40, 40] -> [30, 32] + [40, 41], len 2 + 1 = 3.
    a, b = scene((10, 14)), scene((30, 31), (40, 40))
    # 10 in A (start is inclusive), 15 in A (end + 1 is inclusive), 15.5 outside, 31 in B, 50 outside.
    r = score_selection([10, 15, 15.5, 31, 50], [a, b])
    assert r.n_tp == 3
    assert r.hits_per_scene == (2, 1)
    assert r.kfr == pytest.approx(3 / 5)
    assert r.shr == pytest.approx(1.0)
    # thresholds: A max(1, floor(min(5/8*3 = 1.875, 3/2 = 1.5))) = 1; B max(1, floor(min(3/8*3 = 1.125, 1.5))) = 1
    assert r.bsr == pytest.approx(1.0)
    # cos((2, 1), (5^g, 3^g)) grows up to g = ln2/ln(5/3) = 1.36 > 1, so the best grid point is g = 1:
    # (2*5 + 1*3) / (sqrt(5) * sqrt(34)) = 13 / sqrt(170) = 0.99705
    assert r.bds == pytest.approx(13 / math.sqrt(170))
    assert r.ukss == pytest.approx((0.6 * 1.0 * 13 / math.sqrt(170)) ** (1 / 3))


def test_unbalanced_hits_fail_bsr_for_the_missed_scene() -> None:
    # A = [0, 99] -> [0, 100], len 100; B = [200, 200] -> [200, 201], len 1; sum 101. Ten timestamps, all in A.
    r = score_selection([float(t) for t in range(10)], [scene((0, 99)), scene((200, 200))])
    assert r.n_tp == 10
    assert r.kfr == pytest.approx(1.0)
    assert r.shr == pytest.approx(0.5)
    # A: floor(min(100/101*10 = 9.9, 10/2 = 5)) = 5, hits 10 >= 5 ok; B: max(1, floor(0.099)) = 1, hits 0 -> fail
    assert r.bsr == pytest.approx(0.5)
    # cos((10, 0), (100^g, 1^g)) = 100^g / sqrt(100^2g + 1), best at g = 1: 100 / sqrt(10001) = 0.99995
    assert r.bds == pytest.approx(100 / math.sqrt(10001))
    assert r.ukss == pytest.approx((1.0 * 0.5 * 100 / math.sqrt(10001)) ** (1 / 3))


def test_bsr_threshold_uses_floor_of_the_share() -> None:
    # Three scenes of equal length 2 ([0,1], [10,11], [20,21] extended to +1 s).
    scenes = [scene((0, 1)), scene((10, 11)), scene((20, 21))]
    # n_tp = 7: each threshold is floor(min(2/6*7, 7/3)) = floor(2.33) = 2.
    balanced = score_selection([0, 1, 2, 10, 11, 20, 21], scenes)
    assert balanced.hits_per_scene == (3, 2, 2)
    assert balanced.bsr == pytest.approx(1.0)
    skewed = score_selection([0, 1, 2, 0.5, 10, 11, 20], scenes)
    assert skewed.hits_per_scene == (4, 2, 1)
    assert skewed.bsr == pytest.approx(2 / 3)  # third scene has 1 < 2


def test_bds_takes_the_best_gamma_on_the_grid() -> None:
    # A = [0, 4] -> len 5, B = [10, 12] -> len 3.
    scenes = [scene((0, 4)), scene((10, 12))]
    # hits (1, 1): gamma = 0 gives len^0 = (1, 1), the same direction -> cos 1 (gamma = 1 only gives 0.970).
    even = score_selection([0, 10], scenes)
    assert even.bds == pytest.approx(1.0)
    # hits (3, 2): ideal (5/3)^g = 1.5 at g = 0.79, so the grid's best is g = 0.8:
    # (3 * 5^0.8 + 2 * 3^0.8) / (sqrt(13) * sqrt(5^1.6 + 3^1.6))
    mixed = score_selection([0, 1, 2, 10, 11], scenes)
    assert mixed.hits_per_scene == (3, 2)
    best = (3 * 5**0.8 + 2 * 3**0.8) / (math.sqrt(13) * math.sqrt(5**1.6 + 3**1.6))
    at_one = (3 * 5 + 2 * 3) / (math.sqrt(13) * math.sqrt(34))
    assert mixed.bds == pytest.approx(best, abs=1e-12)
    assert mixed.bds > at_one


def test_end_extension_boundary() -> None:
    s = [scene((5, 5))]  # covers [5, 6]
    assert score_selection([6.0], s).n_tp == 1
    assert score_selection([6.001], s).n_tp == 0
    assert score_selection([4.999], s).n_tp == 0


def test_zero_hits_give_zero_not_nan() -> None:
    r = score_selection([100.0], [scene((0, 1))])
    # n_tp = 0: KFR 0; threshold max(1, floor(0)) = 1 and hits 0 -> BSR 0; BDS of a zero vector taken as 0.
    assert (r.kfr, r.shr, r.bsr, r.bds, r.ukss, r.n_tp) == (0.0, 0.0, 0.0, 0.0, 0.0, 0)
    assert not math.isnan(r.bds)


def test_empty_selection_is_all_zero() -> None:
    r = score_selection([], [scene((0, 1)), scene((3, 4))])
    assert (r.kfr, r.shr, r.bsr, r.bds, r.ukss, r.n_tp) == (0.0, 0.0, 0.0, 0.0, 0.0, 0)
    assert r.hits_per_scene == (0, 0)


def test_overlapping_scenes_both_count_a_shared_hit() -> None:
    # t = 7 lies in A [0, 11] and in B [5, 16]: n_tp counts it once, each scene counts it.
    r = score_selection([7.0], [scene((0, 10)), scene((5, 15))])
    assert r.n_tp == 1
    assert r.hits_per_scene == (1, 1)
    assert r.kfr == pytest.approx(1.0)
    # thresholds max(1, floor(min(11/22*1, 1/2))) = 1 each; hits (1, 1) -> BSR 1; equal lengths -> BDS 1.
    assert r.bsr == pytest.approx(1.0)
    assert r.bds == pytest.approx(1.0)
    assert r.ukss == pytest.approx(1.0)


def test_scene_length_sums_segments_without_merging_overlap() -> None:
    # eval.py: sum(end + 1 - start) per segment: (9 + 1 - 0) + (9 + 1 - 5) = 10 + 5 = 15, not the union 10.
    assert scene((0, 9), (5, 9)).length_s == pytest.approx(15.0)


def test_duplicate_timestamps_count_per_occurrence() -> None:
    # eval.py counts over the timestamp array, so a repeated timestamp is two true positives.
    r = score_selection([1.0, 1.0, 50.0], [scene((0, 2))])
    assert r.n_tp == 2
    assert r.kfr == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("timestamps", "scenes", "name"),
    [
        ([1.0], [], "scenes"),
        ([-0.5], [Scene(((0.0, 1.0),))], "timestamps_s"),
        ([float("nan")], [Scene(((0.0, 1.0),))], "timestamps_s"),
    ],
)
def test_invalid_inputs(timestamps: list[float], scenes: list[Scene], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        score_selection(timestamps, scenes)


def test_invalid_segments() -> None:
    with pytest.raises(ValueError, match="segments"):
        Scene(((5.0, 4.0),))
    with pytest.raises(ValueError, match="segments"):
        Scene(())
    with pytest.raises(ValueError, match="segments"):
        Scene(((0.0, float("nan")),))


def test_dataset_score_clips_each_value_then_takes_geometric_mean() -> None:
    # [0.5, 0.002, 1.0] -> clipped [0.5, 0.01, 1.0]; geometric mean (0.5 * 0.01 * 1)^(1/3) = 0.005^(1/3)
    assert dataset_score([0.5, 0.002, 1.0]) == pytest.approx(0.005 ** (1 / 3))
    assert dataset_score([0.0, 0.0]) == pytest.approx(0.01)
    assert dataset_score([0.25, 1.0], floor=0.5) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(ValueError, match="values"):
        dataset_score([])
    with pytest.raises(ValueError, match="floor"):
        dataset_score([0.5], floor=0.0)


def _scores(kfr: float, shr: float, ukss: float) -> KfsScores:
    return KfsScores(kfr=kfr, shr=shr, bsr=0.5, bds=1.0, ukss=ukss, n_tp=1, hits_per_scene=(1,))


def test_aggregate_follows_eval_py() -> None:
    out = aggregate([_scores(0.2, 1.0, 0.64), _scores(0.8, 0.5, 0.25)])
    # KFR and SHR: arithmetic means (a geometric mean would give 0.4 for KFR).
    assert out["kfr"] == pytest.approx(0.5)
    assert out["shr"] == pytest.approx(0.75)
    # UKSS: geometric mean sqrt(0.64 * 0.25) = 0.4 (arithmetic would be 0.445).
    assert out["ukss"] == pytest.approx(0.4)
    assert out["bsr"] == pytest.approx(0.5)
    assert out["bds"] == pytest.approx(1.0)
    # The clip is on each question's UKSS: a question with KFR 0 pulls the geometric mean to sqrt(0.01 * 1).
    zero = score_selection([100.0], [scene((0, 1))])
    perfect = score_selection([0.5], [scene((0, 1))])
    assert aggregate([zero, perfect])["ukss"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="scores"):
        aggregate([])


def test_oracle_hits_every_scene_in_its_length_share() -> None:
    from tessera.keyframes.kfs_metrics import oracle_timestamps

    scenes = [Scene(((10.0, 30.0),)), Scene(((100.0, 103.0),)), Scene(((500.0, 560.0), (600.0, 610.0)))]
    picked = oracle_timestamps(scenes, 32, 1.0, 3600.0)
    assert len(picked) == 32 and picked == sorted(set(picked))
    assert all(float(t).is_integer() for t in picked)  # on the 1 fps grid
    scores = score_selection(picked, scenes)
    assert scores.kfr == 1.0 and scores.bsr == 1.0 and scores.ukss > 0.99
    assert scores.hits_per_scene[1] >= 1  # the short scene is not starved


def test_oracle_with_fewer_frames_than_asked_takes_them_all() -> None:
    from tessera.keyframes.kfs_metrics import oracle_timestamps

    scenes = [Scene(((5.0, 7.0),))]
    assert oracle_timestamps(scenes, 32, 1.0, 60.0) == [5.0, 6.0, 7.0]
    assert oracle_timestamps([Scene(((70.0, 80.0),))], 4, 1.0, 60.0) == []  # scene past the end
    with pytest.raises(ValueError):
        oracle_timestamps(scenes, 0, 1.0, 60.0)
