"""tessera.runtime.bus against a real nats-server with JetStream: publish/consume chains, redelivery after a crash,
dead-lettering, de-duplication, concurrency and graceful stop, reconnects, and connect failures. No mocks."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tessera.runtime.bus import (
    DLQ_DELIVERIES_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_ORIGINAL_MSG_ID_HEADER,
    DLQ_SEQUENCE_HEADER,
    DLQ_STREAM_HEADER,
    DLQ_SUBJECT_HEADER,
    MSG_ID_HEADER,
    Bus,
    BusRejected,
    BusUnavailable,
    ConsumerSpec,
    Delivery,
    PermanentError,
    Received,
    StreamSpec,
    Worker,
    bus_errors,
    derived_msg_id,
)
from tessera.runtime.errors import Unavailable
from tessera.runtime.processes import NatsServer, free_port, start_nats
from tessera.runtime.telemetry import current_trace_id, setup_tracing, tracer

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]
WORKER_PROC = Path(__file__).with_name("bus_worker_proc.py")


@pytest.fixture(scope="module")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url  # the shared session server from tests/conftest.py


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_tracing("tessera-test-bus", processor=SimpleSpanProcessor(exporter))
    return exporter


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    async with await Bus.connect(nats_url, "test-bus", connect_timeout_s=5) as connected:
        yield connected


@dataclass
class Topic:
    """Subjects and streams private to one test, so tests never see each other's messages."""

    tid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def in_subject(self) -> str:
        return f"tessera.test.{self.tid}.in"

    @property
    def out_subject(self) -> str:
        return f"tessera.test.{self.tid}.out"

    @property
    def dlq_subject(self) -> str:
        return f"tessera.test.{self.tid}.dlq"

    @property
    def in_stream(self) -> str:
        return f"TEST_{self.tid}_IN"

    @property
    def out_stream(self) -> str:
        return f"TEST_{self.tid}_OUT"

    @property
    def dlq_stream(self) -> str:
        return f"TEST_{self.tid}_DLQ"

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec(self.in_stream, (self.in_subject,), max_age_s=600, duplicate_window_s=60),
            StreamSpec(self.out_stream, (self.out_subject,), max_age_s=600, duplicate_window_s=60),
            StreamSpec(self.dlq_stream, (self.dlq_subject,), max_age_s=600, duplicate_window_s=60),
        ]

    async def provision(self, bus: Bus) -> None:
        for spec in self.streams():
            await bus.ensure(spec)

    def consumer(self, durable: str = "stage-a", **overrides: object) -> ConsumerSpec:
        settings: dict[str, object] = {"ack_wait_s": 2.0, "max_deliver": 5, "dead_letter_subject": self.dlq_subject}
        settings.update(overrides)
        return ConsumerSpec(self.in_stream, durable, self.in_subject, **settings)  # type: ignore[arg-type]


class Running:
    """Workers started by a test, stopped at teardown even when the test fails."""

    def __init__(self) -> None:
        self.workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(self, worker: Worker) -> asyncio.Task[None]:
        task = asyncio.create_task(worker.run())
        self.workers.append((worker, task))
        return task

    async def stop_all(self) -> None:
        for worker, task in self.workers:
            await worker.stop(grace_s=1.0)
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Running]:
    workers = Running()
    yield workers
    await workers.stop_all()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout_s} s: {what}")


async def stream_count(bus: Bus, stream: str) -> int:
    return (await bus.stream_info(stream)).state.messages


async def wait_count(bus: Bus, stream: str, count: int, timeout_s: float = 10.0) -> None:
    async def reached() -> bool:
        return await stream_count(bus, stream) >= count

    await eventually(reached, f"{stream} holds {count} message(s)", timeout_s)


