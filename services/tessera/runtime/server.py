"""A grpc.aio server builder: health, reflection, telemetry, auth, error mapping, deadlines and graceful drain.

Every Tessera service is built by ``build_server`` so that these behaviours exist once. A servicer raises
``TesseraError`` subclasses; the interceptor here turns them into statuses with field violations.

Drain (SIGTERM): NOT_SERVING for ``drain_delay_s`` so load balancers move new calls away; then the capability's
``on_drain`` hooks deliver what is in flight on its streams; then every open stream ends with UNAVAILABLE, reason
``DRAINING`` (a client reconnects at once: another replica serves it); unary calls get ``grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from prometheus_client import Counter, Histogram, start_http_server

from tessera.runtime import deadlines
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import TesseraError, Unavailable, to_grpc_status
from tessera.runtime.telemetry import current_trace_id

log = logging.getLogger("tessera.server")

REQUESTS = Counter("tessera_grpc_requests", "gRPC calls handled", ["method", "code"])
LATENCY = Histogram(
    "tessera_grpc_request_duration_seconds",
    "gRPC call latency",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

_UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Behavior = Callable[..., Any]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # the runtime class is not subscriptable
    Handler = grpc.RpcMethodHandler


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service: its full name (package.Service), the generated add_*_to_server and the servicer."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


def _rewrap(handler: Handler, wrap: Callable[[Behavior, bool, bool], Behavior]) -> Handler:
    """The same handler with its behaviour wrapped; the wrapper is told whether request/response stream."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False, False), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, False, True), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, True, False), handler.request_deserializer, handler.response_serializer
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True, True), handler.request_deserializer, handler.response_serializer
    )


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>``; health and reflection stay open for probes."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_UNAUTHENTICATED_PREFIXES):
            return handler
        presented = [
            value.encode() if isinstance(value, str) else value
            for key, value in handler_call_details.invocation_metadata or ()
            if key == "authorization"
        ]
        # Exactly one header: with two, which one a proxy or this server reads is not something to rely on.
        if len(presented) == 1 and hmac.compare_digest(presented[0], self._expected):
            return handler
        if len(presented) > 1:
            reason = "more than one authorization header"
        else:
            reason = "missing bearer token" if not presented else "invalid bearer token"

        def wrap(_: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
            if response_streaming:

                async def deny_stream(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
                    yield None  # pragma: no cover - abort raises

                return deny_stream

            async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

            return deny

        return _rewrap(handler, wrap)


DRAINING_MESSAGE = "the server is draining: reconnect now, another replica serves the call"


def draining_error() -> Unavailable:
    return Unavailable(DRAINING_MESSAGE, reason="DRAINING")


def not_serving_error() -> Unavailable:
    """A stream opened while the server drains: refused before anything was read (ErrorInfo NOT_SERVING)."""
    return Unavailable("the server is draining and takes no new streams: reconnect", reason="NOT_SERVING")


def not_ready_error(capability: str, then: str = "retry shortly") -> Unavailable:
    """A call refused before it read anything: the capability's models are still loading (ErrorInfo NOT_READY)."""
    return Unavailable(f"the {capability} models are not ready yet; {then}", reason="NOT_READY")


async def _settle(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` if it still runs and wait for it, so the handler's own cleanup (finally blocks) runs now;
    whatever it ended with is retrieved here (no "exception was never retrieved")."""
    if not future.done():
        future.cancel()
    with contextlib.suppress(BaseException):
        await future


async def _until_drained(items: AsyncIterator[Any], draining: asyncio.Event) -> AsyncIterator[Any]:
    """``items`` until they end or ``draining`` is set; then the handler is cancelled and the stream ends with
    UNAVAILABLE/DRAINING instead of hanging until the grace period cuts it. A call cancelled by its client cancels
    the handler too."""
    iterator = items.__aiter__()
    drained = asyncio.ensure_future(draining.wait())
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            await asyncio.wait({step, drained}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                await _settle(step)
                raise draining_error()
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        drained.cancel()
        if step is not None:
            await _settle(step)
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


async def _unless_drained(call: Awaitable[Any], draining: asyncio.Event) -> Any:
    """A client-streaming call's result, or UNAVAILABLE/DRAINING once ``draining`` is set (the handler cancelled).
    A call cancelled by its client cancels the handler too."""
    task = asyncio.ensure_future(call)
    drained = asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise draining_error()
    finally:
        drained.cancel()
        if not task.done():
            await _settle(task)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Metrics by method and code, the client's deadline made current, domain errors mapped to statuses, and
    streams ended with UNAVAILABLE/DRAINING when the server drains."""

    def __init__(self, draining: asyncio.Event | None = None) -> None:
        self.draining = draining or asyncio.Event()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        draining = self.draining

        def wrap(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
            if response_streaming:

                async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                    async with _observed(method, context):
                        if draining.is_set():
                            raise not_serving_error()
                        async for item in _until_drained(behavior(request, context), draining):
                            yield item

                return streaming

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                async with _observed(method, context):
                    if request_streaming:  # a client stream lasts as long as its client: cut it on drain
                        if draining.is_set():
                            raise not_serving_error()
                        return await _unless_drained(behavior(request, context), draining)
                    return await behavior(request, context)

            return unary

        return _rewrap(handler, wrap)


@contextlib.asynccontextmanager
async def _observed(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Count and time one call, make its deadline current, and turn exceptions into statuses."""
    started, token = time.perf_counter(), deadlines.set_remaining(context.time_remaining())
    code = "OK"
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        code = "CANCELLED"
        raise
    except grpc.aio.AbortError:
        current = context.code()
        code = current.name if isinstance(current, grpc.StatusCode) else "UNKNOWN"
        raise
    except TesseraError as exc:
        code = exc.code.name
        log.info("%s -> %s: %s", method, code, exc.message)
        status = to_grpc_status(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)
    except Exception:
        code = "INTERNAL"
        log.exception("unhandled error in %s", method)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error (trace id {current_trace_id() or 'none'})")
    finally:
        deadlines.reset(token)
        REQUESTS.labels(method, code).inc()
        LATENCY.labels(method, code).observe(time.perf_counter() - started)


@dataclass
class TesseraServer:
    """A started grpc.aio server; ``wait`` blocks until SIGTERM/SIGINT, then drains."""

    server: grpc.aio.Server
    health: HealthServicer
    settings: ServerSettings
    port: int
    service_names: list[str]
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    background: list[asyncio.Future[None]] = field(default_factory=list)
    unready: set[str] = field(default_factory=set)  # services still waiting for their dependencies
    started: asyncio.Event = field(default_factory=asyncio.Event)  # every on_start hook has returned
    drained: bool = False
    draining: asyncio.Event = field(default_factory=asyncio.Event)  # set: open streams end with UNAVAILABLE/DRAINING
    # Awaited after the drain delay and before streams are ended: a capability delivers what is in flight on them.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def set_serving(self, serving: bool, service: str = "") -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(service, status)

    async def drain(self) -> None:
        """Report NOT_SERVING, wait so load balancers notice, let the capability deliver what is in flight on its
        streams, end the streams with UNAVAILABLE/DRAINING, then stop accepting and let unary calls finish."""
        if self.drained:
            return
        self.drained = True
        log.info(
            "draining: NOT_SERVING for %.1f s, then %.1f s grace", self.settings.drain_delay_s, self.settings.grace_s
        )
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(self.settings.drain_delay_s)
        began = time.monotonic()
        for hook in self.on_drain:
            try:
                await asyncio.wait_for(hook(), max(0.0, self.settings.grace_s - (time.monotonic() - began)))
            except Exception:  # TimeoutError included: the streams end regardless
                log.exception("drain hook failed; ending streams anyway")
        self.draining.set()
        await self.server.stop(max(0.0, self.settings.grace_s - (time.monotonic() - began)))
        for task in self.background:
            task.cancel()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)

    async def stop_requested(self) -> None:
        """Returns once SIGTERM/SIGINT arrived (after ``install_signal_handlers``)."""
        await self._stopping.wait()

    async def wait(self) -> None:
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        done_wait = asyncio.ensure_future(self.server.wait_for_termination())
        await asyncio.wait({stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if self._stopping.is_set():
            await self.drain()
        await done_wait


async def build_server(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> TesseraServer:
    """Create, bind and start a server; every service is SERVING once this returns."""
    interceptors: list[grpc.aio.ServerInterceptor] = [aio_server_interceptor()]  # type: ignore[no-untyped-call]
    if settings.auth_token:
        interceptors.append(BearerAuthInterceptor(settings.auth_token))
    draining = asyncio.Event()
    interceptors.append(ObservabilityInterceptor(draining))
    interceptors.extend(extra_interceptors)
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.max_send_message_length", settings.max_send_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [svc.name for svc in services]
    for svc in services:
        svc.add_to_server(svc.servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file and settings.tls_key_file:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    await server.start()
    for name in ["", *names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s:%d", ", ".join(names) or "grpc.health.v1 only", settings.host, port)
    return TesseraServer(server, health, settings, port, names, draining=draining)
