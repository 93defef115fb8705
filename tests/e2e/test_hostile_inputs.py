"""Every RPC of every capability, walked by reflection with empty, oversized and hostile requests.

The services run in this process on a real NATS (their own, so nothing here leaks into other tests) and the
session's real Triton. A healthy service answers each request with a status that is the client's to act on:
never UNKNOWN, INTERNAL, UNAVAILABLE or DATA_LOSS, never an error without a message, never a message so long it
no longer fits gRPC's metadata limit. Afterwards every service still reports SERVING. A new capability is held to
this the day ``service.capabilities()`` finds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, descriptor_pool, message, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.e2e.hostile_inputs import Variant, variants

from tessera.runtime import service
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer, TritonServer, start_nats

VARIANTS_PER_METHOD = 80
CALL_DEADLINE_S = 10.0
CONCURRENCY = 8
WALK_BUDGET_S = 300.0  # the whole walk; each call has its own deadline too
FORBIDDEN = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}
MAX_DETAILS_CHARS = 2048  # far below gRPC's 8 KiB metadata limit


@dataclass
class Served:
    name: str  # package.Service
    address: str


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("hostile-nats")
    server = start_nats(base / "js", base / "nats.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def served(
    own_nats: NatsServer, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[Served]]:
    media = tmp_path_factory.mktemp("hostile-media")
    settings = ServerSettings(port=0, nats_url=own_nats.url, triton_url=triton_server.grpc_url, media_roots=[media])
    started = []
    found: list[Served] = []
    for name in service.capabilities():
        capability, server = await service.start(name, settings)
        started.append((capability, server))
        found.extend(Served(reg.name, f"127.0.0.1:{server.port}") for reg in capability.services)
    for entry in found:
        await _wait_serving(entry)
    yield found
    for capability, server in started:
        await server.server.stop(0)
        await capability.close()


async def _wait_serving(entry: Served, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(entry.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=entry.name), timeout=5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            assert time.monotonic() < deadline, f"{entry.name} never became SERVING"
            await asyncio.sleep(0.2)


def _serialize(request: message.Message) -> bytes:
    return request.SerializeToString()  # the instance's own: the base class's unbound method sends nothing


def _method_callable(channel: grpc.aio.Channel, method: descriptor.MethodDescriptor) -> Any:
    path = f"/{method.containing_service.full_name}/{method.name}"
    out = message_factory.GetMessageClass(method.output_type)
    kinds = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    factory = kinds[(method.client_streaming, method.server_streaming)]
    return factory(path, request_serializer=_serialize, response_deserializer=out.FromString)


async def _outcome(
    channel: grpc.aio.Channel, method: descriptor.MethodDescriptor, request: message.Message | None
) -> tuple[grpc.StatusCode, str, int]:
    """The final status, its message and how many responses came; ``request=None`` sends an empty stream."""
    call_fn = _method_callable(channel, method)

    async def requests() -> AsyncIterator[message.Message]:
        if request is not None:
            yield request

    responses = 0
    try:
        if method.client_streaming:
            call = call_fn(requests(), timeout=CALL_DEADLINE_S)
        else:
            call = call_fn(request, timeout=CALL_DEADLINE_S)
        if method.server_streaming:
            async for _ in call:
                responses += 1
        else:
            await call
            responses = 1
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or "", responses
    return grpc.StatusCode.OK, "", responses


def _methods(service_names: list[str]) -> list[descriptor.MethodDescriptor]:
    """Every method of the served services, from the descriptors their generated stubs registered."""
    pool = descriptor_pool.Default()
    return [method for name in sorted(service_names) for method in pool.FindServiceByName(name).methods]


@pytest.mark.slow
async def test_every_rpc_of_every_service_answers_hostile_input_with_a_named_status(served: list[Served]) -> None:
    addresses = {entry.name: entry.address for entry in served}
    methods = _methods(list(addresses))
    assert {name.split(".")[1] for name in addresses} == set(service.capabilities()), "a capability serves nothing"
    channels = {address: grpc.aio.insecure_channel(address) for address in set(addresses.values())}
    gate = asyncio.Semaphore(CONCURRENCY)
    failures: list[str] = []
    codes: dict[grpc.StatusCode, int] = {}

    async def probe(method: descriptor.MethodDescriptor, variant: Variant | None) -> None:
        channel = channels[addresses[method.containing_service.full_name]]
        async with gate:
            code, details, _ = await _outcome(channel, method, None if variant is None else variant.request)
        codes[code] = codes.get(code, 0) + 1
        shown = "empty stream" if variant is None else f"{variant.path or '-'} = {variant.value}"
        where = f"{method.full_name} {shown}"
        if code in FORBIDDEN:
            failures.append(f"{where}: {code.name} {details[:200]!r}")
        elif code == grpc.StatusCode.OK and variant is not None and "100000 long" in variant.value:
            failures.append(f"{where}: a 100 KB string was accepted")
        elif code != grpc.StatusCode.OK and not details.strip():
            failures.append(f"{where}: {code.name} with an empty message")
        elif len(details) > MAX_DETAILS_CHARS:
            failures.append(f"{where}: {code.name} message of {len(details)} chars")

    try:
        jobs = []
        for method in methods:
            jobs.extend(probe(method, v) for v in variants(method.input_type, VARIANTS_PER_METHOD))
            if method.client_streaming:
                jobs.append(probe(method, None))
        assert len(jobs) > 10 * len(methods), "too few hostile requests generated"
        await asyncio.wait_for(asyncio.gather(*jobs), WALK_BUDGET_S)
        for entry in served:  # still healthy after all of it
            await _wait_serving(entry, timeout_s=10)
    finally:
        for channel in channels.values():
            await channel.close()
    assert not failures, f"{len(failures)} bad answers (codes seen {codes}):\n" + "\n".join(failures[:60])
    assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > len(methods), codes
