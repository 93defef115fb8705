"""The base of every typed client: a ``grpc.aio`` channel, whole-call deadlines, retries on UNAVAILABLE, streams.

A capability's client (``tessera.<cap>.client``) subclasses ``ServiceClient``, makes its stub on ``self.channel``
and writes one method per RPC over ``_unary`` or ``_server_stream``; its errors are a subclass of ``RpcCallError``
named in the class attribute ``error``.

Only UNAVAILABLE is retried, and only for calls marked idempotent: the service or a dependency was down or
restarting, and sending the request again cannot do its work twice. Any other code would come back the same, so it
is raised at once carrying the code, the message, the fields the server named and its ErrorInfo reason. A stream is
retried only before its first message: a retry after that would replay messages the caller has already seen.

A call's ``timeout_s`` is its whole deadline, retries and backoff included, and never outlives the deadline of the
request being served when the client is used inside a Tessera handler (``tessera.runtime.deadlines``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.runtime import deadlines
from tessera.runtime.errors import field_violations

log = logging.getLogger(__name__)

# Sent with every call; ("authorization", "Bearer <token>") when the client has a token.
Metadata = tuple[tuple[str, str], ...]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


@dataclass(frozen=True)
class RetryPolicy:
    """How UNAVAILABLE is retried: ``attempts`` calls in all, backoff from ``initial_backoff_s`` times ``multiplier``
    per retry up to ``max_backoff_s``, each delay shortened by up to ``jitter`` (a fraction) at random."""

    attempts: int = 4
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The delay before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        # Jitter spreads clients that failed together, so they do not come back together.
        return ceiling * (1 - self.jitter * rng.random())


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


class RpcCallError(Exception):
    """A call that failed: its status code, the server's message, the request fields it named, and attempts made.

    Capabilities subclass it (``class KeyframesError(RpcCallError)``) so that callers catch their service's errors by
    name; ``from_rpc`` builds the subclass it is called on."""

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        reason: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.method = method
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.reason = reason  # google.rpc.ErrorInfo reason, e.g. VIDEO_UNREADABLE
        self.attempts = attempts
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.method}: {self.code.name}: {self.message}"
        if self.fields:
            text += " (" + "; ".join(f"{name}: {why}" for name, why in self.fields.items()) + ")"
        if self.attempts > 1:
            text += f" after {self.attempts} attempts"
        return text

    @classmethod
    def from_rpc(cls, method: str, error: grpc.aio.AioRpcError, attempts: int) -> Self:
        return cls(
            method,
            error.code(),
            error.details() or "",
            fields=field_violations(error),
            reason=_reason(error),
            attempts=attempts,
        )


# Channel options for long-lived streams: reconnect within a second of a server coming back after a drain or crash.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def draining_or_lost(error: grpc.aio.AioRpcError) -> bool:
    """A stream that ended this way is worth opening again: UNAVAILABLE (DRAINING, or the connection was lost)."""
    return error.code() == grpc.StatusCode.UNAVAILABLE


def reason_of(error: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason a failed call carries, e.g. ``DRAINING``."""
    return _reason(error)


def _reason(error: grpc.aio.AioRpcError) -> str | None:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that disagree with the call's own status: ignore them, the code stands
        return None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None


class _Attempts:
    """One call's attempts against its deadline: decides, after each failure, whether to back off or to raise."""

    def __init__(
        self,
        method: str,
        timeout_s: float,
        retry: RetryPolicy,
        error: type[RpcCallError],
        rng: random.Random,
        logger: logging.Logger,
        on_retry: Callable[[], None] | None,
    ) -> None:
        self.method = method
        self.deadline = time.monotonic() + deadlines.bounded(timeout_s)
        self.retry = retry
        self.error = error
        self.rng = rng
        self.logger = logger
        self.on_retry = on_retry
        self.made = 0

    def next_timeout(self) -> float:
        """Counts an attempt; the time it has: what is left of the whole call's deadline."""
        self.made += 1
        return max(0.0, self.deadline - time.monotonic())

    async def backoff_or_raise(self, failure: grpc.aio.AioRpcError, retryable: bool) -> None:
        """Sleep before the next attempt, or raise ``failure`` as ``error`` when there is none to make."""
        if not retryable or failure.code() != grpc.StatusCode.UNAVAILABLE or self.made >= self.retry.attempts:
            raise self.error.from_rpc(self.method, failure, self.made) from failure
        delay = self.retry.backoff_s(self.made, self.rng)
        if time.monotonic() + delay >= self.deadline:  # no time left for another try within the call's deadline
            raise self.error.from_rpc(self.method, failure, self.made) from failure
        self.logger.info("%s: UNAVAILABLE (%s); retry %d in %.2f s", self.method, failure.details(), self.made, delay)
        if self.on_retry is not None:
            self.on_retry()
        await asyncio.sleep(delay)


