"""The scorers' per-frame feature cache: query-independent vectors keyed by the frame's content digest.

Both Triton scoring models keep one (detections, class presences): a second query on the same video finds every
frame's features here and only re-weights them. Least-recently-used entries go first once ``entries`` is reached.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

Features = TypeVar("Features")


class FeatureCache(Generic[Features]):
    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[bytes, Features] = OrderedDict()

    @staticmethod
    def keys(frames: Sequence[NDArray[np.uint8]]) -> list[bytes]:
        return [hashlib.blake2b(frame.tobytes(), digest_size=16).digest() for frame in frames]

    def lookup(self, keys: Sequence[bytes], use_cache: bool) -> tuple[dict[int, Features], list[int]]:
        """(row -> cached features, rows to compute); with ``use_cache`` false everything is computed."""
        hits: dict[int, Features] = {}
        todo: list[int] = []
        for i, key in enumerate(keys):
            hit = self._items.get(key) if use_cache else None
            if hit is None:
                todo.append(i)
            else:
                self._items.move_to_end(key)
                hits[i] = hit
        return hits, todo

    def put(self, key: bytes, features: Features) -> None:
        self._items[key] = features
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
