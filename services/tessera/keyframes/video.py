"""Decode just the frames a selection needs, with PyAV, as small RGB thumbnails.

Seeks are sorted and the decoder only moves forward: a target close ahead of the current position is reached by
decoding on, a far one by seeking to the keyframe before it. Every decoded frame is counted, including those decoded
only to reach a target, because that - not the number of frames scored - is what long-GOP video costs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray


class VideoError(Exception):
    """The input is not a decodable video (corrupt, no video stream, zero length)."""


class TruncatedVideo(VideoError):
    """The header promises frames the data does not hold (an interrupted upload or copy): decoding ends early."""


def readable_slack_s(fps: float) -> float:
    """How far before a target the stream may end and still be whole: the last frame of a complete video sits
    within a frame of its duration, so anything more than a second (or four frames) short is missing data."""
    return max(1.0, 4.0 / fps) if fps > 0 else 1.0


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    keyframe_interval_s: float | None  # from the first keyframes seen, None when unknown


def _open(source: Path | bytes) -> Any:
    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"not a readable video ({type(exc).__name__})") from None


def probe(source: Path | bytes) -> VideoInfo:
    with _open(source) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if not duration or duration <= 0 or not math.isfinite(duration) or fps <= 0:
            raise VideoError("video has no duration or frame rate")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoError("video has no frame size")
        keyframes: list[float] = []
        try:
            for packet in container.demux(stream):
                if packet.is_keyframe and packet.pts is not None:
                    keyframes.append(float(packet.pts * stream.time_base))
                if len(keyframes) >= 3 or (packet.pts is not None and packet.pts * stream.time_base > 30):
                    break
        except av.error.FFmpegError:
            raise VideoError("corrupt video stream") from None
        interval = (keyframes[-1] - keyframes[0]) / (len(keyframes) - 1) if len(keyframes) >= 2 else None
        return VideoInfo(duration, fps, width, height, interval)


def thumbnail_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


@dataclass
class DecodeResult:
    frames: dict[int, NDArray[np.uint8]]  # target position -> RGB thumbnail, made from planes[position]
    planes: dict[int, NDArray[np.uint8]]  # target position -> the thumbnail as YUV 4:2:0 planes [H * 3 / 2, W]
    decoded: int


def yuv_to_rgb(planes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A YUV 4:2:0 thumbnail (what caches keep: half the bytes of RGB) as RGB [H, W, 3]."""
    rgb = np.asarray(av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24"), np.uint8)
    return rgb


def decode_at(
    source: Path | bytes,
    timestamps_s: Sequence[float],
    *,
    max_side: int = 320,
    seek_ahead_s: float = 4.0,
) -> DecodeResult:
    """Thumbnails at the given times (nearest frame at or after each time), decoding forward between seeks.

    ``seek_ahead_s``: a target further ahead than this is reached by seeking instead of decoding on.
    """
    order = sorted(range(len(timestamps_s)), key=lambda i: timestamps_s[i])
    out: dict[int, NDArray[np.uint8]] = {}
    planes: dict[int, NDArray[np.uint8]] = {}
    decoded = 0
    with _open(source) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = float(stream.time_base)
        # Times are from the start of the video; MPEG-TS and friends start their timestamps later than zero.
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        size = thumbnail_size(stream.codec_context.width, stream.codec_context.height, max_side)
        frames: Iterator[Any] | None = None
        position = -math.inf  # time of the last decoded frame
        last: Any = None
        half_frame = 0.5 / float(stream.average_rate or 25)
        slack = readable_slack_s(float(stream.average_rate or 25))
        try:
            for i in order:
                target = origin + max(0.0, float(timestamps_s[i]))
                reuse = frames is not None and position - half_frame <= target <= position + seek_ahead_s
                if not reuse or frames is None:
                    frames, position, last = None, -math.inf, None
                ended = False
                # Some demuxers (MPEG-TS) land past the target or on nothing: step the seek back until a frame
                # at or before the target comes out, finally from the very start.
                for back_s in (0.0, 1.0, 4.0, 16.0, 64.0, math.inf):
                    first_after_seek = frames is None
                    if frames is None:
                        seek_to = 0 if back_s == math.inf else int(max(0.0, target - back_s) / time_base)
                        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
                        frames = container.decode(stream)
                    while position < target - half_frame:
                        frame = next(frames, None)
                        if frame is None:
                            ended = True  # end of stream: keep the last frame we have, if it is close enough
                            break
                        decoded += 1
                        last = frame
                        position = float(frame.pts * time_base) if frame.pts is not None else position + 2 * half_frame
                        if first_after_seek and position > target + 2 * half_frame and back_s != math.inf:
                            last = None  # the seek overshot the target: step back further
                            break
                        first_after_seek = False
                    if last is not None:
                        break
                    frames, position = None, -math.inf
                if last is None:
                    raise VideoError(f"no frame decodable at {target - origin:.3f} s")
                if ended and position < target - slack:
                    raise TruncatedVideo(
                        f"data ends at {position - origin:.1f} s but the header promises frames at "
                        f"{target - origin:.1f} s: the file is truncated"
                    )
                # Through 4:2:0 planes (the source's own subsampling): the RGB a cache gives back later is the same.
                # Limited range is what yuv_to_rgb reads, so full-range sources (MJPEG's yuvj) are converted to it.
                thumbnail = last.reformat(width=size[0], height=size[1], format="yuv420p", dst_color_range=1)
                planes[i] = np.asarray(thumbnail.to_ndarray(), np.uint8)
                out[i] = yuv_to_rgb(planes[i])
        except av.error.FFmpegError:
            raise VideoError("corrupt video stream") from None
    return DecodeResult(out, planes, decoded)
