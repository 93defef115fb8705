"""The PyAV frame source for the pipeline, with a per-video thumbnail cache shared across requests.

Thumbnails do not depend on the query, so a second query on the same video reads them from memory instead of
decoding again. The cache keeps them as YUV 4:2:0 planes (1.5 bytes a pixel, half of RGB; the video's own chroma
subsampling, and the RGB they give back is exactly what the first query scored), is bounded in those bytes and
evicts least-recently-used thumbnails: the default 512 MiB holds an hour at 1 fps of 320x240 thumbnails
(3600 x 115 KB = 415 MB), where RGB would hold 39 minutes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tessera.keyframes.video import decode_at, yuv_to_rgb


class ThumbnailCache:
    """LRU of YUV 4:2:0 thumbnails keyed by (video key, timestamp ms, max side), bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], NDArray[np.uint8]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> NDArray[np.uint8] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, int, int], frame: NDArray[np.uint8]) -> None:
        if frame.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = frame
            self._bytes += frame.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    @property
    def size_bytes(self) -> int:
        return self._bytes


@dataclass
class VideoFrameSource:
    """Candidate index i of the grid is the frame at i / fps seconds."""

    video: Path | bytes
    video_key: str  # identifies the content: path + size + mtime, or a digest of inline bytes
    fps: float
    max_side: int
    cache: ThumbnailCache | None
    decoded: int = 0
    cache_hits: int = 0

    def timestamp_ms(self, index: int) -> int:
        return round(index * 1000.0 / self.fps)

    async def frames(self, indices: Sequence[int]) -> NDArray[np.uint8]:
        keys = [(self.video_key, self.timestamp_ms(i), self.max_side) for i in indices]
        found: dict[int, NDArray[np.uint8]] = {}
        missing: list[int] = []
        for pos, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is None:
                missing.append(pos)
            else:
                found[pos] = yuv_to_rgb(hit)
        self.cache_hits += len(found)
        if missing:
            times = [keys[pos][1] / 1000.0 for pos in missing]
            result = await asyncio.to_thread(decode_at, self.video, times, max_side=self.max_side)
            self.decoded += result.decoded
            for slot, pos in enumerate(missing):
                found[pos] = result.frames[slot]
                if self.cache is not None:
                    self.cache.put(keys[pos], result.planes[slot])
        return np.stack([found[pos] for pos in range(len(keys))])
