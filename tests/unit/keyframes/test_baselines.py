from __future__ import annotations

from collections.abc import Callable

import pytest

from tessera.keyframes.baselines import safe_gap, top_k_indices, uniform_indices


def test_uniform_bin_centres() -> None:
    # 10 candidates, 4 bins of width 2.5: centres 1.25, 3.75, 6.25, 8.75 -> floor -> 1, 3, 6, 8
    assert uniform_indices(10, 4) == [1, 3, 6, 8]
    assert uniform_indices(7, 1) == [3]  # centre of [0, 7) is 3.5 -> 3
    assert uniform_indices(5, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n", [1, 2, 7, 64, 99, 1000, 3601])
def test_uniform_is_unique_sorted_and_in_range(n: int) -> None:
    for k in {min(2, n), max(1, n // 3), max(1, n // 2), max(1, n - 1), n}:
        out = uniform_indices(n, k)
        assert len(out) == k
        assert out == sorted(set(out))
        assert out[0] >= 0 and out[-1] < n


def test_top_k_sorted_by_index_with_stable_ties() -> None:
    assert top_k_indices([0.1, 0.9, 0.5, 0.9, 0.2], 2) == [1, 3]
    assert top_k_indices([0.5, 0.5, 0.5], 2) == [0, 1]  # ties go to the lower index
    assert top_k_indices([3.0, 1.0, 2.0], 3) == [0, 1, 2]


def test_top_k_min_gap() -> None:
    scores = [0.0, 1.0, 0.95, 0.9, 0.0, 0.8]
    # by score: 1, 2 (too close to 1), 3 (|3 - 1| = 2 ok), 5 (|5 - 3| = 2 ok)
    assert top_k_indices(scores, 2, min_gap=2) == [1, 3]
    assert top_k_indices(scores, 3, min_gap=2) == [1, 3, 5]
    assert top_k_indices(scores, 3, min_gap=0) == [1, 2, 3]


def test_top_k_relaxes_an_infeasible_gap() -> None:
    # 3 frames 3 apart need 7 candidates; with 5 the gap drops to safe_gap(5, 3, 3) = 1 (plain top-k).
    assert safe_gap(5, 3, 3) == 1
    assert top_k_indices([0.1, 0.2, 0.9, 0.8, 0.7], 3, min_gap=3) == [2, 3, 4]


def test_safe_gap_bound() -> None:
    # (k - 1) * (2g - 1) < n: n = 100, k = 11 -> 2g - 1 <= 99 // 10 = 9 -> g <= 5
    assert safe_gap(100, 11, 50) == 5
    assert safe_gap(100, 11, 3) == 3
    assert safe_gap(100, 1, 50) == 50


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: uniform_indices(0, 1), "num_candidates"),
        (lambda: uniform_indices(5, 0), "k"),
        (lambda: uniform_indices(5, 6), "k"),
        (lambda: top_k_indices([0.1, 0.2], 3), "k"),
        (lambda: top_k_indices([0.1, float("nan")], 1), "scores"),
        (lambda: top_k_indices([0.1, 0.2], 1, min_gap=-1), "min_gap"),
    ],
)
def test_invalid_arguments(call: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