async def ack_pending(bus: Bus, consumer: ConsumerSpec) -> tuple[int, int]:
    info = await bus.js.consumer_info(consumer.stream, consumer.durable)
    return int(info.num_ack_pending or 0), int(info.num_pending or 0)


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def test_chain_transforms_and_continues_trace(bus: Bus, running: Running, spans: InMemorySpanExporter) -> None:
    topic = Topic()
    await topic.provision(bus)
    seen_trace_ids: list[str] = []

    async def stage_a(delivery: Delivery) -> None:
        seen_trace_ids.append(current_trace_id())
        await bus.publish(topic.out_subject, delivery.data.upper(), msg_id=derived_msg_id(delivery.msg_id, "upper"))

    running.start(Worker(bus, topic.consumer(), stage_a, concurrency=2, batch=2, fetch_timeout_s=0.5))
    with tracer("test-bus").start_as_current_span("test-root") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        await bus.publish(topic.in_subject, b"hello bus", msg_id="chain-1")

    await wait_count(bus, topic.out_stream, 1)
    out = await bus.js.get_msg(topic.out_stream, 1)
    assert out.data == b"HELLO BUS"
    assert out.headers is not None
    assert out.headers[MSG_ID_HEADER] == derived_msg_id("chain-1", "upper")
    assert trace_id_of(out.headers["traceparent"]) == trace_id, "the output must continue the input's trace"
    assert seen_trace_ids == [trace_id], "the message's trace must be current inside the handler"

    async def consumer_span_ended() -> bool:
        return any(s.kind == SpanKind.CONSUMER and s.name == topic.in_subject for s in spans.get_finished_spans())

    await eventually(consumer_span_ended, "the CONSUMER span has ended")
    finished = spans.get_finished_spans()
    consumer_span = next(s for s in finished if s.kind == SpanKind.CONSUMER and s.name == topic.in_subject)
    producer_in = next(s for s in finished if s.kind == SpanKind.PRODUCER and s.name == f"publish {topic.in_subject}")
    assert consumer_span.context is not None and producer_in.context is not None
    assert consumer_span.context.trace_id == root.get_span_context().trace_id
    assert consumer_span.parent is not None and consumer_span.parent.span_id == producer_in.context.span_id
    assert producer_in.parent is not None and producer_in.parent.span_id == root.get_span_context().span_id


async def test_killed_worker_redelivers_and_effect_happens_once(
    bus: Bus, running: Running, tmp_path: Path, nats_url: str
) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("reverser", ack_wait_s=1.5)
    await bus.ensure(consumer)
    log_path = tmp_path / "worker-proc.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "services"), os.environ.get("PYTHONPATH")])),
    }
    with log_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_PROC),
            nats_url,
            topic.in_stream,
            consumer.durable,
            topic.in_subject,
            topic.out_subject,
            str(consumer.ack_wait_s),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        await bus.publish(topic.in_subject, b"abc", msg_id="kill-1")
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        except TimeoutError:
            raise AssertionError(f"worker process never published:\n{log_path.read_text()}") from None
        assert line.decode().split() == ["published", "kill-1", "False"], log_path.read_text()
    finally:
        proc.kill()  # SIGKILL: no nak, no cleanup; the message is only redelivered after ack_wait
        await proc.wait()
    assert await stream_count(bus, topic.out_stream) == 1

    redeliveries: list[tuple[int, bool]] = []

    async def reverse(delivery: Delivery) -> None:
        ack = await bus.publish(
            topic.out_subject, delivery.data[::-1], msg_id=derived_msg_id(delivery.msg_id, "reverse")
        )
        redeliveries.append((delivery.num_delivered, bool(ack.duplicate)))

    running.start(Worker(bus, consumer, reverse, concurrency=1, batch=1, fetch_timeout_s=0.5))

    async def redelivered() -> bool:
        return bool(redeliveries)

    await eventually(redelivered, "the input is redelivered to the second worker", timeout_s=15)
    num_delivered, duplicate = redeliveries[0]
    assert num_delivered >= 2
    assert duplicate, "the republished output must be dropped as a duplicate"

    async def settled() -> bool:
        return await ack_pending(bus, consumer) == (0, 0)

    await eventually(settled, "the redelivered input is acked")
    assert await stream_count(bus, topic.out_stream) == 1, "the effect must happen exactly once"
    out = await bus.js.get_msg(topic.out_stream, 1)
    assert out.data == b"cba"


