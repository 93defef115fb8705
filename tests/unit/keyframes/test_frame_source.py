"""The thumbnail cache on a real video: YUV 4:2:0 planes (half of RGB), the same pixels on a hit as on the first
decode, bounded in bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tessera.keyframes.frame_source import ThumbnailCache, VideoFrameSource


async def test_a_second_pass_reads_the_same_pixels_from_half_the_bytes(short_video: Path) -> None:
    cache = ThumbnailCache(64 * 1024 * 1024)
    first = VideoFrameSource(short_video, "short", fps=1.0, max_side=320, cache=cache)
    cold = await first.frames([3, 40, 41, 200])
    assert first.decoded > 0 and first.cache_hits == 0
    height, width = cold.shape[1:3]
    assert cache.size_bytes == 4 * height * width * 3 // 2  # YUV 4:2:0: 1.5 bytes a pixel
    second = VideoFrameSource(short_video, "short", fps=1.0, max_side=320, cache=cache)
    warm = await second.frames([200, 3, 40, 41])
    assert second.decoded == 0 and second.cache_hits == 4
    assert np.array_equal(warm, cold[[3, 0, 1, 2]])  # exactly what the first query scored


async def test_the_cache_evicts_the_least_recently_used_to_stay_in_budget(short_video: Path) -> None:
    one = 240 * 320 * 3 // 2
    cache = ThumbnailCache(3 * one)
    source = VideoFrameSource(short_video, "short", fps=1.0, max_side=320, cache=cache)
    await source.frames([1, 2, 3])
    await source.frames([1])  # 1 becomes the most recent
    await source.frames([4])  # evicts 2
    assert cache.size_bytes == 3 * one
    again = VideoFrameSource(short_video, "short", fps=1.0, max_side=320, cache=cache)
    await again.frames([1, 3, 4])
    assert again.cache_hits == 3 and again.decoded == 0
    await again.frames([2])
    assert again.decoded > 0
