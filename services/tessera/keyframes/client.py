"""A typed client for the keyframe service: per-call deadlines, bounded retries on UNAVAILABLE, a progress stream.

Used by the demo and the tests. Every KeyframeService RPC only reads (a selection leaves nothing on the server but
warm caches), so every call is idempotent and may be sent again. Only UNAVAILABLE is retried: the service or a
dependency was down or restarting. Any other code would come back the same, so it is raised at once as a
``KeyframesError`` carrying the code, the message and the fields the server named.

A call's ``timeout_s`` is its whole deadline, retries and backoff included, and never outlives the deadline of the
request being served when the client is used inside a Tessera handler (``tessera.runtime.deadlines``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.common.v1 import common_pb2
from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.runtime import deadlines
from tessera.runtime.errors import field_violations

log = logging.getLogger("tessera.keyframes.client")

# A path or URI under the server's media roots, or the video's bytes sent inline.
VideoInput = str | Path | bytes
# A ground-truth scene: its segments as (start_ms, end_ms), or the proto.
SceneInput = pb.Scene | Sequence[tuple[int, int]]

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


class KeyframesError(Exception):
    """A call that failed: its status code, the server's message, the request fields it named, and attempts made."""

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
    def from_rpc(cls, method: str, error: grpc.aio.AioRpcError, attempts: int) -> KeyframesError:
        return cls(
            method,
            error.code(),
            error.details() or "",
            fields=field_violations(error),
            reason=_reason(error),
            attempts=attempts,
        )


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


def selection_request(
    video: VideoInput,
    query: str,
    k: int,
    *,
    strategy: pb.Strategy.ValueType = pb.STRATEGY_FOCUS,
    sampling_fps: float = 0.0,
    focus: pb.FocusOptions | None = None,
) -> pb.SelectKeyframesRequest:
    """The request the select calls send; the server checks every bound and names the field it rejects."""
    source = (
        common_pb2.MediaSource(inline_data=video)
        if isinstance(video, bytes)
        else common_pb2.MediaSource(uri=str(video))
    )
    return pb.SelectKeyframesRequest(
        video=source, query=query, k=k, strategy=strategy, sampling_fps=sampling_fps, focus=focus
    )


def evaluation_request(timestamps_ms: Iterable[int], scenes: Iterable[SceneInput]) -> pb.EvaluateSelectionRequest:
    return pb.EvaluateSelectionRequest(
        timestamps_ms=list(timestamps_ms),
        scenes=[
            scene
            if isinstance(scene, pb.Scene)
            else pb.Scene(segments=[common_pb2.TimeRange(start_ms=a, end_ms=b) for a, b in scene])
            for scene in scenes
        ],
    )


