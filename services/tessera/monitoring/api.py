"""gRPC gateway of the monitoring service: each RPC handed to the part that owns it.

- rooms (``rooms_api.Rooms``): the room table in JetStream key-value, shared with the fusion worker;
- live traffic (``ingest_api.LiveIngest``): Ingest and feeds onto the cascade with shedding, alert Watch;
- clips (``clips_api.ClipAnalysis``): AnalyzeClip through Triton directly.
The service reports NOT_SERVING until its three Triton models (``contracts``) are ready.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tessera.monitoring import cascade
from tessera.monitoring.clips_api import ClipAnalysis
from tessera.monitoring.contracts import MODELS, MonitoringModels
from tessera.monitoring.ingest_api import LiveIngest
from tessera.monitoring.rooms_api import Rooms
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.runtime import config
from tessera.runtime.bus import Bus
from tessera.runtime.inference import TritonClient
from tessera.runtime.server import ServiceRegistration, TesseraServer, not_ready_error
from tessera.runtime.service import Capability, serving_when_models_ready

log = logging.getLogger("tessera.monitoring")
SERVICE_NAME = "tessera.monitoring.v1.MonitoringService"
Context = grpc.aio.ServicerContext[Any, Any]


class MonitoringServicer(pb_grpc.MonitoringServiceServicer):
    def __init__(self, own: MonitoringSettings, settings: config.ServerSettings, bus: Bus, triton: TritonClient):
        self.own = own
        self.bus = bus
        self.triton = triton
        self.models = MonitoringModels(triton)
        self.rooms = Rooms(own, bus, self.models)
        self.ingest = LiveIngest(own, settings, bus, self.rooms)
        self.clips = ClipAnalysis(own, settings, self.models, self.rooms)
        self.ready = False

    async def start(self, server: TesseraServer) -> None:
        await self.bus.ensure(cascade.WORK)
        await self.bus.ensure(cascade.ALERTS)
        await self.rooms.load()
        await self.ingest.start()

    async def models_ready(self) -> None:
        await self.models.load()
        self.ready = True

    async def close(self) -> None:
        await self.ingest.close()

    def _require_ready(self) -> None:
        if not self.ready:
            raise not_ready_error("monitoring")

    # -- rooms ----------------------------------------------------------------------------------------------
    async def CreateRoom(self, request: pb.CreateRoomRequest, context: Context) -> pb.CreateRoomResponse:
        self._require_ready()  # rules are checked against the served models' labels
        room = await self.rooms.create(request)
        return pb.CreateRoomResponse(room=self.ingest.describe(room))

    async def GetRoom(self, request: pb.GetRoomRequest, context: Context) -> pb.GetRoomResponse:
        return pb.GetRoomResponse(room=self.ingest.describe(await self.rooms.get(request.room_id)))

    async def UpdateRoom(self, request: pb.UpdateRoomRequest, context: Context) -> pb.UpdateRoomResponse:
        self._require_ready()
        room = await self.rooms.update(request)
        return pb.UpdateRoomResponse(room=self.ingest.describe(room))

    async def DeleteRoom(self, request: pb.DeleteRoomRequest, context: Context) -> pb.DeleteRoomResponse:
        await self.rooms.get(request.room_id)
        await self.ingest.forget(request.room_id)
        await self.rooms.delete(request.room_id)
        return pb.DeleteRoomResponse()

    # -- live traffic ---------------------------------------------------------------------------------------
    async def Ingest(self, request_iterator: AsyncIterator[pb.IngestRequest], context: Context) -> pb.IngestResponse:
        self._require_ready()
        return await self.ingest.ingest(request_iterator)

    async def Watch(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchResponse]:
        async for response in self.ingest.watch(request):
            yield response

    async def StartFeed(self, request: pb.StartFeedRequest, context: Context) -> pb.StartFeedResponse:
        self._require_ready()
        return pb.StartFeedResponse(feed=await self.ingest.start_feed(request))

    async def StopFeed(self, request: pb.StopFeedRequest, context: Context) -> pb.StopFeedResponse:
        return pb.StopFeedResponse(feed=await self.ingest.stop_feed(request))

    # -- clips ----------------------------------------------------------------------------------------------
    async def AnalyzeClip(self, request: pb.AnalyzeClipRequest, context: Context) -> pb.AnalyzeClipResponse:
        self._require_ready()
        return await self.clips.analyze(request)


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(MonitoringSettings)
    bus = await Bus.connect(settings.nats_url, "monitoring-gateway")
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = MonitoringServicer(own, settings, bus, triton)
    return Capability(
        name="monitoring",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_MonitoringServiceServicer_to_server, servicer)],
        on_start=[
            serving_when_models_ready(
                triton, SERVICE_NAME, list(MODELS), own.models_ready_timeout_s, then=servicer.models_ready
            ),
            servicer.start,
        ],
        on_close=[servicer.close, bus.close, triton.close],
    )