async def test_poison_message_is_dead_lettered_after_max_deliver(bus: Bus, running: Running) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("poisoned", ack_wait_s=1.0, max_deliver=3)
    attempts: dict[bytes, list[int]] = {}

    async def always_fails(delivery: Delivery) -> None:
        attempts.setdefault(delivery.data, []).append(delivery.num_delivered)
        if delivery.data == b"permanent":
            raise PermanentError("cannot ever parse this")
        raise RuntimeError("boom\nwith a second line")

    running.start(Worker(bus, consumer, always_fails, concurrency=2, fetch_timeout_s=0.5, backoff_base_s=0.05))
    await bus.publish(topic.in_subject, b"poison", msg_id="poison-1", headers={"x-tenant": "t1"})
    await wait_count(bus, topic.dlq_stream, 1)
    dead = await bus.js.get_msg(topic.dlq_stream, 1)
    assert dead.data == b"poison"
    headers = dead.headers or {}
    assert headers[DLQ_SUBJECT_HEADER] == topic.in_subject
    assert headers[DLQ_STREAM_HEADER] == topic.in_stream
    assert headers[DLQ_SEQUENCE_HEADER] == "1"
    assert headers[DLQ_DELIVERIES_HEADER] == "3"
    assert headers[DLQ_ORIGINAL_MSG_ID_HEADER] == "poison-1"
    assert headers[DLQ_ERROR_HEADER] == "RuntimeError: boom with a second line"
    assert headers[MSG_ID_HEADER] == derived_msg_id("poison-1", "dead-letter")
    assert headers["x-tenant"] == "t1"
    assert attempts[b"poison"] == [1, 2, 3]

    # A PermanentError skips the retries.
    await bus.publish(topic.in_subject, b"permanent", msg_id="permanent-1")
    await wait_count(bus, topic.dlq_stream, 2)
    permanent = await bus.js.get_msg(topic.dlq_stream, 2)
    assert (permanent.headers or {})[DLQ_DELIVERIES_HEADER] == "1"
    assert "PermanentError: cannot ever parse this" in (permanent.headers or {})[DLQ_ERROR_HEADER]

    await asyncio.sleep(consumer.ack_wait_s + 0.5)  # longer than any redelivery would take
    assert attempts == {b"poison": [1, 2, 3], b"permanent": [1]}, "terminated messages must not come back"
    assert await ack_pending(bus, consumer) == (0, 0)
    assert await stream_count(bus, topic.dlq_stream) == 2


