"""A typed client for the cry service: deadlines, retries on UNAVAILABLE (every call is a read), audio from anything.

``classify`` takes a path under the server's media roots, file bytes, or samples with their rate; ``stream`` sends
PCM16 chunks as a live microphone would and yields each segment as it closes, then the summary.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import ClassVar

import grpc
import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.v1 import cry_pb2_grpc as pb_grpc
from tessera.runtime.audio import to_pcm16
from tessera.runtime.rpc_client import DEFAULT_RETRY, RetryPolicy, RpcCallError, ServiceClient


class CryError(RpcCallError):
    """A CryService call that failed: code, message, the request fields named (e.g. pcm.sample_rate_hz), reason."""


def pcm_chunk(samples: NDArray[np.float32], rate_hz: int) -> common_pb2.AudioChunk:
    """Mono float samples in [-1, 1] as a PCM16 chunk."""
    return common_pb2.AudioChunk(
        data=to_pcm16(samples), encoding=common_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=rate_hz, channels=1
    )


class CryClient(ServiceClient):
    error: ClassVar[type[RpcCallError]] = CryError
    log: ClassVar[logging.Logger] = logging.getLogger("tessera.cry.client")

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        token: str | None = None,
    ) -> None:
        super().__init__(channel, timeout_s=timeout_s, retry=retry, token=token)
        self.stub: pb_grpc.CryServiceAsyncStub = pb_grpc.CryServiceStub(channel)

    async def classify(
        self,
        audio: str | bytes | tuple[NDArray[np.float32], int],
        *,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> pb.ClassifyResponse:
        """A clip's segments. ``audio``: a path under the server's media roots, an audio file's bytes, or
        (samples, rate in Hz)."""
        request = pb.ClassifyRequest(request_id=request_id)
        if isinstance(audio, str):
            request.file.uri = audio
        elif isinstance(audio, bytes):
            request.file.inline_data = audio
        else:
            request.pcm.CopyFrom(pcm_chunk(*audio))
        return await self._unary("Classify", self.stub.Classify, request, timeout_s)

    async def get_model(self, *, timeout_s: float | None = None) -> pb.GetModelResponse:
        return await self._unary("GetModel", self.stub.GetModel, pb.GetModelRequest(), timeout_s)

    async def stream(
        self,
        chunks: Iterable[common_pb2.AudioChunk] | AsyncIterator[common_pb2.AudioChunk],
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[pb.StreamClassifyResponse]:
        """Segments as they close, then the summary. Not retried: a stream's audio cannot be sent twice."""

        async def requests() -> AsyncIterator[pb.StreamClassifyRequest]:
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    yield pb.StreamClassifyRequest(chunk=chunk)
            else:
                for chunk in chunks:
                    yield pb.StreamClassifyRequest(chunk=chunk)

        call = self.stub.StreamClassify(requests(), timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise CryError.from_rpc("StreamClassify", exc, 1) from None
