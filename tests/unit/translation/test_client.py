"""ConferenceClient joins again when its gateway drains: against two real gRPC servers on one port, the first
drained by the runtime's own drain (UNAVAILABLE with ErrorInfo reason DRAINING), the second started afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tessera.runtime.config import ServerSettings
from tessera.runtime.rpc_client import RECONNECT_OPTIONS, reason_of
from tessera.runtime.server import ServiceRegistration, TesseraServer, build_server
from tessera.translation.api import SERVICE_NAME
from tessera.translation.client import ConferenceClient
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc


class FakeGateway(pb_grpc.ConferenceServiceServicer):
    """Answers join with joined, request_floor with GRANTED; records every client event."""

    def __init__(self) -> None:
        self.received: list[pb.ClientEvent] = []
        self.drain_hook_ran = False

    async def drain(self) -> None:
        self.drain_hook_ran = True

    async def Join(
        self, request_iterator: AsyncIterator[pb.ClientEvent], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ServerEvent]:
        queue: asyncio.Queue[pb.ServerEvent] = asyncio.Queue()

        async def read() -> None:
            async for event in request_iterator:
                self.received.append(event)
                if event.WhichOneof("event") == "join":
                    await queue.put(pb.ServerEvent(joined=pb.Joined(next_segment_seq=7)))
                elif event.WhichOneof("event") == "request_floor":
                    await queue.put(pb.ServerEvent(floor=pb.FloorEvent(kind=pb.FLOOR_EVENT_KIND_GRANTED)))

        reader = asyncio.ensure_future(read())
        try:
            while True:
                yield await queue.get()
        finally:
            reader.cancel()


async def _serve(gateway: FakeGateway, port: int = 0) -> TesseraServer:
    settings = ServerSettings(port=port, drain_delay_s=0, grace_s=2)
    server = await build_server(
        settings, [ServiceRegistration(SERVICE_NAME, pb_grpc.add_ConferenceServiceServicer_to_server, gateway)]
    )
    server.on_drain.append(gateway.drain)
    return server


def _kinds(events: list[pb.ClientEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


async def test_a_drained_stream_is_joined_again_with_the_floor_requested_first() -> None:
    first = FakeGateway()
    old = await _serve(first)
    port = old.port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=RECONNECT_OPTIONS) as channel:
        client = ConferenceClient(pb_grpc.ConferenceServiceStub(channel), "standup", "ana", "en")
        await client.open()
        await client.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        await client.wait_for(lambda e: e.WhichOneof("event") == "floor", 5)
        await old.drain()  # the runtime's drain: hook, then UNAVAILABLE/DRAINING on every open stream
        assert first.drain_hook_ran
        await client.send(pb.ClientEvent(text=pb.TextMessage(text="said while nobody served")))
        second = FakeGateway()
        new = await _serve(second, port)  # the restarted gateway, same address
        try:
            await client.wait_for(lambda e: e.WhichOneof("event") == "joined" and client.rejoins == 1, 20)
            await client.wait_for(lambda e: len(client.of("floor")) == 2, 5)
            for _ in range(100):
                if len(second.received) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert _kinds(second.received) == ["join", "request_floor", "text"]
            rejoin = second.received[0].join
            assert (rejoin.conference_id, rejoin.participant_id, rejoin.language) == ("standup", "ana", "en")
            assert second.received[2].text.text == "said while nobody served", "kept while reconnecting"
            assert _kinds(first.received) == ["join", "request_floor"]
            assert [e.WhichOneof("event") for e in client.events] == ["joined", "floor", "joined", "floor"]
        finally:
            await client.close()
            await new.server.stop(0)


async def test_without_rejoin_the_draining_status_reaches_the_caller() -> None:
    gateway = FakeGateway()
    server = await _serve(gateway)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        client = ConferenceClient(pb_grpc.ConferenceServiceStub(channel), "standup", "bo", "es", rejoin=False)
        await client.open()
        await server.drain()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await client.wait_for(lambda e: False, 5)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(ended.value) == "DRAINING"
        await client.close()


async def test_a_refused_first_join_is_raised_not_retried() -> None:
    server = await _serve(FakeGateway())
    await server.server.stop(0)  # nothing listens: UNAVAILABLE before any joined
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        client = ConferenceClient(pb_grpc.ConferenceServiceStub(channel), "standup", "cy", "en")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.open()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and client.rejoins == 0
        await client.close()


async def test_close_ends_a_rejoin_in_progress() -> None:
    gateway = FakeGateway()
    server = await _serve(gateway)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=RECONNECT_OPTIONS) as channel:
        client = ConferenceClient(pb_grpc.ConferenceServiceStub(channel), "standup", "di", "en")
        await client.open()
        await server.drain()  # nobody comes back: the client keeps trying
        await asyncio.sleep(0.5)
        await asyncio.wait_for(client.close(), 2)
        assert client.rejoins == 0
