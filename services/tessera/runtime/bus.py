"""The message bus: JetStream streams, durable pull workers and at-most-once effects, over nats-py.

Services declare their streams and consumers as specs and ``Bus.ensure`` them at start. Every publish carries a
``Nats-Msg-Id`` (JetStream drops repeats inside the stream's duplicate window) and the W3C trace context. A
``Worker`` runs a handler per message with explicit acks, delayed naks for retries and a dead-letter subject for
messages that keep failing. Delivery is at-least-once; a handler whose output publish uses
``derived_msg_id(delivery.msg_id, stage)`` makes its effect happen once even when its input is redelivered.
Gateways ``watch`` subjects (from a chosen point of the stream), ``read_recent`` history and keep tables in a
``key_value`` bucket. This is the only module that imports nats-py: every failure leaves it as ``BusUnavailable``
(the bus is down or did not answer in time) or ``BusRejected`` (it answered no), mapped in one place, ``bus_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

from tessera.runtime.errors import FailedPrecondition, Unavailable
from tessera.runtime.telemetry import extract_context, inject_headers, tracer

log = logging.getLogger(__name__)
_tracer = tracer("tessera.runtime.bus")

MSG_ID_HEADER = "Nats-Msg-Id"
# Headers on a dead-lettered copy; the payload is the original message's data, unchanged.
DLQ_SUBJECT_HEADER = "Tessera-Dlq-Subject"
DLQ_STREAM_HEADER = "Tessera-Dlq-Stream"
DLQ_SEQUENCE_HEADER = "Tessera-Dlq-Stream-Seq"
DLQ_DELIVERIES_HEADER = "Tessera-Dlq-Deliveries"
DLQ_ERROR_HEADER = "Tessera-Dlq-Error"
DLQ_ORIGINAL_MSG_ID_HEADER = "Tessera-Dlq-Original-Msg-Id"

_STREAM_CONFIG_CONFLICT = 10058  # JSStreamNameExistErr: the stream exists with a different configuration
_MAX_ERROR_HEADER_CHARS = 512


# Per-stage throughput and outcome, next to the consumer lag NATS itself reports (KEDA scales on that).
SETTLED = Counter("tessera_bus_messages", "messages settled by stage workers", ["consumer", "outcome"])
HANDLER_SECONDS = Histogram(
    "tessera_bus_handler_duration_seconds",
    "stage handler time for successful messages",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class BusUnavailable(Unavailable):
    """NATS cannot be reached, or did not answer in time; retrying later may succeed."""


class BusRejected(FailedPrecondition):
    """NATS answered but refused: no stream captures the subject, a spec conflicts with what exists, a limit hit."""


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it goes to the dead-letter subject at once."""


@contextlib.contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """The one translation of nats-py failures: a refusal is ``BusRejected``, silence or a lost link
    ``BusUnavailable``. ``what`` says what was being done, for the message."""
    try:
        yield
    except (BusRejected, BusUnavailable):
        raise
    except nats.js.errors.NoStreamResponseError as error:
        raise BusRejected(f"{what}: no JetStream stream captures the subject", reason="NO_STREAM") from error
    except nats.js.errors.NotFoundError as error:
        raise BusRejected(f"{what}: {error.description or 'not found'}", reason="NOT_FOUND") from error
    except nats.js.errors.APIError as error:
        raise BusRejected(f"{what}: {error.description or error}") from error
    except (nats.js.errors.InvalidKeyError, nats.js.errors.InvalidBucketNameError) as error:
        # The caller's input, not the bus: refused before anything was sent.
        raise BusRejected(f"{what}: {type(error).__name__}", reason="INVALID_KEY") from error
    except (TimeoutError, OSError, nats.errors.Error) as error:
        raise BusUnavailable(f"{what}: {error or type(error).__name__}") from error


