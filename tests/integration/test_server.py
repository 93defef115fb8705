"""The server builder against real gRPC clients: health, auth, sizes, error mapping, deadlines, drain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tessera.runtime import deadlines
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import InvalidArgument, field_violations
from tessera.runtime.server import REQUESTS, ServiceRegistration, TesseraServer, build_server

SERVICE = "tessera.test.v1.Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if request.startswith(b"bad:"):
        raise InvalidArgument("payload must not start with bad:", field="payload")
    if request == b"boom":
        raise RuntimeError("secret internal detail")
    if request.startswith(b"sleep:"):
        await asyncio.sleep(float(request[6:]))
    if request == b"deadline":
        left = deadlines.remaining()
        return b"none" if left is None else f"{left:.3f}".encode()
    return request


async def _count(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield str(i).encode()


CLEANED_UP: list[str] = []  # handlers that ran their finally block


async def _ticks(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
    try:
        while True:  # a live feed: it ends only when its client or the server ends it
            yield b"tick"
            await asyncio.sleep(0.05)
    finally:
        CLEANED_UP.append(f"ticks:{request.decode()}")


async def _sink(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    count = 0
    try:
        async for _ in requests:
            count += 1
    finally:
        CLEANED_UP.append("sink")
    return str(count).encode()


def _add_echo(_servicer: Any, server: grpc.aio.Server) -> None:
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Count": grpc.unary_stream_rpc_method_handler(_count),
        "Ticks": grpc.unary_stream_rpc_method_handler(_ticks),
        "Sink": grpc.stream_unary_rpc_method_handler(_sink),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def _start(**overrides: Any) -> TesseraServer:
    settings = ServerSettings(**{"port": 0, "drain_delay_s": 0.5, "grace_s": 5.0, **overrides})
    return await build_server(settings, [ServiceRegistration(SERVICE, _add_echo, None)])


def _echo_call(channel: grpc.aio.Channel) -> Callable[..., Any]:
    return channel.unary_unary(f"/{SERVICE}/Echo")


@pytest.fixture
async def server() -> AsyncIterator[TesseraServer]:
    srv = await _start()
    yield srv
    await srv.server.stop(0)


async def test_health_and_reflection(server: TesseraServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {svc.name async for reply in replies for svc in reply.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_domain_error_maps_to_status_with_field(server: TesseraServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _echo_call(channel)(b"bad:x")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == {"payload": "payload must not start with bad:"}
        with pytest.raises(grpc.aio.AioRpcError) as internal:
            await _echo_call(channel)(b"boom")
        assert internal.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (internal.value.details() or "")
        # The server is still up after both.
        assert await _echo_call(channel)(b"ok") == b"ok"


async def test_metrics_count_by_method_and_code(server: TesseraServer) -> None:
    method = f"/{SERVICE}/Echo"
    before_ok = REQUESTS.labels(method, "OK")._value.get()
    before_bad = REQUESTS.labels(method, "INVALID_ARGUMENT")._value.get()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await _echo_call(channel)(b"hi")
        with pytest.raises(grpc.aio.AioRpcError):
            await _echo_call(channel)(b"bad:")
        replies = [r async for r in channel.unary_stream(f"/{SERVICE}/Count")(b"3")]
    assert replies == [b"0", b"1", b"2"]
    assert REQUESTS.labels(method, "OK")._value.get() == before_ok + 1
    assert REQUESTS.labels(method, "INVALID_ARGUMENT")._value.get() == before_bad + 1


async def test_deadline_is_propagated(server: TesseraServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        left = float(await _echo_call(channel)(b"deadline", timeout=5.0))
        assert 0 < left <= 5.1  # the server rounds the deadline it receives (grpc-timeout units)
        assert await _echo_call(channel)(b"deadline") == b"none"


async def test_auth_token_required() -> None:
    srv = await _start(auth_token="s3cret")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            for metadata in (None, (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _echo_call(channel)(b"x", metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as streaming:
                _ = [r async for r in channel.unary_stream(f"/{SERVICE}/Count")(b"2")]
            assert streaming.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = await _echo_call(channel)(b"x", metadata=(("authorization", "Bearer s3cret"),))
            assert ok == b"x"
            for twice in (
                (("authorization", "Bearer wrong"), ("authorization", "Bearer s3cret")),
                (("authorization", "Bearer s3cret"), ("authorization", "Bearer s3cret")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as doubled:
                    await _echo_call(channel)(b"x", metadata=twice)
                assert doubled.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "more than one authorization header" in (doubled.value.details() or "")
            # Probes stay open.
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await srv.server.stop(0)


async def test_oversize_message_is_resource_exhausted() -> None:
    srv = await _start(max_receive_message_bytes=4096)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _echo_call(channel)(b"x" * 10_000)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await _echo_call(channel)(b"small") == b"small"
    finally:
        await srv.server.stop(0)


async def test_sigterm_drains_not_serving_then_finishes_in_flight() -> None:
    srv = await _start()
    srv.install_signal_handlers()
    loop = asyncio.get_running_loop()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            in_flight = asyncio.ensure_future(_echo_call(channel)(b"sleep:1.5"))
            await asyncio.sleep(0.2)
            waiter = asyncio.ensure_future(srv.wait())
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.2)  # inside the drain delay: still answering, but NOT_SERVING
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await in_flight == b"sleep:1.5"  # the accepted call finished within the grace period
            await asyncio.wait_for(waiter, 10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _echo_call(channel)(b"late", timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await srv.server.stop(0)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


async def test_tls(self_signed: tuple[Path, Path]) -> None:
    key, cert = self_signed
    srv = await _start(tls_cert_file=cert, tls_key_file=key)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{srv.port}", credentials) as channel:
            assert await _echo_call(channel)(b"secret", timeout=10) == b"secret"
        async with grpc.aio.insecure_channel(f"localhost:{srv.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _echo_call(plain)(b"x", timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await srv.server.stop(0)


async def test_drain_ends_open_streams_with_draining_after_the_capability_delivered() -> None:
    """Streams end right after the drain delay and the on_drain hooks, not when the grace period runs out."""
    from tessera.runtime.rpc_client import RpcCallError

    srv = await _start(drain_delay_s=0.3, grace_s=30.0)
    hook_done: list[float] = []

    async def deliver_in_flight() -> None:
        await asyncio.sleep(0.3)
        hook_done.append(asyncio.get_running_loop().time())

    srv.on_drain.append(deliver_in_flight)
    loop = asyncio.get_running_loop()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            ticks = channel.unary_stream(f"/{SERVICE}/Ticks")(b"")
            assert await ticks.read() == b"tick"

            async def forever() -> AsyncIterator[bytes]:
                # A client that has sent and is not writing when the drain comes (a writing client's own write
                # fails first in grpc-python and masks the status as INTERNAL "Internal error from Core").
                yield b"frame"
                await asyncio.Event().wait()

            sink = channel.stream_unary(f"/{SERVICE}/Sink")(forever())
            began = loop.time()
            drain = asyncio.ensure_future(srv.drain())
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                while True:
                    await ticks.read()
            ended = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as sunk:
                await sink
            for caught in (streamed.value, sunk.value):
                error = RpcCallError.from_rpc("x", caught, 1)
                assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "DRAINING", error
                assert "reconnect" in error.message
            assert hook_done and ended >= hook_done[0] - 0.01, "the capability delivered before the cut"
            assert ended - began < 5.0, "streams end after the delay and the hooks, not after the 30 s grace"
            await asyncio.wait_for(drain, 10)
    finally:
        await srv.server.stop(0)


async def test_a_stream_opened_once_the_drain_has_begun_is_refused_before_its_handler_runs() -> None:
    """NOT_SERVING (not DRAINING): the client knows nothing it sent was read, so it resends everything elsewhere."""
    from tessera.runtime.rpc_client import RpcCallError

    srv = await _start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            ticks = channel.unary_stream(f"/{SERVICE}/Ticks")(b"before")
            assert await ticks.read() == b"tick"
            srv.draining.set()  # what drain() does once the capability has delivered what was in flight
            late = channel.unary_stream(f"/{SERVICE}/Ticks")(b"late")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await late.read()
            error = RpcCallError.from_rpc("Ticks", caught.value, 1)
            assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "NOT_SERVING", error
            assert "reconnect" in error.message
            with pytest.raises(grpc.aio.AioRpcError) as ended:  # the open stream ends as DRAINING instead
                while True:
                    await ticks.read()
            assert RpcCallError.from_rpc("Ticks", ended.value, 1).reason == "DRAINING"
            assert "ticks:late" not in CLEANED_UP  # its handler never started
    finally:
        await srv.server.stop(0)


async def test_a_stream_cancelled_by_its_client_runs_the_handlers_cleanup(server: TesseraServer) -> None:
    """The drain wrapper must not keep a cancelled handler alive: its finally (a participant leaving) runs now."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        ticks = channel.unary_stream(f"/{SERVICE}/Ticks")(b"cancelled")
        assert await ticks.read() == b"tick"
        ticks.cancel()
        for _ in range(100):
            if "ticks:cancelled" in CLEANED_UP:
                break
            await asyncio.sleep(0.02)
        assert "ticks:cancelled" in CLEANED_UP

        async def one_then_wait() -> AsyncIterator[bytes]:
            yield b"frame"
            await asyncio.Event().wait()

        CLEANED_UP.clear()
        sink = channel.stream_unary(f"/{SERVICE}/Sink")(one_then_wait())
        await asyncio.sleep(0.2)
        sink.cancel()
        for _ in range(100):
            if "sink" in CLEANED_UP:
                break
            await asyncio.sleep(0.02)
        assert "sink" in CLEANED_UP
