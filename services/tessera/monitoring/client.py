"""A client-side camera: a clip turned into the SensorData stream a room's capture would send, paced in real time.

Used by the demo, the tests and the benchmark. A frame is sent at its timestamp; an audio chunk when it has been
captured (at its end), so pacing reproduces the timing a live camera and microphone would have.

``ingest`` carries on through a gateway's drain or loss. When Ingest ends with UNAVAILABLE (ErrorInfo ``DRAINING``:
the gateway is shutting down, reconnect at once; ``NOT_READY`` / ``NOT_SERVING``: a gateway still loading, or
one draining that takes no new streams, read nothing;
no reason: the connection was lost, retry shortly), the rest of the clip goes on a new Ingest with the same
``stream_start_unix_ms``, so the fusion worker sees one stream. Give the channel
``runtime.rpc_client.RECONNECT_OPTIONS``. What the server held when the stream ended may be lost (at most the
messages in flight); the counts returned are those of the Ingest calls that completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tessera.common.v1 import common_pb2
from tessera.monitoring import analysis
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.monitoring.vision import encode_jpeg
from tessera.runtime.audio import MODEL_RATE, to_pcm16
from tessera.runtime.rpc_client import draining_or_lost, reason_of

log = logging.getLogger("tessera.monitoring.client")


@dataclass(frozen=True)
class Item:
    send_at_ms: int  # stream time at which a live capture would have it
    data: pb.SensorData


def clip_items(path: Path, fps: float = 5.0, chunk_ms: int = 100, quality: int = 85) -> list[Item]:
    """Frames (JPEG) and PCM16 16 kHz audio chunks of a clip, in the order a live capture would send them."""
    frames, audio, _ = analysis.decode_video(path, fps, max_duration_s=3600)
    items = [
        Item(
            t,
            pb.SensorData(
                frame=common_pb2.Image(
                    data=encode_jpeg(rgb, quality),
                    encoding=common_pb2.IMAGE_ENCODING_JPEG,
                    width_px=rgb.shape[1],
                    height_px=rgb.shape[0],
                    timestamp_ms=t,
                )
            ),
        )
        for t, rgb in frames
    ]
    if audio is not None:
        step = MODEL_RATE * chunk_ms // 1000
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            start_ms = start * 1000 // MODEL_RATE
            chunk = common_pb2.AudioChunk(
                data=to_pcm16(piece.astype(np.float32)),
                encoding=common_pb2.AUDIO_ENCODING_PCM16,
                sample_rate_hz=MODEL_RATE,
                channels=1,
                start_ms=start_ms,
            )
            items.append(Item(start_ms + len(piece) * 1000 // MODEL_RATE, pb.SensorData(audio=chunk)))
    items.sort(key=lambda item: item.send_at_ms)
    return items


async def paced(
    room_id: str,
    items: list[Item],
    *,
    speed: float = 1.0,
    stream_start_unix_ms: int | None = None,
    on_sent: Callable[[Item, float], None] | None = None,
    began: float | None = None,
    until: Callable[[], bool] | None = None,
) -> AsyncIterator[pb.IngestRequest]:
    """IngestRequests at the pace of a live capture (``speed`` > 1 plays faster; 0 sends everything at once),
    timed from ``began`` (``time.monotonic()``; now when unset), stopping early once ``until()`` is true."""
    began = time.monotonic() if began is None else began
    start_ms = stream_start_unix_ms if stream_start_unix_ms is not None else int(time.time() * 1000)
    for i, item in enumerate(items):
        if until is not None and until():
            return
        if speed > 0:
            delay = began + item.send_at_ms / 1000.0 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        request = pb.IngestRequest(data=item.data)
        if i == 0:
            request.room_id = room_id
            request.stream_start_unix_ms = start_ms
        yield request
        if on_sent is not None:
            on_sent(item, time.time())


async def ingest(
    stub: pb_grpc.MonitoringServiceAsyncStub,
    room_id: str,
    items: list[Item],
    *,
    speed: float = 1.0,
    stream_start_unix_ms: int | None = None,
    timeout_s: float | None = None,
    reconnect_timeout_s: float = 60.0,
) -> pb.IngestResponse:
    """Sends ``items`` as the room's live stream; on UNAVAILABLE, goes on with the unsent rest on a new Ingest for up
    to ``reconnect_timeout_s`` (0: never). Returns the counts summed over the Ingest calls that completed."""
    start_ms = stream_start_unix_ms if stream_start_unix_ms is not None else int(time.time() * 1000)
    began = time.monotonic()
    total = pb.IngestResponse()
    sent = 0
    give_up_at: float | None = None
    while True:
        done = [sent]
        calls: list[Any] = []

        def ended(calls: list[Any] = calls) -> bool:
            return bool(calls) and bool(calls[0].done())

        def count(_item: Item, _at: float, done: list[int] = done) -> None:
            if not ended():  # an item handed over after the call ended was not delivered
                done[0] += 1

        stream = paced(
            room_id, items[sent:], speed=speed, stream_start_unix_ms=start_ms, on_sent=count, began=began, until=ended
        )
        try:
            call = stub.Ingest(stream, timeout=timeout_s)
            calls.append(call)
            response: pb.IngestResponse = await call
        except grpc.aio.AioRpcError as failure:
            now = time.monotonic()
            give_up_at = give_up_at if give_up_at is not None else now + reconnect_timeout_s
            if not draining_or_lost(failure) or now >= give_up_at or done[0] >= len(items):
                raise
            reason = reason_of(failure)
            log.info("Ingest of %s ended (%s) after %d of %d items; going on", room_id, reason, done[0], len(items))
            if reason not in ("NOT_READY", "NOT_SERVING"):  # refused before anything was read: all sent again
                sent = done[0]
            if reason != "DRAINING":
                await asyncio.sleep(0.2)  # lost or still loading, not moved: give it a moment
            continue
        total.frames_accepted += response.frames_accepted
        total.frames_shed += response.frames_shed
        total.audio_ms_accepted += response.audio_ms_accepted
        total.frames_rejected += response.frames_rejected
        total.rejected_frames.extend(response.rejected_frames[: 16 - len(total.rejected_frames)])
        return total


class AlertWatcher:
    """Collects a room's alerts from a Watch stream in the background."""

    def __init__(self, stub: pb_grpc.MonitoringServiceAsyncStub, request: pb.WatchRequest) -> None:
        self.alerts: list[tuple[pb.Alert, float]] = []  # (alert, local receipt time, s since the epoch)
        self._call = stub.Watch(request)
        self._arrived = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for response in self._call:
            self.alerts.append((response.alert, time.time()))
            self._arrived.set()

    async def wait_for(self, predicate: Callable[[pb.Alert], bool], timeout_s: float) -> pb.Alert:
        deadline = time.monotonic() + timeout_s
        while True:
            for alert, _ in self.alerts:
                if predicate(alert):
                    return alert
            left = deadline - time.monotonic()
            if left <= 0 or self._task.done():
                raise TimeoutError(
                    f"no matching alert within {timeout_s:g} s; got {[a.rule_id for a, _ in self.alerts]}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def latest(self) -> list[pb.Alert]:
        """One entry per alert id, its highest revision (rules merged later), in the order alerts were first seen."""
        found: dict[str, pb.Alert] = {}
        for alert, _ in self.alerts:
            if alert.alert_id not in found or alert.revision > found[alert.alert_id].revision:
                found[alert.alert_id] = alert
        return list(found.values())

    def cancel(self) -> None:
        self._call.cancel()
        self._task.cancel()
