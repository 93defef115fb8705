"""Server-side pulling of a room's camera/microphone stream with PyAV: a file (optionally looped) or RTSP.

A thread demuxes and decodes, samples video on the room's frame-rate grid (JPEG-encoded), turns audio into 16 kHz
mono PCM16, paces both to real time from the stream's own timestamps, and hands each item to the event loop, waiting
for it to be taken (so a slow pipeline slows the reader instead of piling frames in memory).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from tessera.monitoring.vision import encode_jpeg
from tessera.runtime.audio import MODEL_RATE

OnFrame = Callable[[int, bytes], Coroutine[Any, Any, None]]
OnAudio = Callable[[int, bytes], Coroutine[Any, Any, None]]  # (start ms, PCM16 mono at 16 kHz)


@dataclass
class FeedProgress:
    frames: int = 0
    audio_ms: int = 0
    error: str = ""
    finished: bool = False


def _open(source: str) -> Any:
    options = {"rtsp_transport": "tcp", "stimeout": "5000000"} if source.startswith(("rtsp://", "rtsps://")) else {}
    return av.open(source, mode="r", options=options, timeout=10.0)


def pull(
    source: str,
    fps: float,
    loop_file: bool,
    on_frame: OnFrame,
    on_audio: OnAudio,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    progress: FeedProgress,
    max_side: int = 640,
) -> None:
    """The reader thread's body; returns at the end of the source (unless looping), on ``stop`` or on error."""
    offset_ms = 0.0  # stream time of the current pass's start (a looped file continues its clock)
    began = time.monotonic()
    try:
        while not stop.is_set():
            pass_end = _one_pass(source, fps, on_frame, on_audio, loop, stop, progress, began, offset_ms, max_side)
            if not loop_file or stop.is_set() or pass_end <= 0:
                break
            offset_ms += pass_end
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        progress.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        progress.finished = True


def _one_pass(
    source: str,
    fps: float,
    on_frame: OnFrame,
    on_audio: OnAudio,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    progress: FeedProgress,
    began: float,
    offset_ms: float,
    max_side: int,
) -> float:
    step_ms = 1000.0 / fps
    next_frame_ms = 0.0
    last_ms = 0.0
    with _open(source) as container:
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        if not container.streams.video and not container.streams.audio:
            raise ValueError("no audio or video stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=MODEL_RATE)
        audio_clock: float | None = None
        for frame in container.decode(*streams):
            if stop.is_set():
                break
            if frame.pts is None or frame.time_base is None:
                continue
            t_ms = float(frame.pts * frame.time_base) * 1000.0
            last_ms = max(last_ms, t_ms)
            delay = began + (offset_ms + t_ms) / 1000.0 - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            if isinstance(frame, av.VideoFrame):
                if t_ms + 0.5 < next_frame_ms:
                    continue
                while next_frame_ms <= t_ms + 0.5:
                    next_frame_ms += step_ms
                width, height = frame.width, frame.height
                scale = min(1.0, max_side / max(width, height))
                rgb = np.asarray(
                    frame.to_ndarray(format="rgb24", width=round(width * scale), height=round(height * scale)),
                    dtype=np.uint8,
                )
                asyncio.run_coroutine_threadsafe(on_frame(round(offset_ms + t_ms), encode_jpeg(rgb)), loop).result()
                progress.frames += 1
            else:
                if audio_clock is None:
                    audio_clock = t_ms
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1).astype("<i2")
                    start = round(offset_ms + audio_clock)
                    audio_clock += len(pcm) * 1000.0 / MODEL_RATE
                    asyncio.run_coroutine_threadsafe(on_audio(start, pcm.tobytes()), loop).result()
                    progress.audio_ms += int(len(pcm) * 1000 / MODEL_RATE)
        return last_ms + step_ms
