"""One trace across gRPC -> NATS -> worker: client span, server span, publish, consume share a trace id."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tessera.runtime.bus import SETTLED, Bus, ConsumerSpec, Delivery, StreamSpec, Worker, derived_msg_id
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer
from tessera.runtime.server import ServiceRegistration, build_server
from tessera.runtime.telemetry import setup_tracing

SERVICE = "tessera.test.v1.Relay"


async def test_trace_crosses_grpc_nats_and_worker(nats_server: NatsServer) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tessera-test-trace", processor=SimpleSpanProcessor(exporter))
    run = uuid.uuid4().hex[:8]
    stream = StreamSpec(f"TRACE_{run}", (f"tessera.trace.{run}.>",), storage="memory")
    consumer = ConsumerSpec(stream.name, f"stage_{run}", f"tessera.trace.{run}.in", ack_wait_s=5)
    bus = await Bus.connect(nats_server.url, "trace-test")
    await bus.ensure(stream)
    await bus.ensure(consumer)
    handled: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def relay(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await bus.publish(f"tessera.trace.{run}.in", request, msg_id=f"req-{run}")
        return b"accepted"

    def add(_: Any, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(relay)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Relay": handler}),))

    async def stage(delivery: Delivery) -> None:
        await bus.publish(
            f"tessera.trace.{run}.out", delivery.data.upper(), msg_id=derived_msg_id(delivery.msg_id, "up")
        )
        if not handled.done():
            handled.set_result(delivery.subject)

    server = await build_server(ServerSettings(port=0), [ServiceRegistration(SERVICE, add, None)])
    worker = Worker(bus, consumer, stage)
    loop_task = asyncio.ensure_future(worker.run())
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", interceptors=aio_client_interceptors())
        async with channel:
            assert await channel.unary_unary(f"/{SERVICE}/Relay")(b"hello", timeout=10) == b"accepted"
        await asyncio.wait_for(handled, 15)
    finally:
        await worker.stop(2)
        loop_task.cancel()
        await server.server.stop(0)
        await bus.close()
    assert SETTLED.labels(consumer.durable, "ack")._value.get() == 1  # the stage's outcome metric
    spans = exporter.get_finished_spans()
    client = next(s for s in spans if s.kind == SpanKind.CLIENT and s.name.endswith("/Relay"))
    trace_id = client.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    kinds = {s.kind for s in ours}
    assert {SpanKind.CLIENT, SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER} <= kinds
    server_span = next(s for s in ours if s.kind == SpanKind.SERVER)
    consumer_span = next(s for s in ours if s.kind == SpanKind.CONSUMER)
    # Walk from the consumer span up its parents: it must reach the gRPC server span.
    by_id = {s.context.span_id: s for s in ours}
    node, chain = consumer_span, []
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
        chain.append(node.kind)
    assert SpanKind.SERVER in chain, chain
    assert server_span.parent is not None and server_span.parent.span_id == client.context.span_id