@dataclass(frozen=True)
class Received:
    """A message seen on a watched subject or in a history read, in the bus's own terms (no nats-py types)."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream_seq: int  # position in its stream (0 for a message that came from no stream)
    stored_at: dt.datetime | None  # when the stream stored it (UTC)

    @classmethod
    def of(cls, msg: Msg) -> Received:
        seq, stored = 0, None
        with contextlib.suppress(nats.errors.NotJSMessageError, AttributeError, TypeError):
            meta = msg.metadata
            seq, stored = int(meta.sequence.stream), meta.timestamp
        return cls(msg.subject, msg.data, dict(msg.headers or {}), seq, stored)


OnMessage = Callable[[Received], Awaitable[None]]


class Subscription:
    """A watch started by ``Bus.watch``; ``unsubscribe`` ends it (idempotent, never raises)."""

    def __init__(self, sub: Any, subject: str) -> None:
        self._sub = sub
        self.subject = subject
        self._done = False

    async def pending(self) -> int:
        """Messages delivered plus those the server still had to deliver when it started: what a catch-up awaits."""
        with bus_errors(f"consumer info of {self.subject!r}"):
            info = await self._sub.consumer_info()
        return int(info.num_pending or 0) + int(info.delivered.consumer_seq or 0)

    async def unsubscribe(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class KeyValueTable:
    """A JetStream key-value bucket of byte values: what services share as a table that survives restarts."""

    def __init__(self, kv: Any, bucket: str) -> None:
        self._kv = kv
        self.bucket = bucket

    async def get(self, key: str) -> bytes | None:
        """The value, or None when the key is absent or deleted."""
        with bus_errors(f"{self.bucket} get"):
            try:
                entry = await self._kv.get(key)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                return None
        value: bytes | None = entry.value
        return value or None

    async def put(self, key: str, value: bytes) -> int:
        """Store ``value``; returns the revision."""
        with bus_errors(f"{self.bucket} put"):
            return int(await self._kv.put(key, value))

    async def delete(self, key: str) -> None:
        with bus_errors(f"{self.bucket} delete"):
            await self._kv.delete(key)

    async def keys(self) -> list[str]:
        """Every live key (none for an empty bucket)."""
        with bus_errors(f"{self.bucket} keys"):
            try:
                found: list[str] = await self._kv.keys()
            except nats.js.errors.NoKeysError:
                return []
        return found


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream, limits-based retention. ``max_age_s`` 0 and ``max_bytes`` -1 mean unlimited."""

    name: str
    subjects: tuple[str, ...]
    storage: Literal["file", "memory"] = "file"
    max_age_s: float = 7 * 24 * 3600.0
    max_bytes: int = -1
    duplicate_window_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " .*>"):
            raise ValueError(f"stream name {self.name!r} must be non-empty without spaces, '.', '*' or '>'")
        if not self.subjects:
            raise ValueError(f"stream {self.name}: at least one subject is required")
        if self.duplicate_window_s <= 0:
            raise ValueError(f"stream {self.name}: duplicate_window_s must be > 0 (it is what drops repeats)")
        if self.max_age_s and self.duplicate_window_s > self.max_age_s:
            raise ValueError(f"stream {self.name}: duplicate_window_s must not exceed max_age_s")

    def to_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE if self.storage == "file" else api.StorageType.MEMORY,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window_s,
            num_replicas=1,
        )


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer with explicit acks.

    ``max_deliver`` is how many times the handler is tried. The server-side limit is one more, so a message whose
    handler kept crashing the process (no nak ever sent) still comes back once to be dead-lettered.
    """

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000
    dead_letter_subject: str | None = None

    def __post_init__(self) -> None:
        if not self.durable or any(c in self.durable for c in " .*>"):
            raise ValueError(f"durable name {self.durable!r} must be non-empty without spaces, '.', '*' or '>'")
        if self.max_deliver < 1:
            raise ValueError(f"consumer {self.durable}: max_deliver must be >= 1")
        if self.ack_wait_s <= 0 or self.max_ack_pending < 1:
            raise ValueError(f"consumer {self.durable}: ack_wait_s and max_ack_pending must be positive")

    def to_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver + 1,
            max_ack_pending=self.max_ack_pending,
        )


def derived_msg_id(input_msg_id: str, stage: str) -> str:
    """The msg id for what ``stage`` publishes in response to ``input_msg_id``: the same inputs give the same id.

    Hashed so ids stay short along a chain of stages; the stage prefix keeps them readable in traces.
    """
    if not input_msg_id:
        raise ValueError("input_msg_id must be non-empty")
    if not stage or any(c.isspace() for c in stage):
        raise ValueError(f"stage {stage!r} must be non-empty without whitespace")
    digest = hashlib.blake2b(f"{stage}\x00{input_msg_id}".encode(), digest_size=16).hexdigest()
    return f"{stage}-{digest}"


def _header_safe(text: str, limit: int = _MAX_ERROR_HEADER_CHARS) -> str:
    # Header values must be one line; error texts often are not.
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Bus:
    """One NATS connection with its JetStream context. Make it with ``await Bus.connect(...)``."""

    def __init__(self, nc: NatsClient, name: str) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self.name = name

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        *,
        connect_timeout_s: float = 5.0,
        reconnect_wait_s: float = 1.0,
    ) -> Bus:
        """Connect, or raise ``BusUnavailable`` after ``connect_timeout_s``. Once connected, it reconnects forever."""
        last_error: list[BaseException] = []

        async def on_error(error: Exception) -> None:
            last_error[:] = [error]
            log.warning("nats %s: %s", name, error or type(error).__name__)

        async def on_disconnected() -> None:
            log.warning("nats %s: disconnected from %s", name, url)

        async def on_reconnected() -> None:
            log.info("nats %s: reconnected to %s", name, url)

        nc = NatsClient()
        try:
            # nats-py retries a refused first connect for minutes; one overall deadline keeps start-up failures quick.
            await asyncio.wait_for(
                nc.connect(
                    url,
                    name=name,
                    connect_timeout=connect_timeout_s,  # type: ignore[arg-type]  # annotated int, takes seconds
                    reconnect_time_wait=reconnect_wait_s,  # type: ignore[arg-type]  # annotated int, takes seconds
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                ),
                timeout=connect_timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as error:
            with contextlib.suppress(Exception):
                await nc.close()
            cause = last_error[0] if last_error else error
            raise BusUnavailable(
                f"cannot connect to NATS at {url} within {connect_timeout_s:g} s: {cause or type(cause).__name__}",
                reason="NATS_UNREACHABLE",
            ) from error
        return cls(nc, name)

    @property
    def nc(self) -> NatsClient:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    @property
    def is_closed(self) -> bool:
        return bool(self._nc.is_closed)

    async def close(self) -> None:
        """Flush what is buffered (acks, naks) and close. Stop workers first."""
        if self._nc.is_closed:
            return
        if self._nc.is_connected:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._nc.flush(timeout=2)
        await self._nc.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ensure(self, spec: StreamSpec | ConsumerSpec) -> None:
        """Create the stream or consumer, or update it to match the spec; a no-op when it already matches."""
        with bus_errors(f"cannot ensure {_describe(spec)}"):
            if isinstance(spec, StreamSpec):
                await self._ensure_stream(spec)
            else:
                # CONSUMER.CREATE without an action is create-or-update on the server.
                await self._js.add_consumer(spec.stream, config=spec.to_config())

    async def _ensure_stream(self, spec: StreamSpec) -> None:
        try:
            await self._js.add_stream(spec.to_config())
        except nats.js.errors.BadRequestError as error:
            if error.err_code != _STREAM_CONFIG_CONFLICT:
                raise
            await self._js.update_stream(spec.to_config())

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> api.StreamInfo:
        with bus_errors(f"stream {name}"):
            return await self._js.stream_info(name, subjects_filter=subjects_filter)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> api.PubAck:
        """Publish to JetStream and wait for the PubAck; ``ack.duplicate`` is true when ``msg_id`` was seen already.

        A producer span wraps the publish so the message carries a trace context even when no span is current.
        """
        if not msg_id:
            raise ValueError("msg_id must be non-empty: it is what de-duplicates retried publishes")
        with _tracer.start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": subject,
                "messaging.message.id": msg_id,
            },
        ) as span:
            all_headers = inject_headers(dict(headers or {}))
            all_headers[MSG_ID_HEADER] = msg_id
            with bus_errors(f"publish to {subject!r} (PubAck within {timeout_s:g} s)"):
                ack = await self._js.publish(subject, data, timeout=timeout_s, headers=all_headers)
            span.set_attribute("messaging.nats.duplicate", bool(ack.duplicate))
            return ack

    async def watch(
        self,
        subject: str,
        callback: OnMessage,
        *,
        after_sequence: int | None = None,
        since: dt.datetime | None = None,
        replay_all: bool = False,
    ) -> Subscription:
        """An ephemeral, ordered push subscription to ``subject`` (for gateways fanning results out to their own
        clients): new messages by default, else everything, everything after a stream sequence, or since a time.
        nats-py recreates it after gaps and reconnects."""
        config = api.ConsumerConfig()
        if replay_all:
            config.deliver_policy = api.DeliverPolicy.ALL
        elif after_sequence is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = after_sequence + 1
        elif since is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = since
        else:
            config.deliver_policy = api.DeliverPolicy.NEW

        async def deliver(msg: Msg) -> None:
            await callback(Received.of(msg))

        with bus_errors(f"subscribe to {subject!r}"):
            sub = await self._js.subscribe(subject, cb=deliver, ordered_consumer=True, config=config)
        return Subscription(sub, subject)

    async def read_recent(self, subject: str, since: dt.datetime, timeout_s: float = 3.0) -> list[Received]:
        """Messages on ``subject`` stored since ``since``: a bounded catch-up read (state rebuilt after a restart).
        Returns as many as the server reported when the read started, or what arrived within ``timeout_s``."""
        found: list[Received] = []
        arrived = asyncio.Event()

        async def collect(message: Received) -> None:
            found.append(message)
            arrived.set()

        sub = await self.watch(subject, collect, since=since)
        try:
            target = await sub.pending()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while len(found) < target and loop.time() < deadline:
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), max(0.01, deadline - loop.time()))
        finally:
            await sub.unsubscribe()
        return found

    async def last_message(self, stream: str, subject: str) -> bytes | None:
        """The payload of the newest message stored on ``subject`` (a direct lookup by subject, no consumer), or
        None when the stream holds none."""
        with bus_errors(f"last message on {subject!r}"):
            try:
                message = await self._js.get_last_msg(stream, subject)
            except nats.js.errors.NotFoundError:
                return None
        return bytes(message.data or b"")

    async def key_value(self, bucket: str, *, history: int = 1) -> KeyValueTable:
        """The key-value bucket ``bucket``, created on first use."""
        with bus_errors(f"key-value bucket {bucket}"):
            kv = await self._js.create_key_value(bucket=bucket, history=history)
        return KeyValueTable(kv, bucket)


class Delivery:
    """One delivery of a message to a handler. ``msg_id`` is stable across redeliveries of the same message."""

    __slots__ = ("_msg", "data", "headers", "msg_id", "num_delivered", "stream", "stream_seq", "subject")

    def __init__(self, msg: Msg) -> None:
        meta = msg.metadata
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        self.stream: str = meta.stream
        self.stream_seq: int = meta.sequence.stream
        self.num_delivered: int = meta.num_delivered
        # A producer that set no Nats-Msg-Id still gets a stable id, so derived ids work for its messages too.
        self.msg_id: str = self.headers.get(MSG_ID_HEADER) or f"{meta.stream}:{meta.sequence.stream}"

    async def in_progress(self) -> None:
        """Tell the server the handler is still working, restarting the ack-wait timer (for long handlers)."""
        await self._msg.in_progress()

    def __repr__(self) -> str:
        return f"Delivery({self.subject!r}, msg_id={self.msg_id!r}, num_delivered={self.num_delivered})"


Handler = Callable[[Delivery], Awaitable[None]]


class Worker:
    """A durable pull-consumer loop: ``await worker.run()`` until ``await worker.stop(grace_s)``.

    Replicas that share a durable split its messages. It fetches only as many messages as it has free handler
    slots, so nothing sits unacked in a busy replica while another is idle. A stopped worker does not run again;
    make a new one.
    """

    def __init__(
        self,
        bus: Bus,
        consumer: ConsumerSpec,
        handler: Handler,
        *,
        concurrency: int = 1,
        batch: int = 10,
        fetch_timeout_s: float = 1.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be >= 1")
        if fetch_timeout_s <= 0:
            raise ValueError("fetch_timeout_s must be > 0")
        self._bus = bus
        self.consumer = consumer
        self._handler = handler
        self._concurrency = concurrency
        self._batch = batch
        self._fetch_timeout_s = fetch_timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._fetch_task: asyncio.Task[list[Msg]] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def nak_delay_s(self, num_delivered: int) -> float:
        """Exponential backoff from ``backoff_base_s``, capped at ``backoff_max_s``."""
        return float(min(self._backoff_max_s, self._backoff_base_s * math.pow(2, max(0, num_delivered - 1))))

    async def run(self) -> None:
        """Fetch and handle messages until ``stop``; raise ``BusUnavailable`` only if the connection is closed."""
        if self._running:
            raise RuntimeError(f"worker for {self.consumer.durable} is already running")
        self._running = True
        self._finished.clear()
        try:
            await self._bus.ensure(self.consumer)
            sub = await self._bus.js.pull_subscribe_bind(durable=self.consumer.durable, stream=self.consumer.stream)
            try:
                await self._fetch_loop(sub)
                # Stopping: let in-flight handlers finish; stop() cancels them (and they nak) when grace runs out.
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        finally:
            self._cancel_all()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            self._running = False
            self._finished.set()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop fetching; wait up to ``grace_s`` for in-flight handlers, then cancel and nak them; return."""
        self._stopping.set()
        if not self._running:
            return
        try:
            await asyncio.wait_for(self._finished.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning(
                "worker %s: %d handler(s) still running after %.1f s grace; naking them",
                self.consumer.durable,
                len(self._tasks),
                grace_s,
            )
            self._cancel_all()
            await self._finished.wait()

    def _cancel_all(self) -> None:
        if self._fetch_task is not None:
            self._fetch_task.cancel()
        for task in self._tasks:
            task.cancel()

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription) -> None:
        failures = 0
        while not self._stopping.is_set():
            held = await self._take_slots()
            if held == 0:
                break
            try:
                msgs = await self._fetch(sub, held)
                failures = 0
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not self._stopping.is_set() or (current is not None and current.cancelling()):
                    raise  # run() itself was cancelled, not just the fetch by stop()
                msgs = []
            except (nats.errors.TimeoutError, TimeoutError):
                msgs = []  # nothing to do within fetch_timeout_s
            except nats.errors.ConnectionClosedError as error:
                self._release(held)
                raise BusUnavailable(f"worker {self.consumer.durable}: connection closed") from error
            except (nats.errors.Error, OSError) as error:
                # Reconnecting, a deleted consumer, a leader change: log and retry with backoff rather than die.
                failures += 1
                self._release(held)
                await self._after_fetch_error(error, failures)
                continue
            self._release(held - len(msgs))
            for msg in msgs:
                if self._stopping.is_set():
                    # Fetched while stopping: hand it straight back so another replica takes it now.
                    await self._settle(msg.nak(), msg, "nak")
                    self._release(1)
                    continue
                task = asyncio.create_task(self._handle(msg), name=f"bus-handler-{self.consumer.durable}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _fetch(self, sub: JetStreamContext.PullSubscription, count: int) -> list[Msg]:
        # A task of its own so stop() can cancel a fetch that would outlast the grace period.
        self._fetch_task = asyncio.create_task(sub.fetch(count, timeout=self._fetch_timeout_s))
        try:
            return await self._fetch_task
        finally:
            self._fetch_task = None

    async def _after_fetch_error(self, error: BaseException, failures: int) -> None:
        delay = min(5.0, 0.1 * 2**failures)
        log.warning(
            "worker %s: fetch failed (%s: %s); retrying in %.1f s",
            self.consumer.durable,
            type(error).__name__,
            error,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        if isinstance(error, nats.js.errors.APIError) and not self._stopping.is_set():
            # The consumer may have been deleted under us; putting it back is idempotent.
            with contextlib.suppress(BusRejected, BusUnavailable):
                await self._bus.ensure(self.consumer)

    async def _take_slots(self) -> int:
        """Wait for one free handler slot (0 when stopping first), then take up to ``batch`` that are free now."""
        if self._slots.locked():
            acquire = asyncio.ensure_future(self._slots.acquire())
            stopping = asyncio.ensure_future(self._stopping.wait())
            done, _ = await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if acquire not in done:
                acquire.cancel()
                return 0
        else:
            await self._slots.acquire()
        held = 1
        while held < self._batch and not self._slots.locked():
            await self._slots.acquire()  # free, so this does not wait
            held += 1
        return held

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _handle(self, msg: Msg) -> None:
        try:
            delivery = Delivery(msg)
            parent = extract_context(delivery.headers)
            with _tracer.start_as_current_span(
                delivery.subject,
                context=parent,
                kind=SpanKind.CONSUMER,
                record_exception=False,
                set_status_on_exception=False,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": delivery.subject,
                    "messaging.consumer.group.name": self.consumer.durable,
                    "messaging.message.id": delivery.msg_id,
                    "messaging.nats.delivery_count": delivery.num_delivered,
                    "messaging.nats.stream_sequence": delivery.stream_seq,
                },
            ) as span:
                await self._process(msg, delivery, span)
        except asyncio.CancelledError:
            # Grace ran out during stop(): give the message back at once instead of waiting out ack_wait.
            await self._settle(msg.nak(), msg, "nak")
            raise
        finally:
            self._slots.release()

    async def _process(self, msg: Msg, delivery: Delivery, span: trace.Span) -> None:
        if delivery.num_delivered > self.consumer.max_deliver:
            # The server's one extra delivery: earlier attempts never reported back (the process died or hung).
            await self._dead_letter(msg, delivery, "handler never completed: retries exhausted without a result")
            return
        started = time.perf_counter()
        try:
            await self._handler(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _header_safe(str(error) or type(error).__name__, 200)))
            reason = f"{type(error).__name__}: {error}"
            if isinstance(error, PermanentError) or delivery.num_delivered >= self.consumer.max_deliver:
                await self._dead_letter(msg, delivery, reason)
                return
            delay = self.nak_delay_s(delivery.num_delivered)
            log.warning(
                "worker %s: handler failed on %s (delivery %d/%d), retrying in %.1f s: %s",
                self.consumer.durable,
                delivery.subject,
                delivery.num_delivered,
                self.consumer.max_deliver,
                delay,
                reason,
                exc_info=error,
            )
            await self._settle(msg.nak(delay=delay), msg, "nak")
            return
        HANDLER_SECONDS.labels(self.consumer.durable).observe(time.perf_counter() - started)
        # ack_sync so that "handler returned" reliably means "will not be redelivered" once this returns.
        await self._settle(msg.ack_sync(timeout=5.0), msg, "ack")

    async def _dead_letter(self, msg: Msg, delivery: Delivery, reason: str) -> None:
        subject = self.consumer.dead_letter_subject
        if subject is None:
            log.error(
                "worker %s: dropping %s seq %d after %d deliveries (no dead-letter subject): %s",
                self.consumer.durable,
                delivery.subject,
                delivery.stream_seq,
                delivery.num_delivered,
                reason,
            )
            await self._settle(msg.term(), msg, "term")
            return
        headers = {k: v for k, v in delivery.headers.items() if not k.startswith("Nats-") and k != "traceparent"}
        headers.update(
            {
                DLQ_SUBJECT_HEADER: delivery.subject,
                DLQ_STREAM_HEADER: delivery.stream,
                DLQ_SEQUENCE_HEADER: str(delivery.stream_seq),
                DLQ_DELIVERIES_HEADER: str(delivery.num_delivered),
                DLQ_ERROR_HEADER: _header_safe(reason),
                DLQ_ORIGINAL_MSG_ID_HEADER: delivery.msg_id,
            }
        )
        try:
            await self._bus.publish(
                subject, delivery.data, msg_id=derived_msg_id(delivery.msg_id, "dead-letter"), headers=headers
            )
        except (BusUnavailable, BusRejected) as error:
            # Not terminated: the message stays in its stream and, while deliveries remain, comes back.
            log.error(
                "worker %s: cannot dead-letter %s seq %d to %s: %s",
                self.consumer.durable,
                delivery.subject,
                delivery.stream_seq,
                subject,
                error,
            )
            await self._settle(msg.nak(delay=self.nak_delay_s(delivery.num_delivered)), msg, "nak")
            return
        log.warning(
            "worker %s: dead-lettered %s seq %d to %s after %d deliveries: %s",
            self.consumer.durable,
            delivery.subject,
            delivery.stream_seq,
            subject,
            delivery.num_delivered,
            reason,
        )
        await self._settle(msg.term(), msg, "term")

    async def _settle(self, action: Awaitable[object], msg: Msg, what: str) -> None:
        SETTLED.labels(self.consumer.durable, what).inc()
        # A lost ack/nak/term only means a redelivery after ack_wait, which derived msg ids make harmless.
        try:
            await action
        except (nats.errors.Error, TimeoutError, OSError) as error:
            log.warning("worker %s: %s of %s failed: %s", self.consumer.durable, what, msg.subject, error)


def _describe(spec: StreamSpec | ConsumerSpec) -> str:
    if isinstance(spec, StreamSpec):
        return f"stream {spec.name} ({', '.join(spec.subjects)})"
    return f"consumer {spec.stream}/{spec.durable} ({spec.filter_subject})"