class KeyframesClient:
    """KeyframeService over a ``grpc.aio`` channel: ``select``, ``stream_select``, ``evaluate``.

    ``timeout_s`` is the default deadline of a call (each method takes its own); ``token`` is sent as
    ``authorization: Bearer <token>`` for servers with ``TESSERA_AUTH_TOKEN`` set. ``retries`` counts the UNAVAILABLE
    retries this client has made.
    """

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
        self.stub: pb_grpc.KeyframeServiceAsyncStub = pb_grpc.KeyframeServiceStub(channel)
        self.timeout_s = timeout_s
        self.retry = retry
        self.retries = 0
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._channel: grpc.aio.Channel | None = None  # set only when this client opened it
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
    ) -> KeyframesClient:
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
        client._channel = channel
        return client

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> KeyframesClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def select(
        self,
        video: VideoInput,
        query: str,
        k: int,
        *,
        strategy: pb.Strategy.ValueType = pb.STRATEGY_FOCUS,
        sampling_fps: float = 0.0,
        focus: pb.FocusOptions | None = None,
        timeout_s: float | None = None,
        on_progress: Callable[[pb.Progress], None] | None = None,
    ) -> pb.SelectKeyframesResponse:
        """``k`` frames of ``video`` for ``query``, sorted by time; with ``on_progress``, over the streaming RPC."""
        request = selection_request(video, query, k, strategy=strategy, sampling_fps=sampling_fps, focus=focus)
        if on_progress is None:
            return await self._unary("SelectKeyframes", self.stub.SelectKeyframes, request, timeout_s)
        # aclosing: leaving at the result must end the stream's call now, not when the generator is collected.
        async with contextlib.aclosing(self._stream(request, timeout_s)) as events:
            async for event in events:
                if isinstance(event, pb.Progress):
                    on_progress(event)
                else:
                    return event
        raise AssertionError("unreachable: the stream ends with its result or raises")

    async def stream_select(
        self,
        video: VideoInput,
        query: str,
        k: int,
        *,
        strategy: pb.Strategy.ValueType = pb.STRATEGY_FOCUS,
        sampling_fps: float = 0.0,
        focus: pb.FocusOptions | None = None,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[pb.Progress | pb.SelectKeyframesResponse, None]:
        """``Progress`` events, then the ``SelectKeyframesResponse`` as the last item.

        UNAVAILABLE is retried only before the first event arrives: a retry after that would replay progress the
        caller has already seen.
        """
        request = selection_request(video, query, k, strategy=strategy, sampling_fps=sampling_fps, focus=focus)
        async with contextlib.aclosing(self._stream(request, timeout_s)) as events:
            async for event in events:
                yield event

    async def evaluate(
        self, timestamps_ms: Iterable[int], scenes: Iterable[SceneInput], *, timeout_s: float | None = None
    ) -> pb.EvaluateSelectionResponse:
        """KFS-Bench scores (KFR, SHR, BSR, BDS, UKSS, hits per scene) of ``timestamps_ms`` against ``scenes``."""
        request = evaluation_request(timestamps_ms, scenes)
        return await self._unary("EvaluateSelection", self.stub.EvaluateSelection, request, timeout_s)

    def _deadline(self, timeout_s: float | None) -> float:
        budget = deadlines.bounded(self.timeout_s if timeout_s is None else timeout_s)
        return time.monotonic() + budget

    async def _backoff_or_raise(
        self, method: str, error: grpc.aio.AioRpcError, attempt: int, deadline: float, retryable: bool
    ) -> None:
        """Sleep before the next attempt, or raise ``error`` as a KeyframesError when there is none to make."""
        if not retryable or error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retry.attempts:
            raise KeyframesError.from_rpc(method, error, attempt) from error
        delay = self.retry.backoff_s(attempt, self._rng)
        if time.monotonic() + delay >= deadline:  # no time left for another try within the call's deadline
            raise KeyframesError.from_rpc(method, error, attempt) from error
        log.info("%s: UNAVAILABLE (%s); retry %d in %.2f s", method, error.details(), attempt, delay)
        self.retries += 1
        await asyncio.sleep(delay)

    async def _unary(
        self,
        method: str,
        rpc: Callable[..., Awaitable[_Response]],
        request: pb.SelectKeyframesRequest | pb.EvaluateSelectionRequest,
        timeout_s: float | None,
    ) -> _Response:
        deadline = self._deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await rpc(request, timeout=max(0.0, deadline - time.monotonic()), metadata=self._metadata)
            except grpc.aio.AioRpcError as error:
                await self._backoff_or_raise(method, error, attempt, deadline, retryable=True)

    async def _stream(
        self, request: pb.SelectKeyframesRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.Progress | pb.SelectKeyframesResponse, None]:
        method = "StreamSelectKeyframes"
        deadline = self._deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            call = self.stub.StreamSelectKeyframes(
                request, timeout=max(0.0, deadline - time.monotonic()), metadata=self._metadata
            )
            received = False
            try:
                async for event in call:
                    received = True
                    if event.WhichOneof("event") == "result":
                        yield event.result
                        return
                    yield event.progress
                raise KeyframesError(method, grpc.StatusCode.INTERNAL, "the stream ended without a result")
            except grpc.aio.AioRpcError as error:
                await self._backoff_or_raise(method, error, attempt, deadline, retryable=not received)
            finally:
                call.cancel()  # a caller that stopped reading early must not leave the selection running
