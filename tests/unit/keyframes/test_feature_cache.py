"""The scorers' per-frame feature cache: digest keys, opt-out, least-recently-used eviction."""

from __future__ import annotations

import numpy as np

from tessera.keyframes.feature_cache import FeatureCache


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), i, np.uint8) for i in range(n)]


def test_hits_misses_and_opt_out() -> None:
    cache: FeatureCache[int] = FeatureCache(entries=10)
    keys = cache.keys(_frames(3))
    assert len(set(keys)) == 3 and keys == cache.keys(_frames(3))  # content decides the key
    assert cache.lookup(keys, use_cache=True) == ({}, [0, 1, 2])
    cache.put(keys[1], 41)
    assert cache.lookup(keys, use_cache=True) == ({1: 41}, [0, 2])
    assert cache.lookup(keys, use_cache=False) == ({}, [0, 1, 2])  # a caller that opted out computes everything


def test_least_recently_used_goes_first() -> None:
    cache: FeatureCache[int] = FeatureCache(entries=2)
    a, b, c = cache.keys(_frames(3))
    cache.put(a, 1)
    cache.put(b, 2)
    cache.lookup([a], use_cache=True)  # a is now the most recent
    cache.put(c, 3)
    assert len(cache) == 2
    assert cache.lookup([a, b, c], use_cache=True) == ({0: 1, 2: 3}, [1])
