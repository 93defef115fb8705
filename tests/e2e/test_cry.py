"""Cry end to end: the trained classifier on real Triton, clips and live streams of held-out families' cries
(synthetic vocalisations in real packaged sounds), unknown sounds, and every bad input with its named status."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tests.e2e.cry_service import running_cry

from tessera.common.v1 import common_pb2
from tessera.cry import corpus
from tessera.cry.client import CryClient, CryError, pcm_chunk
from tessera.cry.v1 import cry_pb2 as pb
from tessera.cry.vocalisation import RATE, REASONS
from tessera.runtime.processes import TritonServer

FAMILY = corpus.make_family(7000, 99, corpus.EVAL_BACKGROUNDS)  # never trained on: new voice, room, microphone


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cry-media")


@pytest.fixture(scope="module")
async def client(triton_server: TritonServer, media: Path) -> AsyncIterator[CryClient]:
    env = {"TESSERA_CRY_STREAM_IDLE_TIMEOUT_S": "1", "TESSERA_CRY_MAX_CLIP_S": "60"}
    async with running_cry(triton_server.grpc_url, media, env) as cry:
        yield cry


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(samples, rate // 100, RATE // 100).astype(np.float32)


async def test_the_model_states_its_version_figures_and_operating_point(client: CryClient) -> None:
    model = await client.get_model()
    assert model.model_version == "cry-central" and model.round == 0
    assert 0.5 < model.figures.macro_f1 <= 1 and 0 <= model.figures.ece < 0.1 and model.figures.ood_auroc > 0.8
    assert model.temperature > 0 and model.energy_threshold < 0


async def test_held_out_cries_are_detected_and_their_reasons_mostly_right(client: CryClient) -> None:
    rng = np.random.default_rng(4)
    right = 0
    for index, _ in enumerate(REASONS):
        for _ in range(2):
            recording = corpus.cry(FAMILY, rng, 3.0, reason=index)
            silence = np.zeros(RATE, np.float32)
            reply = await client.classify((np.concatenate([silence, recording.audio, silence]), RATE))
            cries = [s for s in reply.segments if s.cry_detected]
            assert cries, f"{REASONS[index]}: no cry found in {reply}"
            top = max(cries, key=lambda s: s.span.end_ms - s.span.start_ms)
            assert 800 <= top.span.start_ms <= 1600 and reply.duration_ms == 5000
            if not top.abstained:
                assert abs(sum(r.probability for r in top.reasons) - 1) < 1e-4 and 0 < top.confidence <= 1
                assert top.reasons[0].reason == top.reason and top.energy <= top.energy_threshold
                right += top.reason == index + 1
    assert right >= 7, f"{right} of 10 reasons right"


async def test_unknown_sounds_and_a_quiet_room_get_no_reason(client: CryClient) -> None:
    rng = np.random.default_rng(8)
    named = 0
    for _ in range(8):
        reply = await client.classify((corpus.unknown_sound(rng, 3.0).audio, RATE))
        named += sum(1 for s in reply.segments if s.cry_detected and not s.abstained)
    assert named <= 2, f"{named} unknown sounds were given a reason"
    quiet = await client.classify((corpus.no_cry(FAMILY, rng, 3.0).audio, RATE))
    assert all(not s.cry_detected for s in quiet.segments)
    silent = await client.classify((np.zeros(2 * RATE, np.float32), RATE))
    assert list(silent.segments) == [] and silent.duration_ms == 2000


async def test_files_under_the_media_roots_inline_files_and_any_rate_give_the_same_cry(
    client: CryClient, media: Path
) -> None:
    recording = corpus.cry(FAMILY, np.random.default_rng(9), 3.0, reason=1)
    clip = np.concatenate([np.zeros(RATE // 2, np.float32), recording.audio])
    (media / "pain.wav").write_bytes(_wav(_resample(clip, 44100), 44100))
    by_path = await client.classify(str(media / "pain.wav"), request_id="clip-1")
    inline = await client.classify(_wav(clip, RATE))
    at_8k = await client.classify((_resample(clip, 8000), 8000))
    for reply in (by_path, inline, at_8k):
        assert any(s.cry_detected for s in reply.segments), reply
    assert by_path.request_id == "clip-1" and 3400 <= by_path.duration_ms <= 3600


async def _refused(call: object) -> CryError:
    try:
        await call  # type: ignore[misc]
    except CryError as error:
        return error
    raise AssertionError("the call succeeded")


async def test_bad_inputs_get_named_statuses_and_the_service_keeps_answering(client: CryClient, media: Path) -> None:
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    stub = client.stub
    pcm16 = common_pb2.AUDIO_ENCODING_PCM16

    def pcm(data: bytes, rate: int = RATE, encoding: int = pcm16) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(pcm=common_pb2.AudioChunk(data=data, encoding=encoding, sample_rate_hz=rate))

    def file(**source: str | bytes) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(file=common_pb2.MediaSource(**source))  # type: ignore[arg-type]

    one_second = pcm_chunk(np.zeros(RATE, np.float32), RATE)
    cases = [
        (pb.ClassifyRequest(), invalid, "audio"),
        (pcm(b""), invalid, "pcm.data"),
        (pcm(b"\0\0" * 100, rate=4000), invalid, "pcm.sample_rate_hz"),
        (pcm(b"\0" * 101), invalid, "pcm.data"),
        (pcm(b"\0\0" * 100, encoding=common_pb2.AUDIO_ENCODING_UNSPECIFIED), invalid, "pcm.encoding"),
        (pb.ClassifyRequest(pcm=pcm_chunk(np.zeros(61 * 8000, np.float32), 8000)), exhausted, "pcm.data"),
        (file(inline_data=b"RIFF\xff\xff\xff\x7fWAVEgarbage"), invalid, "file.inline_data"),
        (file(uri="/etc/passwd"), grpc.StatusCode.PERMISSION_DENIED, "file.uri"),
        (file(), invalid, "file"),
        (pb.ClassifyRequest(pcm=one_second, request_id="Not An Id"), invalid, "request_id"),
    ]
    (media / "ten-minutes.wav").write_bytes(_wav(np.zeros(600 * 8000, np.float32), 8000))
    cases.append(
        (pb.ClassifyRequest(file=common_pb2.MediaSource(uri=str(media / "ten-minutes.wav"))), exhausted, "file.uri")
    )
    for request, code, field in cases:
        error = await _refused(client._unary("Classify", stub.Classify, request, None))
        assert error.code == code and field in error.fields, (request, error)
    clipped = np.clip(corpus.cry(FAMILY, np.random.default_rng(1), 3.0, reason=0).audio * 40, -1, 1)
    assert (await client.classify((clipped, RATE))).duration_ms == 3000  # clipped audio is still classified
    assert (await client.get_model()).model_version == "cry-central"


async def test_a_live_stream_yields_segments_as_they_close_then_its_summary(client: CryClient) -> None:
    rng = np.random.default_rng(12)
    live = np.concatenate([np.zeros(RATE // 2, np.float32), corpus.cry(FAMILY, rng, 3.0, reason=0).audio,
                           np.zeros(RATE, np.float32), corpus.cry(FAMILY, rng, 2.0, reason=4).audio,
                           np.zeros(RATE // 2, np.float32)])  # fmt: skip
    at_48k = _resample(live, 48000)
    chunks = [pcm_chunk(at_48k[i : i + 4800], 48000) for i in range(0, len(at_48k), 4800)]
    events = [e async for e in client.stream(chunks)]
    segments = [e.segment for e in events if e.HasField("segment")]
    assert events[-1].HasField("summary") and events[-1].summary.segments == len(segments) >= 2
    assert abs(events[-1].summary.audio_ms - 7000) <= 20
    assert sum(1 for s in segments if s.cry_detected) >= 2
    assert [s.span.start_ms for s in segments] == sorted(s.span.start_ms for s in segments)


async def test_streams_that_change_rate_or_go_quiet_are_ended_with_named_statuses(client: CryClient) -> None:
    async def changing() -> AsyncIterator[common_pb2.AudioChunk]:
        yield pcm_chunk(np.zeros(1600, np.float32), RATE)
        yield pcm_chunk(np.zeros(4410, np.float32), 44100)

    with pytest.raises(CryError) as changed:
        _ = [e async for e in client.stream(changing())]
    assert changed.value.code == grpc.StatusCode.INVALID_ARGUMENT and "chunk" in changed.value.fields

    async def quiet() -> AsyncIterator[common_pb2.AudioChunk]:
        yield pcm_chunk(np.zeros(1600, np.float32), RATE)
        await asyncio.sleep(30)

    with pytest.raises(CryError) as idle:
        _ = [e async for e in client.stream(quiet())]
    assert idle.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and idle.value.reason == "STREAM_IDLE"
    assert (await client.get_model()).model_version == "cry-central"
