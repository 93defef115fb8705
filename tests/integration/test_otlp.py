"""Traces leave the process: one cascade's spans reach a real OTLP/gRPC collector as one tree.

The test runs an OTLP ``TraceService/Export`` endpoint of its own, then a two-process cascade configured for it only
through the standard ``OTEL_*`` environment: a gRPC server that publishes each request on NATS, and a stage worker
consuming it, both run by the production entry points (``service.main`` / ``service.main_worker``: setup, SIGTERM
drain, ``shutdown_tracing``). The test process is the gRPC client. Batching is set so long that only the exit flush
can deliver the processes' spans, so the test also proves that a SIGTERMed process sends what it still held.

This file is also the processes' program: ``python test_otlp.py serve|work`` runs the capability ``otlprelay`` (its
``create`` and ``STAGES`` below) with the run id in ``TESSERA_OTLP_TEST_RUN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tessera.runtime.bus import Bus, ConsumerSpec, Delivery, Received, StreamSpec, derived_msg_id
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import ManagedProcess, NatsServer, free_port, health_status
from tessera.runtime.server import ServiceRegistration
from tessera.runtime.service import Capability, StageWorker

CAPABILITY = "otlprelay"
STAGE = "relay"
SERVICE = "tessera.test.v1.OtlpRelay"
METHOD = f"/{SERVICE}/Relay"
SERVER_SERVICE = f"tessera-{CAPABILITY}"  # the service.name setup_tracing gives each process
WORKER_SERVICE = f"tessera-{CAPABILITY}-{STAGE}"
CLIENT_SERVICE = "tessera-test-otlp-client"
RUN_ENV = "TESSERA_OTLP_TEST_RUN"
T = TypeVar("T")


# --- the cascade's processes (run as `python test_otlp.py serve|work`) --------------------------------------------


@dataclass(frozen=True)
class Topology:
    """Stream, subjects and durable private to one run (the nats-server is shared by the whole session)."""

    run: str

    @property
    def in_subject(self) -> str:
        return f"tessera.otlp.{self.run}.in"

    @property
    def out_subject(self) -> str:
        return f"tessera.otlp.{self.run}.out"

    @property
    def stream(self) -> StreamSpec:
        return StreamSpec(f"OTLP_{self.run}", (f"tessera.otlp.{self.run}.>",), storage="memory", max_age_s=600)

    @property
    def consumer(self) -> ConsumerSpec:
        return ConsumerSpec(self.stream.name, f"relay_{self.run}", self.in_subject, ack_wait_s=5)


def _topology() -> Topology:
    return Topology(os.environ[RUN_ENV])


async def create(settings: ServerSettings) -> Capability:
    """The gRPC side: ``Relay`` publishes the request on the run's input subject and answers ``accepted``."""
    topo = _topology()
    bus = await Bus.connect(settings.nats_url, "otlp-relay-server", connect_timeout_s=5)
    await bus.ensure(topo.stream)

    async def relay(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await bus.publish(topo.in_subject, request, msg_id=f"req-{topo.run}")
        return b"accepted"

    def add(_: Any, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(relay)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Relay": handler}),))

    return Capability(CAPABILITY, [ServiceRegistration(SERVICE, add, None)], on_close=[bus.close])


async def relay_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    """The stage: consume the input, publish it upper-cased on the output subject."""
    topo = _topology()

    async def handle(delivery: Delivery) -> None:
        await bus.publish(topo.out_subject, delivery.data.upper(), msg_id=derived_msg_id(delivery.msg_id, "up"))

    return StageWorker(STAGE, [topo.stream], topo.consumer, handle)


STAGES = {STAGE: relay_stage}


def _process_main(role: str) -> None:
    from tessera.runtime import service

    # service.main / main_worker import tessera.<capability>.api / .workers: this module is both.
    this = sys.modules[__name__]
    sys.modules[f"tessera.{CAPABILITY}.api"] = this
    sys.modules[f"tessera.{CAPABILITY}.workers"] = this
    if role == "serve":
        service.main(CAPABILITY)
    elif role == "work":
        service.main_worker(CAPABILITY, STAGE)
    else:
        raise SystemExit(f"usage: {Path(__file__).name} serve|work")


# --- the collector --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that keeps every span it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.port = 0

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            attributes = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=attributes.get(SERVICE_NAME, ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)


@pytest.fixture
def collector() -> Iterator[Collector]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer
    server.stop(None)


# --- the test -------------------------------------------------------------------------------------------------


def _start(role: str, env: dict[str, str], logs: Path) -> ManagedProcess:
    """One cascade process, returned once its grpc.health server reports SERVING (its consumer exists by then)."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), role]
    process = ManagedProcess(f"otlp-{role}", argv, logs / f"{role}.log", env={**env, "TESSERA_PORT": str(port)})
    process.start()
    process.wait_until(lambda: health_status(f"127.0.0.1:{port}") == "SERVING", 60, "serving")
    return process


def _stop(process: ManagedProcess) -> int | None:
    """SIGTERM and wait (stop() escalates to SIGKILL only past the timeout; a clean exit is asserted)."""
    return process.stop(timeout_s=30)


async def _wait_for(what: Callable[[], str], check: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """Poll ``check`` until it returns something, at most ``timeout_s``; the failure says ``what()`` was missing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not after {timeout_s:.0f} s: {what()}")


def _trace_file_spans(trace_dir: Path, trace_id: str) -> dict[str, set[str]]:
    """Span ids of ``trace_id`` each service wrote to its TESSERA_TRACE_DIR file, by service name."""
    found: dict[str, set[str]] = {}
    for path in trace_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["trace_id"] == trace_id:
                found.setdefault(record["service"], set()).add(record["span_id"])
    return found


async def test_cascade_trace_reaches_an_otlp_collector_as_one_tree(
    nats_server: NatsServer, collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):  # nothing of the caller's own telemetry setup leaks into the processes
            monkeypatch.delenv(name)
    topo = Topology(uuid.uuid4().hex[:10])
    endpoint = f"http://127.0.0.1:{collector.port}"
    trace_dir = tmp_path / "traces"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        # Far longer than the test: the batches are only ever sent by the exit flush (shutdown_tracing).
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        RUN_ENV: topo.run,
        "TESSERA_NATS_URL": nats_server.url,
        "TESSERA_TRACE_DIR": str(trace_dir),
        "TESSERA_DRAIN_DELAY_S": "0",
        "TESSERA_GRACE_S": "5",
        "TESSERA_LOG_JSON": "false",
    }
    client_provider = TracerProvider(resource=Resource.create({SERVICE_NAME: CLIENT_SERVICE}))
    client_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    processes: list[ManagedProcess] = []
    bus = await Bus.connect(nats_server.url, "otlp-test", connect_timeout_s=5)
    try:
        processes.append(_start("work", env, tmp_path))  # first, so its durable consumer exists before the publish
        processes.append(_start("serve", env, tmp_path))
        address = f"127.0.0.1:{processes[1].env['TESSERA_PORT']}"
        channel = grpc.aio.insecure_channel(
            address, interceptors=aio_client_interceptors(tracer_provider=client_provider)
        )
        async with channel:
            assert await channel.unary_unary(METHOD)(b"hello", timeout=10) == b"accepted"

        outputs: asyncio.Queue[Received] = asyncio.Queue()
        watch = await bus.watch(topo.out_subject, outputs.put, replay_all=True)
        try:
            output = await asyncio.wait_for(outputs.get(), 20)
        finally:
            await watch.unsubscribe()
        assert output.data == b"HELLO"

        # The cascade has run; the processes still hold every span of it in their batches.
        assert not [s for s in collector.spans() if s.service in (SERVER_SERVICE, WORKER_SERVICE)]

        codes = await asyncio.gather(*(asyncio.to_thread(_stop, p) for p in processes))
        assert codes == [0, 0], f"exit codes {codes}; logs in {tmp_path}"
    finally:
        for process in processes:
            if process.alive():
                process.stop(timeout_s=5)
        client_provider.shutdown()  # exports the test's own client span
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(topo.stream.name)
        await bus.close()

    client = await _wait_for(
        lambda: f"the client span over OTLP; received {collector.spans()}",
        lambda: next((s for s in collector.spans() if s.service == CLIENT_SERVICE and s.name == METHOD), None),
    )
    trace_id = client.trace_id
    written = _trace_file_spans(trace_dir, trace_id)  # every span the processes recorded for this trace, by service

    def received() -> dict[str, set[str]]:
        ours = [s for s in collector.spans() if s.trace_id == trace_id and s.service != CLIENT_SERVICE]
        return {service: {s.span_id for s in ours if s.service == service} for service in {s.service for s in ours}}

    await _wait_for(
        lambda: f"the processes' spans of trace {trace_id} over OTLP: {received()} != trace files {written}",
        lambda: True if received() == written else None,
    )
    spans = [s for s in collector.spans() if s.trace_id == trace_id]

    # Three processes, one trace id (the filter above), each span once; all the processes recorded, nothing else.
    assert {s.service for s in spans} == {CLIENT_SERVICE, SERVER_SERVICE, WORKER_SERVICE}, spans
    assert set(written) == {SERVER_SERVICE, WORKER_SERVICE}, written
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "a span arrived twice"
    # One tree: a single root (the client's call), every other span's parent is in the set.
    roots = [s for s in spans if not s.parent_id]
    assert roots == [client], roots
    orphans = [s for s in spans if s.parent_id and s.parent_id not in by_id]
    assert not orphans, orphans

    def named(service: str, kind: int, name: str) -> ReceivedSpan:
        found = [s for s in spans if s.service == service and s.kind == kind and s.name == name]
        assert len(found) == 1, (service, kind, name, spans)
        return found[0]

    grpc_server = named(SERVER_SERVICE, Span.SPAN_KIND_SERVER, METHOD)
    publish_in = named(SERVER_SERVICE, Span.SPAN_KIND_PRODUCER, f"publish {topo.in_subject}")
    consume = named(WORKER_SERVICE, Span.SPAN_KIND_CONSUMER, topo.in_subject)
    publish_out = named(WORKER_SERVICE, Span.SPAN_KIND_PRODUCER, f"publish {topo.out_subject}")
    # gRPC -> NATS -> worker: each hop's span is the child of the one before, across the process boundaries.
    assert grpc_server.parent_id == client.span_id
    assert publish_in.parent_id == grpc_server.span_id
    assert consume.parent_id == publish_in.span_id
    assert publish_out.parent_id == consume.span_id


if __name__ == "__main__":
    _process_main(sys.argv[1] if len(sys.argv) > 1 else "")
