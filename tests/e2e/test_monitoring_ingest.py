"""The monitoring gateway's live Ingest stream against real JetStream and Triton: silence ends a stream and frees its
room, a bad frame is refused on its own while the stream goes on, an image too large to decode is refused by its
header.

The gateway runs in this process with short Ingest timeouts (1 s) and a small frame limit; no stage workers are
needed: what the gateway accepted is read back from the cascade's JetStream stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.common.v1 import common_pb2
from tessera.monitoring import cascade
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.runtime import service
from tessera.runtime.bus import Bus, Received
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer, TritonServer

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1.0
MAX_FRAME_BYTES = 300_000


@pytest.fixture(scope="module")
async def gateway(nats_server: NatsServer, triton_server: TritonServer) -> AsyncIterator[str]:
    settings = ServerSettings(
        port=0, nats_url=nats_server.url, triton_url=triton_server.grpc_url, media_roots=[ROOT / "build"]
    )
    with pytest.MonkeyPatch.context() as env:  # read once, when the gateway is built
        env.setenv("TESSERA_MONITORING_INGEST_IDLE_TIMEOUT_S", str(TIMEOUT_S))
        env.setenv("TESSERA_MONITORING_INGEST_FIRST_MESSAGE_TIMEOUT_S", str(TIMEOUT_S))
        env.setenv("TESSERA_MONITORING_MAX_FRAME_BYTES", str(MAX_FRAME_BYTES))
        capability, server = await service.start("monitoring", settings)
    yield f"127.0.0.1:{server.port}"
    await server.server.stop(0)
    await capability.close()


@pytest.fixture(scope="module")
async def stub(gateway: str) -> AsyncIterator[pb_grpc.MonitoringServiceStub]:
    async with grpc.aio.insecure_channel(gateway) as channel:
        monitoring = pb_grpc.MonitoringServiceStub(channel)
        for _ in range(600):  # the gateway reports SERVING once Triton has the models
            try:
                await monitoring.CreateRoom(pb.CreateRoomRequest(room_id="ingest-warmup"))
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        yield monitoring


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    rgb = np.random.default_rng(width).integers(0, 255, (height, width, 3)).astype(np.uint8)
    return bytes(cv2.imencode(".jpg", rgb)[1].tobytes())


def _with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0, as OpenCV writes it) declares ``width`` x ``height``."""
    out = bytearray(jpeg)
    sof = out.index(b"\xff\xc0")
    out[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


def _frame(data: bytes, timestamp_ms: int, room_id: str = "") -> pb.IngestRequest:
    image = common_pb2.Image(data=data, encoding=common_pb2.IMAGE_ENCODING_JPEG, timestamp_ms=timestamp_ms)
    return pb.IngestRequest(room_id=room_id, data=pb.SensorData(frame=image))


async def _then_quiet(*requests: pb.IngestRequest) -> AsyncIterator[pb.IngestRequest]:
    """The requests, then nothing until the call is over (a camera that hung without closing its stream)."""
    for request in requests:
        yield request
    await asyncio.sleep(3600)


async def _error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


def _reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason a failed call carries."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


async def _published_frames(nats_url: str, room_id: str) -> list[int]:
    """Timestamps of the frames of ``room_id`` on the cascade's stream (what the gateway accepted)."""
    bus = await Bus.connect(nats_url, "test-monitoring-ingest")
    seen: list[int] = []

    async def on_frame(message: Received) -> None:
        seen.append(msg.FrameMessage.FromString(message.data).timestamp_ms)

    sub = await bus.watch(cascade.subject(room_id, "frames"), on_frame, replay_all=True)
    try:
        await asyncio.sleep(1.0)
    finally:
        await sub.unsubscribe()
        await bus.close()
    return sorted(seen)


async def test_a_quiet_ingest_is_ended_and_its_room_is_free_at_once(
    stub: pb_grpc.MonitoringServiceStub, nats_server: NatsServer
) -> None:
    await stub.CreateRoom(pb.CreateRoomRequest(room_id="ingest-porch"))
    began = time.monotonic()
    hung = asyncio.ensure_future(_error(stub.Ingest(_then_quiet(_frame(_jpeg(), 0, "ingest-porch")))))
    await asyncio.sleep(0.3)
    # While it lives, the stream holds the room's one live slot.
    busy = await _error(stub.Ingest(_then_quiet(_frame(_jpeg(), 0, "ingest-porch"))))
    assert busy.code() == grpc.StatusCode.FAILED_PRECONDITION
    ended = await hung
    assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED and _reason(ended) == "INGEST_IDLE"
    assert TIMEOUT_S <= time.monotonic() - began < TIMEOUT_S + 3, "ended by the idle timeout, not by a deadline"
    assert "ingest-porch" in (ended.details() or "")

    async def two_frames() -> AsyncIterator[pb.IngestRequest]:
        yield _frame(_jpeg(), 5000, "ingest-porch")
        await asyncio.sleep(0.5)  # a pause shorter than the idle timeout keeps the stream
        yield _frame(_jpeg(), 5500)

    reply = await stub.Ingest(two_frames(), timeout=30)  # accepted right away: the slot was freed
    assert reply.frames_accepted == 2 and reply.frames_rejected == 0
    room = (await stub.GetRoom(pb.GetRoomRequest(room_id="ingest-porch"))).room
    assert room.stats.frames_accepted == 3
    assert await _published_frames(nats_server.url, "ingest-porch") == [0, 5000, 5500]  # nothing accepted was lost


async def test_an_ingest_that_never_names_its_room_is_ended(stub: pb_grpc.MonitoringServiceStub) -> None:
    began = time.monotonic()
    ended = await _error(stub.Ingest(_then_quiet()))
    assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED and _reason(ended) == "INGEST_FIRST_MESSAGE_TIMEOUT"
    assert time.monotonic() - began < TIMEOUT_S + 3


async def test_bad_frames_mid_stream_are_reported_and_later_frames_accepted(
    stub: pb_grpc.MonitoringServiceStub, nats_server: NatsServer
) -> None:
    await stub.CreateRoom(pb.CreateRoomRequest(room_id="ingest-yard"))
    huge = _with_jpeg_size(_jpeg(16, 16), 12000, 12000)  # a few hundred bytes declaring 144 Mpixels
    pcm16 = common_pb2.AUDIO_ENCODING_PCM16
    audio = common_pb2.AudioChunk(data=b"\0\0" * 1600, encoding=pcm16, sample_rate_hz=16000, channels=1)
    requests = [
        _frame(_jpeg(), 0, "ingest-yard"),
        _frame(b"", 100),  # empty
        _frame(b"GIF89a\x01\x00\x01\x00", 200),  # no JPEG SOI marker
        _frame(huge, 300),
        _frame(b"\xff\xd8\xff" + bytes(MAX_FRAME_BYTES), 400),  # over TESSERA_MONITORING_MAX_FRAME_BYTES
        _frame(_jpeg(), 500),
        pb.IngestRequest(data=pb.SensorData(audio=audio)),  # 100 ms of silence between the frames
        _frame(_jpeg(), 600),
    ]

    async def stream() -> AsyncIterator[pb.IngestRequest]:
        for request in requests:
            yield request

    reply = await stub.Ingest(stream(), timeout=30)
    assert reply.frames_accepted == 3 and reply.frames_rejected == 4 and reply.audio_ms_accepted == 100
    got = [(r.message_index, r.timestamp_ms, r.field, r.reason) for r in reply.rejected_frames]
    assert got == [
        (1, 100, "data.frame.data", pb.FRAME_REJECTION_REASON_INVALID),
        (2, 200, "data.frame.data", pb.FRAME_REJECTION_REASON_INVALID),
        (3, 300, "data.frame.data", pb.FRAME_REJECTION_REASON_TOO_MANY_PIXELS),
        (4, 400, "data.frame.data", pb.FRAME_REJECTION_REASON_TOO_LARGE),
    ]
    assert "empty" in reply.rejected_frames[0].description
    assert "SOI" in reply.rejected_frames[1].description
    assert "12000x12000" in reply.rejected_frames[2].description
    assert str(MAX_FRAME_BYTES) in reply.rejected_frames[3].description
    room = (await stub.GetRoom(pb.GetRoomRequest(room_id="ingest-yard"))).room
    assert room.stats.frames_rejected == 4 and room.stats.frames_accepted == 3
    assert await _published_frames(nats_server.url, "ingest-yard") == [0, 500, 600]


async def test_a_frame_naming_the_wrong_room_still_ends_the_stream(stub: pb_grpc.MonitoringServiceStub) -> None:
    """Only frames are refused on their own: a message that breaks the stream's contract ends it, naming the field."""
    await stub.CreateRoom(pb.CreateRoomRequest(room_id="ingest-shed"))

    async def stream() -> AsyncIterator[pb.IngestRequest]:
        yield _frame(_jpeg(), 0, "ingest-shed")
        yield _frame(_jpeg(), 100, "ingest-porch")

    error = await _error(stub.Ingest(stream(), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
