"""The Ingest stream's own rules, without NATS or Triton: silence ends it and frees the room, a bad frame does not.

The gateway's ``LiveIngest`` runs with a bus that records what it publishes and a room table that knows every room;
tests/e2e/test_monitoring_ingest.py checks the same over gRPC against the real stack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import cv2
import numpy as np
import pytest

from tessera.common.v1 import common_pb2
from tessera.monitoring.ingest_api import (
    FRAME_ENVELOPE_BYTES,
    INGEST_FIRST_MESSAGE_TIMEOUT,
    INGEST_IDLE,
    MAX_LISTED_REJECTIONS,
    LiveIngest,
)
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.runtime.config import ConfigError, ServerSettings
from tessera.runtime.errors import DeadlineExceeded, FailedPrecondition


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, subject: str, data: bytes, msg_id: str | None = None) -> None:
        self.published.append(subject)


class AnyRoom:
    async def get(self, room_id: str, field: str = "room_id") -> pb.Room:
        return pb.Room(room_id=room_id)


def _live(**own: Any) -> LiveIngest:
    settings = MonitoringSettings(ingest_idle_timeout_s=0.3, ingest_first_message_timeout_s=0.3, **own)
    return LiveIngest(settings, ServerSettings(), RecordingBus(), AnyRoom())  # type: ignore[arg-type]


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    return bytes(cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes())


def _frame(data: bytes, timestamp_ms: int, room_id: str = "") -> pb.IngestRequest:
    image = common_pb2.Image(data=data, encoding=common_pb2.IMAGE_ENCODING_JPEG, timestamp_ms=timestamp_ms)
    return pb.IngestRequest(room_id=room_id, data=pb.SensorData(frame=image))


async def _stream(*items: pb.IngestRequest | float) -> AsyncIterator[pb.IngestRequest]:
    """The requests in order; a float is a pause of that many seconds."""
    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


async def test_a_quiet_stream_is_ended_and_frees_its_room() -> None:
    live = _live()
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded) as ended:
        await live.ingest(_stream(_frame(_jpeg(), 0, "hall"), 30.0))
    assert 0.3 <= time.monotonic() - began < 2.0
    assert ended.value.reason == INGEST_IDLE and "'hall'" in ended.value.message
    assert live.live["hall"].session is None  # the slot is free: a new stream (or a feed) is accepted at once
    reply = await live.ingest(_stream(_frame(_jpeg(), 100, "hall"), 0.1, _frame(_jpeg(), 200)))
    assert reply.frames_accepted == 2
    assert live.live["hall"].stats.frames_accepted == 3  # the first stream's frame is not lost


async def test_a_stream_without_its_first_message_is_ended() -> None:
    live = _live()
    with pytest.raises(DeadlineExceeded) as ended:
        await live.ingest(_stream(30.0))
    assert ended.value.reason == INGEST_FIRST_MESSAGE_TIMEOUT and not live.live


async def test_pauses_shorter_than_the_idle_timeout_keep_the_stream() -> None:
    live = _live()
    reply = await live.ingest(_stream(0.2, _frame(_jpeg(), 0, "den"), 0.2, _frame(_jpeg(), 1), 0.2, _frame(_jpeg(), 2)))
    assert reply.frames_accepted == 3


async def test_a_live_stream_holds_its_room_until_it_ends() -> None:
    live = _live()
    first = asyncio.ensure_future(live.ingest(_stream(_frame(_jpeg(), 0, "attic"), 0.2, _frame(_jpeg(), 1))))
    await asyncio.sleep(0.1)
    with pytest.raises(FailedPrecondition):
        await live.ingest(_stream(_frame(_jpeg(), 0, "attic")))
    assert (await first).frames_accepted == 2


async def test_bad_frames_are_refused_one_by_one_and_the_stream_goes_on() -> None:
    live = _live(max_frame_bytes=50_000)
    huge = bytearray(_jpeg(16, 16))
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5 : sof + 9] = (12000).to_bytes(2, "big") * 2
    raw = pb.IngestRequest(
        data=pb.SensorData(frame=common_pb2.Image(data=b"\0" * 10, encoding=common_pb2.IMAGE_ENCODING_RAW_RGB8))
    )
    reply = await live.ingest(
        _stream(
            _frame(_jpeg(), 0, "lab"),
            _frame(b"", 100),
            _frame(b"GIF89a", 200),
            _frame(_jpeg(), -5),
            _frame(bytes(huge), 400),
            _frame(b"\xff\xd8\xff" + b"\0" * 60_000, 500),
            raw,
            _frame(_jpeg(), 700),
        )
    )
    assert reply.frames_accepted == 2 and reply.frames_rejected == 6
    got = [(r.message_index, r.timestamp_ms, r.field, r.reason) for r in reply.rejected_frames]
    assert got == [
        (1, 100, "data.frame.data", pb.FRAME_REJECTION_REASON_INVALID),
        (2, 200, "data.frame.data", pb.FRAME_REJECTION_REASON_INVALID),
        (3, -5, "data.frame.timestamp_ms", pb.FRAME_REJECTION_REASON_INVALID),
        (4, 400, "data.frame.data", pb.FRAME_REJECTION_REASON_TOO_MANY_PIXELS),
        (5, 500, "data.frame.data", pb.FRAME_REJECTION_REASON_TOO_LARGE),
        (6, 0, "data.frame.width_px", pb.FRAME_REJECTION_REASON_INVALID),
    ]
    assert "12000x12000" in reply.rejected_frames[3].description
    assert all(0 < len(r.description) <= 200 for r in reply.rejected_frames)
    assert live.live["lab"].stats.frames_rejected == 6


async def test_the_rejection_list_is_bounded_and_the_count_is_not() -> None:
    live = _live()
    reply = await live.ingest(_stream(_frame(_jpeg(), 0, "loft"), *(_frame(b"x", t) for t in range(1, 41))))
    assert reply.frames_accepted == 1 and reply.frames_rejected == 40
    assert [r.message_index for r in reply.rejected_frames] == list(range(1, MAX_LISTED_REJECTIONS + 1))


def test_the_frame_limit_must_stay_under_the_grpc_message_limit() -> None:
    transport = ServerSettings().max_receive_message_bytes
    _live(max_frame_bytes=transport - FRAME_ENVELOPE_BYTES)
    with pytest.raises(ConfigError, match="TESSERA_MONITORING_MAX_FRAME_BYTES"):
        _live(max_frame_bytes=transport)
