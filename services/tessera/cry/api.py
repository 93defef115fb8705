"""gRPC adapter of the cry service: audio in, segments with cry detection, reason and abstention out.

Classify decodes a clip (PCM, or a file under the media roots or inline), resamples it to 16 kHz, cuts it into
sound events (``segmentation``) and has the Triton classifier score each; ``decision`` turns the scores into what
the response says. StreamClassify does the same on live PCM chunks, one event per segment as it closes. Audio is
never logged or stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
from tessera.cry import decision, segmentation
from tessera.cry.contracts import MODELS, CryModels, SegmentScores
from tessera.cry.settings import CrySettings
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.v1 import cry_pb2_grpc as pb_grpc
from tessera.cry.vocalisation import REASONS
from tessera.runtime import config
from tessera.runtime.audio import MODEL_RATE, AudioError, AudioTooLong, decode_file, decode_pcm, resample
from tessera.runtime.errors import InvalidArgument, ResourceExhausted
from tessera.runtime.identifiers import check_id
from tessera.runtime.inference import TritonClient
from tessera.runtime.media import resolve_media_path
from tessera.runtime.server import ServiceRegistration, not_ready_error
from tessera.runtime.service import Capability, serving_when_models_ready
from tessera.runtime.streams import next_or_idle

log = logging.getLogger("tessera.cry")
SERVICE_NAME = "tessera.cry.v1.CryService"
Context = grpc.aio.ServicerContext[Any, Any]
REASON_ENUMS = (pb.REASON_HUNGER, pb.REASON_PAIN, pb.REASON_DISCOMFORT, pb.REASON_TIREDNESS, pb.REASON_BURPING)
_ENCODINGS = {common_pb2.AUDIO_ENCODING_PCM16: "pcm16", common_pb2.AUDIO_ENCODING_FLOAT32: "float32"}
STREAM_IDLE = "STREAM_IDLE"
_STREAM_KEEP_S = 12.0  # audio kept for segments still open: the longest segment plus the gap that closes it


def _pcm(chunk: common_pb2.AudioChunk, field: str, max_s: float) -> tuple[NDArray[np.float32], int]:
    """A PCM chunk as mono float32 at its own rate, checked field by field."""
    if not chunk.data:
        raise InvalidArgument("is empty", field=f"{field}.data")
    try:
        samples = decode_pcm(chunk.data, _ENCODINGS.get(chunk.encoding, ""), chunk.sample_rate_hz, chunk.channels)
    except AudioError as exc:
        raise InvalidArgument(str(exc), field=f"{field}.{exc.field}") from None
    if len(samples) > max_s * chunk.sample_rate_hz:
        raise ResourceExhausted(f"holds more than {max_s:g} s of audio", field=f"{field}.data")
    return samples, chunk.sample_rate_hz


class CryServicer(pb_grpc.CryServiceServicer):
    def __init__(self, own: CrySettings, media_roots: list[Path], triton: TritonClient) -> None:
        self.own = own
        self.media_roots = media_roots
        self.models = CryModels(triton)
        self.ready = False

    async def models_ready(self) -> None:
        """One call on half a second of silence: the served model's version and operating point (MODEL_INFO)."""
        await self.models.classify(np.zeros(MODEL_RATE // 2, np.float32))
        served = self.models.info.get("reasons")
        if served is not None and list(served) != list(REASONS):
            raise RuntimeError(f"the served model's reasons {served} are not {list(REASONS)}")
        self.ready = True

    def _require_ready(self) -> None:
        if not self.ready:
            raise not_ready_error("cry")

    @property
    def energy_threshold(self) -> float:
        if self.own.energy_threshold is not None:
            return self.own.energy_threshold
        return float(self.models.info["energy_threshold"])

    def _segment(self, span: segmentation.Span, scores: SegmentScores) -> pb.Segment:
        threshold = self.energy_threshold
        made = decision.call(
            scores.cry_probability,
            scores.probabilities,
            scores.energy,
            cry_threshold=self.own.cry_threshold,
            energy_threshold=threshold,
        )
        return pb.Segment(
            span=common_pb2.TimeRange(start_ms=span.start_ms, end_ms=span.end_ms),
            cry_detected=made.cry_detected,
            cry_probability=scores.cry_probability,
            reasons=[pb.ReasonProbability(reason=REASON_ENUMS[i], probability=p) for i, p in made.ranked],
            reason=REASON_ENUMS[made.reason] if made.reason is not None else pb.REASON_UNSPECIFIED,
            confidence=made.confidence,
            abstained=made.abstained,
            energy=scores.energy,
            energy_threshold=threshold,
        )

    async def _clip(self, request: pb.ClassifyRequest) -> NDArray[np.float32]:
        """The request's audio as 16 kHz mono float32, bounded in length."""
        kind = request.WhichOneof("audio")
        if kind is None:
            raise InvalidArgument("must hold pcm or file", field="audio")
        if kind == "pcm":
            samples, rate = _pcm(request.pcm, "pcm", self.own.max_clip_s)
            return await asyncio.to_thread(resample, samples, rate)
        source = request.file
        which = source.WhichOneof("source")
        if which is None:
            raise InvalidArgument("must hold uri or inline_data", field="file")
        field = f"file.{which}"
        if which == "uri":
            origin: Path | bytes = resolve_media_path(source.uri, self.media_roots, field=field)
        else:
            if not source.inline_data:
                raise InvalidArgument("is empty", field=field)
            if len(source.inline_data) > self.own.max_inline_bytes:
                raise ResourceExhausted(f"is larger than {self.own.max_inline_bytes} bytes", field=field)
            origin = source.inline_data
        try:
            return await asyncio.to_thread(decode_file, origin, self.own.max_clip_s)
        except AudioTooLong as exc:
            raise ResourceExhausted(str(exc), field=field) from None
        except AudioError as exc:
            raise InvalidArgument(str(exc), field=field) from None

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        self._require_ready()
        if request.request_id:
            check_id(request.request_id, "request_id")
        audio = await self._clip(request)
        if len(audio) == 0:
            raise InvalidArgument("holds no audio samples", field="audio")
        spans = await asyncio.to_thread(segmentation.segments, audio)
        if len(spans) > self.own.max_segments:
            raise ResourceExhausted(f"holds {len(spans)} sound events: at most {self.own.max_segments}", field="audio")
        gate = asyncio.Semaphore(self.own.triton_concurrency)

        async def score(span: segmentation.Span) -> SegmentScores:
            async with gate:
                return await self.models.classify(audio[span.start : span.end])

        scores = await asyncio.gather(*(score(span) for span in spans))
        return pb.ClassifyResponse(
            segments=[self._segment(span, s) for span, s in zip(spans, scores, strict=True)],
            duration_ms=len(audio) * 1000 // MODEL_RATE,
            model_version=str(self.models.info.get("model_version", "")),
            request_id=request.request_id,
        )

    async def StreamClassify(
        self, request_iterator: AsyncIterator[pb.StreamClassifyRequest], context: Context
    ) -> AsyncIterator[pb.StreamClassifyResponse]:
        self._require_ready()
        segmenter = segmentation.StreamSegmenter()
        kept = np.zeros(0, np.float32)  # the latest audio, 16 kHz; kept[0] is sample ``base`` of the stream
        base = 0
        rate = channels = 0
        segments = 0
        limit = int(self.own.max_stream_s * MODEL_RATE)
        while True:
            message = await next_or_idle(
                request_iterator, self.own.stream_idle_timeout_s, "no audio chunk", STREAM_IDLE
            )
            if message is None:
                break
            chunk = message.chunk
            if rate and (chunk.sample_rate_hz, chunk.channels) != (rate, channels):
                raise InvalidArgument("rate and channels must stay those of the first chunk", field="chunk")
            samples, rate = _pcm(chunk, "chunk", self.own.max_stream_s)
            channels = chunk.channels
            fresh = resample(samples, rate)
            kept = np.concatenate([kept, fresh])
            if base + len(kept) > limit:
                raise ResourceExhausted(f"more than {self.own.max_stream_s:g} s of audio in one stream", field="chunk")
            for span in segmenter.push(fresh):
                segments += 1
                yield pb.StreamClassifyResponse(segment=await self._stream_segment(span, kept, base))
            drop = max(0, len(kept) - int(_STREAM_KEEP_S * MODEL_RATE))
            kept, base = kept[drop:], base + drop
        for span in segmenter.flush():
            segments += 1
            yield pb.StreamClassifyResponse(segment=await self._stream_segment(span, kept, base))
        yield pb.StreamClassifyResponse(
            summary=pb.StreamSummary(
                audio_ms=(base + len(kept)) * 1000 // MODEL_RATE,
                segments=segments,
                model_version=str(self.models.info.get("model_version", "")),
            )
        )

    async def _stream_segment(self, span: segmentation.Span, kept: NDArray[np.float32], base: int) -> pb.Segment:
        audio = kept[max(0, span.start - base) : max(0, span.end - base)]
        return self._segment(span, await self.models.classify(audio))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        self._require_ready()
        # A federation round may have swapped the served version since the last call: ask the model itself.
        await self.models.classify(np.zeros(MODEL_RATE // 2, np.float32))
        info = self.models.info
        figures = info.get("figures") or {}
        return pb.GetModelResponse(
            model_version=str(info.get("model_version", "")),
            round=int(info.get("round") or 0),
            published_unix_ms=int(info.get("published_unix_ms") or 0),
            figures=pb.ModelFigures(
                macro_f1=float(figures.get("macro_f1", 0.0)),
                ece=float(figures.get("ece", 0.0)),
                ood_auroc=float(figures.get("ood_auroc", 0.0)),
                cry_f1=float(figures.get("cry_f1", 0.0)),
            ),
            temperature=float(info.get("temperature", 1.0)),
            energy_threshold=self.energy_threshold,
            clients_aggregated=int(info.get("clients_aggregated") or 0),
            clients_dropped=int(info.get("clients_dropped") or 0),
        )


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(CrySettings)
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = CryServicer(own, settings.media_roots, triton)
    return Capability(
        name="cry",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_CryServiceServicer_to_server, servicer)],
        on_start=[
            serving_when_models_ready(
                triton, SERVICE_NAME, list(MODELS), own.models_ready_timeout_s, then=servicer.models_ready
            )
        ],
        on_close=[triton.close],
    )
