"""The cascade's NATS stage workers: ASR, MT and TTS, each a durable pull consumer calling one Triton model.

Every output is published with a message id derived from the input's, so a worker that dies after publishing and
before acking republishes a duplicate that JetStream drops: each effect happens once.
"""

from __future__ import annotations

import time

import numpy as np

from tessera.runtime.bus import Bus, Delivery, PermanentError, derived_msg_id
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import InvalidArgument
from tessera.runtime.inference import TritonClient
from tessera.runtime.service import StageWorker
from tessera.translation import cascade
from tessera.translation.audio import ASR_RATE
from tessera.translation.v1 import cascade_pb2 as msg


def _bytes(value: str) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([value.encode("utf-8")], dtype=np.object_)


def _text(array: np.ndarray) -> str:  # type: ignore[type-arg]
    value = array.reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _triton(settings: ServerSettings) -> TritonClient:
    return TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)


async def asr_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    triton = _triton(settings)

    async def handle(delivery: Delivery) -> None:
        segment = msg.SegmentAudio.FromString(delivery.data)
        began = time.perf_counter()
        if segment.text:  # typed chat: nothing to recognise
            text = segment.text
        else:
            audio = np.frombuffer(segment.pcm_f32, dtype=np.float32)
            try:
                out = await triton.infer("asr", {"AUDIO": audio, "LANGUAGE": _bytes(segment.language)})
            except InvalidArgument as exc:
                raise PermanentError(str(exc)) from exc  # retrying cannot help: straight to the dead-letter subject
            text = _text(out["TEXT"])
        times = msg.StageTimes()
        times.CopyFrom(segment.times)
        times.asr_ms = 0.0 if segment.text else (time.perf_counter() - began) * 1000
        transcript = msg.SegmentText(
            conference_id=segment.conference_id,
            segment_id=segment.segment_id,
            seq=segment.seq,
            speaker_id=segment.speaker_id,
            source_language=segment.language,
            language=segment.language,
            text=text,
            target_languages=list(segment.target_languages),
            start_ms=segment.start_ms,
            end_ms=segment.end_ms,
            times=times,
        )
        await bus.publish(
            cascade.subject(segment.conference_id, "transcript"),
            transcript.SerializeToString(),
            msg_id=derived_msg_id(delivery.msg_id, "asr"),
        )

    return StageWorker("asr", [cascade.STREAM], cascade.CONSUMERS["asr"], handle, on_close=[triton.close])


async def mt_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    triton = _triton(settings)
    await triton.wait_ready(list(cascade.MODELS), timeout_s=600)
    support = await cascade.language_support(triton)

    async def handle(delivery: Delivery) -> None:
        source = msg.SegmentText.FromString(delivery.data)
        for target in source.target_languages:
            route = support.route(source.language, target)
            if route is None:
                continue  # the gateway only plans reachable languages; a model swap may have removed one
            began = time.perf_counter()
            text = source.text
            for hop_source, hop_target in route:
                if not text.strip():
                    break
                out = await triton.infer(
                    "mt", {"TEXT": _bytes(text), "SOURCE": _bytes(hop_source), "TARGET": _bytes(hop_target)}
                )
                text = _text(out["TEXT_OUT"])
            times = msg.StageTimes()
            times.CopyFrom(source.times)
            times.mt_ms = (time.perf_counter() - began) * 1000
            translated = msg.SegmentText()
            translated.CopyFrom(source)
            translated.language, translated.text = target, text
            translated.times.CopyFrom(times)
            await bus.publish(
                cascade.subject(source.conference_id, f"text.{target}"),
                translated.SerializeToString(),
                msg_id=derived_msg_id(delivery.msg_id, f"mt.{target}"),
            )

    return StageWorker("mt", [cascade.STREAM], cascade.CONSUMERS["mt"], handle, concurrency=2, on_close=[triton.close])


async def tts_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    triton = _triton(settings)

    async def handle(delivery: Delivery) -> None:
        text = msg.SegmentText.FromString(delivery.data)
        began = time.perf_counter()
        if text.text.strip():
            out = await triton.infer("tts", {"TEXT": _bytes(text.text), "LANGUAGE": _bytes(text.language)})
            pcm, rate = out["AUDIO"].astype(np.int16).tobytes(), int(out["SAMPLE_RATE"].reshape(-1)[0])
        else:
            pcm, rate = b"", ASR_RATE  # nothing said: an empty clip keeps the segment sequence whole
        times = msg.StageTimes()
        times.CopyFrom(text.times)
        times.tts_ms = (time.perf_counter() - began) * 1000
        speech = msg.SegmentSpeech(
            conference_id=text.conference_id,
            segment_id=text.segment_id,
            seq=text.seq,
            language=text.language,
            pcm16=pcm,
            sample_rate_hz=rate,
            times=times,
        )
        await bus.publish(
            cascade.subject(text.conference_id, f"speech.{text.language}"),
            speech.SerializeToString(),
            msg_id=derived_msg_id(delivery.msg_id, "tts"),
        )

    # Two in flight: one listener language's synthesis does not queue behind another's.
    return StageWorker(
        "tts", [cascade.STREAM], cascade.CONSUMERS["tts"], handle, concurrency=2, on_close=[triton.close]
    )


STAGES = {"asr": asr_stage, "mt": mt_stage, "tts": tts_stage}
