"""Monitoring ``Ingest`` at a given frame rate: camera frames of real video into the detector cascade.

Each simulated camera is a room with the reference rules and one long-lived ``Ingest`` stream. One request is one
JPEG frame (real video, ``vtest.avi`` from OpenCV's samples, people walking): it is due at its scheduled time, sent
on the next camera's stream in turn, and done when that frame's detections come back from the detector worker
(``tessera.monitoring.<room>.detections.frame``, the message the gateway and the fusion stage consume). So the
latency is what the cascade adds to a frame: gateway, JetStream, the detector worker and its ``object_detector``
model. Frames the platform sheds under overload are errors, never missing samples: ``FRAME_SHED`` when the
detector dropped one as too old, ``FRAME_NOT_ANALYZED`` when none came back in ``timeout_s`` (the gateway's
queue dropped it).

Open loop is ``cameras x fps`` frames per second, evenly spaced (``arrivals: uniform``), which is what N cameras
at a fixed frame rate with staggered phases send; closed loop is N cameras each sending its next frame when the
last one was analysed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from loadtest.stack import Target
from tessera.common.v1 import common_pb2
from tessera.monitoring import analysis, cascade, convert, scenarios
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.monitoring.vision import encode_jpeg
from tessera.runtime.bus import Bus, Received

ROOT = Path(__file__).resolve().parents[2]
VIDEO = ROOT / "build" / "media" / "opencv-doc" / "vtest.avi"


class FrameNotAnalyzed(Exception):
    status = "FRAME_NOT_ANALYZED"


class FrameShed(Exception):
    status = "FRAME_SHED"


@dataclass
class Camera:
    room_id: str
    queue: asyncio.Queue[pb.IngestRequest | None] = field(default_factory=asyncio.Queue)
    call: Any = None  # the Ingest call (a grpc.aio stream-unary call)
    last_ms: int = -1
    start_unix_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    async def requests(self) -> AsyncIterator[pb.IngestRequest]:
        while (item := await self.queue.get()) is not None:
            yield item


@dataclass
class MonitoringScenario:
    target: Target
    cameras: int
    fps: float
    timeout_s: float
    max_side: int
    name: str = "monitoring"
    frames: list[bytes] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    stub: Any = None
    bus: Bus | None = None
    sub: Any = None
    rigs: list[Camera] = field(default_factory=list)
    waiting: dict[tuple[str, int], asyncio.Future[msg.FrameDetections]] = field(default_factory=dict)
    ingest_totals: dict[str, int] = field(default_factory=dict)
    detect_ms: list[float] = field(default_factory=list)
    _turn: int = 0

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any]) -> MonitoringScenario:
        return cls(
            target,
            int(options.get("cameras", 4)),
            float(options.get("fps", 5.0)),
            float(options.get("timeout_s", 10.0)),
            int(options.get("max_side", 640)),
        )

    async def setup(self) -> None:
        if not VIDEO.exists():
            raise FileNotFoundError(f"real media missing at {VIDEO}: run `make media`")
        decoded, _, _ = await asyncio.to_thread(
            analysis.decode_video, VIDEO, 1.0, max_duration_s=600, max_side=self.max_side
        )
        self.frames = [encode_jpeg(rgb, 85) for _, rgb in decoded]
        if not self.target.nats_url:
            raise RuntimeError("the monitoring scenario needs the stack's NATS URL (a stack this run started)")
        self.bus = await Bus.connect(self.target.nats_url, "loadtest-monitoring")
        self.sub = await self.bus.watch(f"{cascade.PREFIX}.*.detections.frame", self._on_detections)
        self.channel = grpc.aio.insecure_channel(self.target.address("monitoring"))
        self.stub = pb_grpc.MonitoringServiceStub(self.channel)
        rules = convert.rules_to_proto(scenarios.reference_rules())
        stamp = int(time.time())
        for i in range(self.cameras):
            camera = Camera(f"loadtest-{stamp}-{i}")
            await self.stub.CreateRoom(pb.CreateRoomRequest(room_id=camera.room_id, rules=rules))
            camera.call = self.stub.Ingest(camera.requests())
            self.rigs.append(camera)
        for _ in self.rigs:  # one frame per camera, answered, before any measurement (model warm-up)
            await self.once(time.perf_counter())

    async def _on_detections(self, message: Received) -> None:
        detections = msg.FrameDetections.FromString(message.data)
        future = self.waiting.pop((detections.room_id, detections.timestamp_ms), None)
        if future is not None and not future.done():
            future.set_result(detections)

    async def once(self, scheduled_s: float) -> dict[str, float]:
        camera = self.rigs[self._turn % len(self.rigs)]
        self._turn += 1
        # stream time from the schedule, strictly increasing per camera: the frame's identity in the cascade
        stamp = max(camera.last_ms + 1, int(time.time() * 1000) - camera.start_unix_ms)
        camera.last_ms = stamp
        jpeg = self.frames[self._turn % len(self.frames)]
        future: asyncio.Future[msg.FrameDetections] = asyncio.get_running_loop().create_future()
        self.waiting[(camera.room_id, stamp)] = future
        image = common_pb2.Image(data=jpeg, encoding=common_pb2.IMAGE_ENCODING_JPEG, timestamp_ms=stamp)
        await camera.queue.put(
            pb.IngestRequest(
                room_id=camera.room_id, stream_start_unix_ms=camera.start_unix_ms, data=pb.SensorData(frame=image)
            )
        )
        try:
            detections = await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise FrameNotAnalyzed(f"no detections for {camera.room_id}@{stamp} ms in {self.timeout_s} s") from None
        finally:
            self.waiting.pop((camera.room_id, stamp), None)
        if detections.shed:
            raise FrameShed(f"{camera.room_id}@{stamp} ms shed by the detector")
        self.detect_ms.append(detections.detect_ms)
        return {"detect_ms": detections.detect_ms}

    def extras(self) -> dict[str, Any]:
        ordered = sorted(self.detect_ms)
        return {
            "request": {
                "cameras": self.cameras,
                "fps_per_camera": self.fps,
                "frame": f"JPEG q85 of {VIDEO.name}, longest side {self.max_side} px",
                "frames_in_rotation": len(self.frames),
            },
            "detector_ms_p50": ordered[len(ordered) // 2] if ordered else None,
            "ingest_totals": self.ingest_totals,
        }

    async def close(self) -> None:
        for camera in self.rigs:
            await camera.queue.put(None)
        for camera in self.rigs:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError, TimeoutError):
                reply = await asyncio.wait_for(camera.call, 10)
                for key in ("frames_accepted", "frames_shed"):
                    self.ingest_totals[key] = self.ingest_totals.get(key, 0) + int(getattr(reply, key))
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.stub.DeleteRoom(pb.DeleteRoomRequest(room_id=camera.room_id))
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        if self.bus is not None:
            await self.bus.close()
        if self.channel is not None:
            await self.channel.close()


SCENARIO = MonitoringScenario  # discovered by loadtest.scenarios.factory
