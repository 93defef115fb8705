"""A typed client for the keyframe service: per-call deadlines, bounded retries on UNAVAILABLE, a progress stream.

Used by the demo and the tests. Every KeyframeService RPC only reads (a selection leaves nothing on the server but
warm caches), so every call is idempotent and may be sent again. Only UNAVAILABLE is retried: the service or a
dependency was down or restarting. Any other code would come back the same, so it is raised at once as a
``KeyframesError`` carrying the code, the message and the fields the server named.

A call's ``timeout_s`` is its whole deadline, retries and backoff included, and never outlives the deadline of the
request being served when the client is used inside a Tessera handler (``tessera.runtime.deadlines``). The channel,
the deadline and the retries are ``tessera.runtime.rpc_client``'s; this module holds what is KeyframeService's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import grpc

from tessera.common.v1 import common_pb2
from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.runtime.rpc_client import DEFAULT_RETRY, NO_RETRY, RetryPolicy, RpcCallError, ServiceClient

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "KeyframesClient",
    "KeyframesError",
    "RetryPolicy",
    "SceneInput",
    "VideoInput",
    "evaluation_request",
    "selection_request",
]

log = logging.getLogger("tessera.keyframes.client")

# A path or URI under the server's media roots, or the video's bytes sent inline.
VideoInput = str | Path | bytes
# A ground-truth scene: its segments as (start_ms, end_ms), or the proto.
SceneInput = pb.Scene | Sequence[tuple[int, int]]


class KeyframesError(RpcCallError):
    """A KeyframeService call that failed: its status code, the server's message, the request fields it named, its
    ErrorInfo reason (e.g. VIDEO_UNREADABLE), and attempts made."""


def selection_request(
    video: VideoInput,
    query: str,
    k: int,
    *,
    strategy: pb.Strategy.ValueType = pb.STRATEGY_FOCUS,
    sampling_fps: float = 0.0,
    focus: pb.FocusOptions | None = None,
    scorer: pb.Scorer.ValueType = pb.SCORER_UNSPECIFIED,
) -> pb.SelectKeyframesRequest:
    """The request the select calls send; the server checks every bound and names the field it rejects."""
    source = (
        common_pb2.MediaSource(inline_data=video)
        if isinstance(video, bytes)
        else common_pb2.MediaSource(uri=str(video))
    )
    return pb.SelectKeyframesRequest(
        video=source, query=query, k=k, strategy=strategy, sampling_fps=sampling_fps, focus=focus, scorer=scorer
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


class KeyframesClient(ServiceClient):
    """KeyframeService over a ``grpc.aio`` channel: ``select``, ``stream_select``, ``evaluate``.

    ``timeout_s`` is the default deadline of a call (each method takes its own); ``token`` is sent as
    ``authorization: Bearer <token>`` for servers with ``TESSERA_AUTH_TOKEN`` set. ``retries`` counts the UNAVAILABLE
    retries this client has made. ``connect(address, ...)`` opens its own channel, which ``close`` (or leaving
    ``async with``) closes.
    """

    error: ClassVar[type[RpcCallError]] = KeyframesError
    log: ClassVar[logging.Logger] = log

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = 120.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        token: str | None = None,
    ) -> None:
        super().__init__(channel, timeout_s=timeout_s, retry=retry, token=token)
        self.stub: pb_grpc.KeyframeServiceAsyncStub = pb_grpc.KeyframeServiceStub(channel)

    async def select(
        self,
        video: VideoInput,
        query: str,
        k: int,
        *,
        strategy: pb.Strategy.ValueType = pb.STRATEGY_FOCUS,
        sampling_fps: float = 0.0,
        focus: pb.FocusOptions | None = None,
        scorer: pb.Scorer.ValueType = pb.SCORER_UNSPECIFIED,
        timeout_s: float | None = None,
        on_progress: Callable[[pb.Progress], None] | None = None,
    ) -> pb.SelectKeyframesResponse:
        """``k`` frames of ``video`` for ``query``, sorted by time; with ``on_progress``, over the streaming RPC."""
        request = selection_request(
            video, query, k, strategy=strategy, sampling_fps=sampling_fps, focus=focus, scorer=scorer
        )
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
        scorer: pb.Scorer.ValueType = pb.SCORER_UNSPECIFIED,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[pb.Progress | pb.SelectKeyframesResponse, None]:
        """``Progress`` events, then the ``SelectKeyframesResponse`` as the last item.

        UNAVAILABLE is retried only before the first event arrives: a retry after that would replay progress the
        caller has already seen.
        """
        request = selection_request(
            video, query, k, strategy=strategy, sampling_fps=sampling_fps, focus=focus, scorer=scorer
        )
        async with contextlib.aclosing(self._stream(request, timeout_s)) as events:
            async for event in events:
                yield event

    async def evaluate(
        self, timestamps_ms: Iterable[int], scenes: Iterable[SceneInput], *, timeout_s: float | None = None
    ) -> pb.EvaluateSelectionResponse:
        """KFS-Bench scores (KFR, SHR, BSR, BDS, UKSS, hits per scene) of ``timestamps_ms`` against ``scenes``."""
        request = evaluation_request(timestamps_ms, scenes)
        return await self._unary("EvaluateSelection", self.stub.EvaluateSelection, request, timeout_s)

    async def _stream(
        self, request: pb.SelectKeyframesRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.Progress | pb.SelectKeyframesResponse, None]:
        method = "StreamSelectKeyframes"
        # aclosing: leaving at the result closes the call's stream now, which cancels it on the server.
        async with contextlib.aclosing(
            self._server_stream(method, self.stub.StreamSelectKeyframes, request, timeout_s)
        ) as events:
            async for event in events:
                if event.WhichOneof("event") == "result":
                    yield event.result
                    return
                yield event.progress
        raise KeyframesError(method, grpc.StatusCode.INTERNAL, "the stream ended without a result")