async def unary_call(
    rpc: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
    request: _Request,
    *,
    method: str,
    timeout_s: float,
    retry: RetryPolicy = DEFAULT_RETRY,
    idempotent: bool = True,
    metadata: Metadata | None = None,
    error: type[RpcCallError] = RpcCallError,
    rng: random.Random | None = None,
    logger: logging.Logger = log,
    on_retry: Callable[[], None] | None = None,
) -> _Response:
    """One unary call within ``timeout_s`` (all attempts together), UNAVAILABLE retried when ``idempotent``.

    Failures are raised as ``error`` (an ``RpcCallError`` subclass) whose ``attempts`` says how many calls were sent.
    ``on_retry`` is called before each backoff (a client counts its retries with it); ``rng`` draws the jitter.
    """
    attempts = _Attempts(method, timeout_s, retry, error, rng or random.Random(), logger, on_retry)
    while True:
        timeout = attempts.next_timeout()
        try:
            return await rpc(request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as failure:
            await attempts.backoff_or_raise(failure, retryable=idempotent)


async def server_stream(
    rpc: grpc.aio.UnaryStreamMultiCallable[_Request, _Response],
    request: _Request,
    *,
    method: str,
    timeout_s: float,
    retry: RetryPolicy = DEFAULT_RETRY,
    idempotent: bool = True,
    metadata: Metadata | None = None,
    error: type[RpcCallError] = RpcCallError,
    rng: random.Random | None = None,
    logger: logging.Logger = log,
    on_retry: Callable[[], None] | None = None,
) -> AsyncGenerator[_Response, None]:
    """The messages of one server-streaming call within ``timeout_s``; UNAVAILABLE is retried (when ``idempotent``)
    only before the first message arrives.

    Read it under ``contextlib.aclosing``: closing the generator cancels the call, so a caller that stops reading
    early does not leave the server working for nobody.
    """
    attempts = _Attempts(method, timeout_s, retry, error, rng or random.Random(), logger, on_retry)
    while True:
        call = rpc(request, timeout=attempts.next_timeout(), metadata=metadata)
        received = False
        try:
            async for message in call:
                received = True
                yield message
            return
        except grpc.aio.AioRpcError as failure:
            await attempts.backoff_or_raise(failure, retryable=idempotent and not received)
        finally:
            call.cancel()  # a no-op on a call that has ended


class ServiceClient:
    """A typed client's channel and call defaults; subclasses add the stub and one method per RPC.

    ``timeout_s`` is the default deadline of a call (each method takes its own); ``token`` is sent as
    ``authorization: Bearer <token>`` for servers with ``TESSERA_AUTH_TOKEN`` set. ``retries`` counts the UNAVAILABLE
    retries this client has made. A subclass sets ``error`` to its ``RpcCallError`` subclass and ``log`` to its
    logger.
    """

    error: ClassVar[type[RpcCallError]] = RpcCallError
    log: ClassVar[logging.Logger] = logging.getLogger(__name__)

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = 120.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        token: str | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.channel = channel
        self.timeout_s = timeout_s
        self.retry = retry
        self.retries = 0
        self._metadata: Metadata | None = (("authorization", f"Bearer {token}"),) if token else None
        self._owned: grpc.aio.Channel | None = None  # set only when this client opened the channel
        self._rng = random.Random()

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        token: str | None = None,
    ) -> Self:
        """A client on its own channel to ``host:port`` (TLS with ``credentials``), closed by ``close``."""
        # A channel that failed to connect refuses calls until its next reconnect attempt; keeping that interval
        # within the retry backoff lets a retry reach a service that has come back.
        options = [
            ("grpc.initial_reconnect_backoff_ms", int(retry.initial_backoff_s * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(retry.initial_backoff_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(retry.max_backoff_s * 1000)),
        ]
        channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
        )
        client = cls(channel, timeout_s=timeout_s, retry=retry, token=token)
        client._owned = channel
        return client

    async def close(self) -> None:
        """Closes the channel if ``connect`` opened it; a channel passed in stays its owner's to close."""
        if self._owned is not None:
            await self._owned.close()
            self._owned = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    def _counted(self) -> None:
        self.retries += 1

    async def _unary(
        self,
        method: str,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout_s: float | None,
        *,
        idempotent: bool = True,
    ) -> _Response:
        """``unary_call`` with this client's deadline (unless ``timeout_s``), retry policy, token and error class."""
        return await unary_call(
            rpc,
            request,
            method=method,
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
            retry=self.retry,
            idempotent=idempotent,
            metadata=self._metadata,
            error=self.error,
            rng=self._rng,
            logger=self.log,
            on_retry=self._counted,
        )

    def _server_stream(
        self,
        method: str,
        rpc: grpc.aio.UnaryStreamMultiCallable[_Request, _Response],
        request: _Request,
        timeout_s: float | None,
        *,
        idempotent: bool = True,
    ) -> AsyncGenerator[_Response, None]:
        """``server_stream`` with this client's deadline (unless ``timeout_s``), retry policy, token and error class."""
        return server_stream(
            rpc,
            request,
            method=method,
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
            retry=self.retry,
            idempotent=idempotent,
            metadata=self._metadata,
            error=self.error,
            rng=self._rng,
            logger=self.log,
            on_retry=self._counted,
        )