async def test_message_whose_handler_never_finishes_is_dead_lettered(bus: Bus, running: Running) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("hung", ack_wait_s=0.7, max_deliver=2)
    attempts: list[int] = []

    async def hangs(delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        await asyncio.sleep(3600)  # as if the process had died: no ack, no nak

    running.start(Worker(bus, consumer, hangs, concurrency=4, batch=1, fetch_timeout_s=0.3))
    await bus.publish(topic.in_subject, b"stuck", msg_id="stuck-1")
    await wait_count(bus, topic.dlq_stream, 1, timeout_s=10)
    dead = await bus.js.get_msg(topic.dlq_stream, 1)
    assert (dead.headers or {})[DLQ_DELIVERIES_HEADER] == "3"
    assert "never completed" in (dead.headers or {})[DLQ_ERROR_HEADER]
    assert attempts == [1, 2], "the extra server-side delivery dead-letters without running the handler"


async def test_duplicate_msg_id_is_dropped(bus: Bus) -> None:
    topic = Topic()
    await topic.provision(bus)
    first = await bus.publish(topic.in_subject, b"once", msg_id="dup-1")
    second = await bus.publish(topic.in_subject, b"once again", msg_id="dup-1")
    assert not first.duplicate
    assert second.duplicate is True
    assert second.seq == first.seq
    assert await stream_count(bus, topic.in_stream) == 1
    third = await bus.publish(topic.in_subject, b"other", msg_id="dup-2")
    assert not third.duplicate and third.seq == first.seq + 1


async def test_concurrency_limit_and_graceful_stop(bus: Bus, running: Running) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("limited", ack_wait_s=10.0)
    in_flight = 0
    peak = 0
    started: list[bytes] = []
    finished: dict[str, list[bytes]] = {"first": [], "second": []}

    def handler_for(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def slow(delivery: Delivery) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            started.append(delivery.data)
            try:
                await asyncio.sleep(0.5)
            finally:
                in_flight -= 1
            finished[name].append(delivery.data)

        return slow

    for i in range(12):
        await bus.publish(topic.in_subject, f"job-{i}".encode(), msg_id=f"job-{i}")
    first = Worker(bus, consumer, handler_for("first"), concurrency=3, batch=5, fetch_timeout_s=0.5)
    first_task = running.start(first)

    async def three_running() -> bool:
        return in_flight == 3

    await eventually(three_running, "3 handlers in flight")
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await first.stop(grace_s=5.0)
    assert time.monotonic() - t0 < 2.0, "stop waits for in-flight handlers, not for the grace period"
    assert first_task.done() and first_task.exception() is None
    assert in_flight == 0 and sorted(finished["first"]) == sorted(started), "in-flight handlers must finish"
    assert peak == 3
    assert 3 <= len(finished["first"]) < 12

    second = Worker(bus, consumer, handler_for("second"), concurrency=3, batch=5, fetch_timeout_s=0.5)
    running.start(second)

    async def all_done() -> bool:
        return len(finished["first"]) + len(finished["second"]) >= 12

    await eventually(all_done, "all 12 jobs handled", timeout_s=15)
    assert not set(finished["first"]) & set(finished["second"]), "jobs acked during stop must not come back"
    assert sorted(finished["first"] + finished["second"]) == sorted(f"job-{i}".encode() for i in range(12))
    assert peak == 3


async def test_stop_after_grace_naks_in_flight_for_quick_redelivery(bus: Bus, running: Running) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("impatient", ack_wait_s=30.0)  # redelivery within seconds can only come from the nak
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    first = Worker(bus, consumer, stuck, concurrency=1, batch=1, fetch_timeout_s=0.5)
    first_task = running.start(first)
    await bus.publish(topic.in_subject, b"long job", msg_id="long-1")
    await asyncio.wait_for(started.wait(), timeout=10)
    t0 = time.monotonic()
    await first.stop(grace_s=0.3)
    assert time.monotonic() - t0 < 1.5
    assert cancelled.is_set() and first_task.done()

    seen: list[int] = []

    async def quick(delivery: Delivery) -> None:
        seen.append(delivery.num_delivered)

    running.start(Worker(bus, consumer, quick, concurrency=1, batch=1, fetch_timeout_s=0.5))

    async def redelivered() -> bool:
        return bool(seen)

    await eventually(redelivered, "the nak'ed message reaches the next replica", timeout_s=5)
    assert seen == [2]


async def test_replicas_sharing_a_durable_split_the_work(bus: Bus, running: Running) -> None:
    topic = Topic()
    await topic.provision(bus)
    consumer = topic.consumer("shared", ack_wait_s=10.0)
    handled: list[tuple[str, bytes]] = []

    def handler_for(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def work(delivery: Delivery) -> None:
            await asyncio.sleep(0.05)
            handled.append((name, delivery.data))

        return work

    await bus.ensure(consumer)
    for i in range(20):
        await bus.publish(topic.in_subject, f"item-{i}".encode(), msg_id=f"item-{i}")
    for name in ("replica-1", "replica-2"):
        running.start(Worker(bus, consumer, handler_for(name), concurrency=2, batch=1, fetch_timeout_s=0.5))

    async def all_handled() -> bool:
        return len(handled) >= 20

    await eventually(all_handled, "20 items handled", timeout_s=15)
    assert sorted(data for _, data in handled) == sorted(f"item-{i}".encode() for i in range(20)), "each item once"
    assert {name for name, _ in handled} == {"replica-1", "replica-2"}


async def test_connect_to_closed_port_is_unavailable_quickly() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BusUnavailable) as caught:
        await Bus.connect(url, "nobody-home", connect_timeout_s=1.0)
    assert time.monotonic() - t0 < 3.0
    assert isinstance(caught.value, Unavailable)
    assert url in str(caught.value)


async def test_worker_survives_nats_restart(running: Running, tmp_path: Path) -> None:
    port = free_port()
    server = start_nats(tmp_path / "data", tmp_path / "nats.log", port=port)
    try:
        async with await Bus.connect(server.url, "test-restart", connect_timeout_s=5, reconnect_wait_s=0.2) as bus:
            topic = Topic()
            await topic.provision(bus)
            handled: list[bytes] = []

            async def record(delivery: Delivery) -> None:
                handled.append(delivery.data)

            worker = Worker(bus, topic.consumer("survivor"), record, fetch_timeout_s=0.3)
            task = running.start(worker)
            await bus.publish(topic.in_subject, b"before", msg_id="before")

            async def got_before() -> bool:
                return handled == [b"before"]

            await eventually(got_before, "the first message is handled")
            server.stop()
            await asyncio.sleep(0.5)
            server = start_nats(tmp_path / "data", tmp_path / "nats.log", port=port)

            async def published_after() -> bool:
                try:
                    await bus.publish(topic.in_subject, b"after", msg_id="after", timeout_s=1.0)
                except BusUnavailable:
                    return False
                return True

            await eventually(published_after, "publish succeeds after the restart", timeout_s=15)

            async def got_after() -> bool:
                return b"after" in handled

            await eventually(got_after, "the worker handles a message after the restart", timeout_s=15)
            assert not task.done(), "a reconnect must not end the worker loop"
            await worker.stop(grace_s=2.0)
            assert task.done() and task.exception() is None
    finally:
        server.stop()


async def test_ensure_is_idempotent_and_reports_conflicts(bus: Bus) -> None:
    topic = Topic()
    spec = StreamSpec(topic.in_stream, (topic.in_subject,), max_age_s=600, duplicate_window_s=30)
    await bus.ensure(spec)
    await bus.ensure(spec)
    await bus.ensure(StreamSpec(topic.in_stream, (topic.in_subject,), max_age_s=900, duplicate_window_s=30))
    info = await bus.stream_info(topic.in_stream)
    assert info.config.max_age == 900 and info.config.duplicate_window == 30
    with pytest.raises(BusRejected):
        await bus.ensure(StreamSpec(topic.in_stream, (topic.in_subject,), storage="memory", max_age_s=900))

    consumer = topic.consumer("provisioned")
    await bus.ensure(consumer)
    await bus.ensure(consumer)
    await bus.ensure(topic.consumer("provisioned", ack_wait_s=7.0))
    consumer_info = await bus.js.consumer_info(topic.in_stream, "provisioned")
    assert consumer_info.config.ack_wait == 7.0
    assert consumer_info.config.max_deliver == consumer.max_deliver + 1

    with pytest.raises(BusRejected, match="no JetStream stream"):
        await bus.publish(f"tessera.test.{topic.tid}.nowhere", b"x", msg_id="lost-1", timeout_s=1.0)
    with pytest.raises(ValueError):
        await bus.publish(topic.in_subject, b"x", msg_id="")


async def test_watch_from_each_start_point_and_read_recent(bus: Bus) -> None:
    topic = Topic()
    await topic.provision(bus)
    for i in range(5):
        await bus.publish(topic.in_subject, f"m{i}".encode(), msg_id=f"{topic.tid}-m{i}", headers={"k": str(i)})

    async def collect(**start: object) -> list[Received]:
        seen: list[Received] = []

        async def on(message: Received) -> None:
            seen.append(message)

        sub = await bus.watch(topic.in_subject, on, **start)  # type: ignore[arg-type]
        try:
            if start:
                await eventually(lambda: _true(len(seen) >= 5 - int(start.get("after_sequence", 0) or 0)), "caught up")
            else:
                await asyncio.sleep(0.3)
                await bus.publish(topic.in_subject, b"new", msg_id=f"{topic.tid}-new")
                await eventually(lambda: _true(bool(seen)), "a new message arrives")
        finally:
            await sub.unsubscribe()
            await sub.unsubscribe()  # idempotent
        return seen

    everything = await collect(replay_all=True)
    assert [m.data for m in everything[:5]] == [f"m{i}".encode() for i in range(5)]
    assert [m.stream_seq for m in everything[:5]] == [1, 2, 3, 4, 5]
    assert everything[2].headers["k"] == "2" and everything[2].subject == topic.in_subject
    assert everything[0].stored_at is not None
    assert [m.data for m in await collect(after_sequence=3)][:2] == [b"m3", b"m4"]
    assert [m.data for m in await collect()] == [b"new"], "the default is new messages only"
    recent = await bus.read_recent(topic.in_subject, everything[0].stored_at - dt.timedelta(seconds=1))
    assert [m.data for m in recent] == [*(f"m{i}".encode() for i in range(5)), b"new"]
    with pytest.raises(BusRejected, match="subscribe to") as caught:
        await bus.watch(f"tessera.test.{topic.tid}.nowhere", _ignore)
    assert caught.value.reason == "NOT_FOUND"


async def test_key_value_table(bus: Bus) -> None:
    table = await bus.key_value(f"TEST_KV_{uuid.uuid4().hex[:8]}")
    assert await table.keys() == [], "an empty bucket has no keys (nats-py's NoKeysError is not an error here)"
    assert await table.get("absent") is None
    assert await table.put("room-1", b"one") >= 1
    await table.put("room-2", b"two")
    assert await table.get("room-1") == b"one"
    assert sorted(await table.keys()) == ["room-1", "room-2"]
    await table.delete("room-1")
    assert await table.get("room-1") is None, "a deleted key reads as absent"
    assert await table.keys() == ["room-2"]
    with pytest.raises(BusRejected) as caught:
        await table.get("../x y")
    assert caught.value.reason == "INVALID_KEY", "a key the store refuses is not 'the bus is down'"


async def test_bus_errors_map_refusals_and_silence() -> None:
    import nats.errors
    import nats.js.errors

    with pytest.raises(BusUnavailable, match="doing x"), bus_errors("doing x"):
        raise nats.errors.TimeoutError
    with pytest.raises(BusUnavailable), bus_errors("doing x"):
        raise nats.errors.ConnectionClosedError
    with pytest.raises(BusRejected, match="no JetStream stream") as no_stream, bus_errors("doing x"):
        raise nats.js.errors.NoStreamResponseError
    assert no_stream.value.reason == "NO_STREAM"
    with pytest.raises(BusRejected, match="limit hit"), bus_errors("doing x"):
        raise nats.js.errors.APIError(description="limit hit")
    with pytest.raises(ValueError), bus_errors("doing x"):
        raise ValueError("not a bus failure: passes through")


def _true(value: bool) -> Awaitable[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


async def _ignore(message: Received) -> None:
    return None
