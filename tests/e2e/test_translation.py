"""Conference translation end to end: real speech, real Whisper/Apertium/espeak/Piper on Triton, real JetStream.

The gateway runs in this process; the ASR, MT and TTS workers run as real processes so that one can be killed
with SIGKILL in the middle of a conference.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tessera.runtime import service
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import field_violations
from tessera.runtime.processes import NatsServer, TritonServer, WorkerPool
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).parent))
from conference_harness import Client, speech_wav

GRANTED = pb.FLOOR_EVENT_KIND_GRANTED


def _workers(nats: NatsServer, triton: TritonServer, logs: Path) -> WorkerPool:
    env = {"TESSERA_NATS_URL": nats.url, "TESSERA_TRITON_URL": triton.grpc_url, "TESSERA_PORT": "0",
           "TESSERA_GRACE_S": "2"}  # fmt: skip
    return WorkerPool("translation", env, logs)


@pytest.fixture(scope="module")
def workers(
    nats_server: NatsServer, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerPool]:
    pool = _workers(nats_server, triton_server, tmp_path_factory.mktemp("workers"))
    for stage in ("asr", "mt", "tts"):
        pool.start(stage)
    yield pool
    pool.stop()


@pytest.fixture(scope="module")
async def gateway(nats_server: NatsServer, triton_server: TritonServer, workers: WorkerPool) -> AsyncIterator[str]:
    settings = ServerSettings(port=0, nats_url=nats_server.url, triton_url=triton_server.grpc_url)
    capability, server = await service.start("translation", settings)
    yield f"127.0.0.1:{server.port}"
    await server.server.stop(0)
    await capability.close()


@pytest.fixture(scope="module")
async def stub(gateway: str) -> AsyncIterator[pb_grpc.ConferenceServiceStub]:
    async with grpc.aio.insecure_channel(gateway) as channel:
        conference_stub = pb_grpc.ConferenceServiceStub(channel)
        for _ in range(600):  # models load in Triton before the gateway reports SERVING
            try:
                await conference_stub.CreateConference(pb.CreateConferenceRequest(conference_id="warmup"))
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        yield conference_stub


async def _conference(stub: pb_grpc.ConferenceServiceStub, name: str, *langs: str) -> list[Client]:
    await stub.CreateConference(pb.CreateConferenceRequest(conference_id=name))
    clients = [Client(stub, name, f"p{i}-{lang}", lang) for i, lang in enumerate(langs)]
    for client in clients:
        await client.open()
    return clients


async def _release(client: Client) -> None:
    """Release the floor and wait until the gateway has flushed the speaker's last segment."""
    await client.send(pb.ClientEvent(release_floor=pb.ReleaseFloor()))
    await client.wait_for(
        lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == pb.FLOOR_EVENT_KIND_RELEASED, 30
    )


async def _take_floor(client: Client) -> None:
    await client.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
    await client.wait_for(lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == GRANTED, 10)


async def test_languages_come_from_the_models(stub: pb_grpc.ConferenceServiceStub) -> None:
    reply = await stub.ListLanguages(pb.ListLanguagesRequest())
    assert list(reply.asr_languages) == ["en"]
    assert {"en", "es", "ca"} <= set(reply.participant_languages)
    assert ("en", "es") in {(p.source, p.target) for p in reply.mt_pairs}


async def test_three_languages_hear_each_segment_once(stub: pb_grpc.ConferenceServiceStub) -> None:
    speaker, spanish, catalan = await _conference(stub, "trio", "en", "es-ES", "ca")
    try:
        await _take_floor(speaker)
        pcm, rate = speech_wav("beckett.wav")
        await speaker.speak(pcm, rate)
        await _release(speaker)
        conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="trio"))
        segments = conference.segments_accepted
        assert segments >= 3  # Beckett's lines are short sentences with pauses between them
        for listener, lang in ((spanish, "es"), (catalan, "ca")):
            await listener.wait_for(
                lambda e, n=segments: e.WhichOneof("event") == "latency" and e.latency.segment_id.endswith(f"{n:06d}"),
                120,
            )
            transcripts = listener.of("transcript")
            translations = listener.of("translation")
            assert [t.seq for t in transcripts] == list(range(1, segments + 1))  # in order, once each
            assert [t.seq for t in translations] == list(range(1, segments + 1))
            assert all(t.target_language == lang and t.source_language == "en" for t in translations)
            heard = " ".join(t.text for t in transcripts).lower()
            assert "again" in heard and "fail" in heard
            last_chunks = [c for c in listener.of("speech") if c.last]
            assert [c.seq for c in last_chunks] == list(range(1, segments + 1))
            audio = b"".join(c.audio.data for c in listener.of("speech"))
            assert len(audio) > 22050 * 2 * segments * 0.3  # a few hundred ms of voice per segment at least
            assert np.abs(np.frombuffer(audio, dtype="<i2")).max() > 1000  # not silence
            for latency in listener.of("latency"):
                assert latency.total_ms >= latency.asr_ms + latency.mt_ms + latency.tts_ms - 1
                assert latency.asr_ms > 0 and latency.mt_ms > 0 and latency.tts_ms > 0
        spanish_text = " ".join(t.text for t in spanish.of("translation")).lower()
        assert "otra vez" in spanish_text  # "again"
        # The speaker reads its own transcript; it gets no translation or synthesised speech of itself.
        assert len(speaker.of("transcript")) == segments and not speaker.of("translation")
    finally:
        for client in (speaker, spanish, catalan):
            await client.close()


async def test_turn_taking(stub: pb_grpc.ConferenceServiceStub) -> None:
    first, second = await _conference(stub, "turns", "en", "en")
    try:
        await _take_floor(first)
        await second.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        queued = await second.wait_for(
            lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == pb.FLOOR_EVENT_KIND_QUEUED, 10
        )
        assert queued.floor.queue_position == 1
        pcm, rate = speech_wav("beckett.wav")
        await second.speak(pcm[: rate // 2], rate)
        refused = await second.wait_for(lambda e: e.WhichOneof("event") == "error", 10)
        assert refused.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0] and refused.error.field == "audio"
        # The holder disconnects: the floor passes to the next in line.
        await first.close()
        await second.wait_for(lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == GRANTED, 10)
        conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="turns"))
        assert conference.floor_holder_id == second.participant_id and conference.segments_accepted == 0
    finally:
        await second.close()


async def test_join_errors(stub: pb_grpc.ConferenceServiceStub) -> None:
    await stub.CreateConference(pb.CreateConferenceRequest(conference_id="errors"))
    klingon = Client(stub, "errors", "worf", "tlh")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await klingon.open()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = field_violations(refused.value)["join.language"]
    assert "supported languages" in message and "es" in message and "ca" in message
    missing = Client(stub, "nope", "x", "en")
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await missing.open()
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad_id:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="Bad Id!"))
    assert "conference_id" in field_violations(bad_id.value)
    for hostile in ("../x", "a\x00b", "*", "café", "x" * 100_000):
        with pytest.raises(grpc.aio.AioRpcError) as unread:
            await stub.GetConference(pb.GetConferenceRequest(conference_id=hostile))
        assert unread.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "conference_id" in field_violations(unread.value)
        assert len(unread.value.details() or "") < 200, "the id is echoed bounded"


async def test_bad_audio_is_reported_and_the_stream_survives(stub: pb_grpc.ConferenceServiceStub) -> None:
    (speaker,) = await _conference(stub, "badaudio", "en")
    try:
        await _take_floor(speaker)
        await speaker.send(pb.ClientEvent(audio={"data": b"\x00\x01\x02", "encoding": 1, "sample_rate_hz": 16000}))
        await speaker.send(pb.ClientEvent(audio={"data": b"\x00\x00" * 160, "encoding": 1, "sample_rate_hz": 3}))
        await speaker.wait_for(
            lambda e: e.WhichOneof("event") == "error" and e.error.field == "audio.sample_rate_hz", 10
        )
        fields = {e.error.field for e in speaker.events if e.WhichOneof("event") == "error"}
        assert fields == {"audio.data", "audio.sample_rate_hz"}
        await speaker.send(pb.ClientEvent(text=pb.TextMessage(text="The stream is still open.")))
        transcript = await speaker.wait_for(lambda e: e.WhichOneof("event") == "transcript", 30)
        assert transcript.transcript.text == "The stream is still open."
    finally:
        await speaker.close()


async def test_mt_worker_killed_mid_conference_loses_and_repeats_nothing(
    stub: pb_grpc.ConferenceServiceStub, workers: WorkerPool
) -> None:
    speaker, spanish = await _conference(stub, "crash", "en", "es")
    try:
        await _take_floor(speaker)
        pcm, rate = speech_wav("beckett.wav")
        await speaker.speak(pcm[: len(pcm) // 2], rate)
        await spanish.wait_for(lambda e: e.WhichOneof("event") == "transcript", 60)
        workers.kill("mt")  # SIGKILL while segments are in flight
        await speaker.speak(pcm[len(pcm) // 2 :], rate)
        await _release(speaker)
        await asyncio.sleep(1)
        workers.start("mt")
        conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="crash"))
        segments = conference.segments_accepted
        await spanish.wait_for(
            lambda e, n=segments: e.WhichOneof("event") == "latency" and e.latency.segment_id.endswith(f"{n:06d}"), 180
        )
        translations = Counter(t.seq for t in spanish.of("translation"))
        speech = Counter(c.seq for c in spanish.of("speech") if c.last)
        assert translations == Counter(range(1, segments + 1))  # every segment, exactly once
        assert speech == Counter(range(1, segments + 1))
    finally:
        for client in (speaker, spanish):
            await client.close()


async def test_slow_listener_does_not_stall_others(stub: pb_grpc.ConferenceServiceStub, gateway: str) -> None:
    speaker, fast = await _conference(stub, "slow", "en", "es")
    # The slow listener has its own connection without BDP probing, so HTTP/2 flow control stops the gateway
    # from writing to it after ~64 KiB, and it joins with a small queue.
    async with grpc.aio.insecure_channel(gateway, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        slow = Client(pb_grpc.ConferenceServiceStub(channel), "slow", "sloth", "es", max_queued_events=8)
        await slow.open(read=False)
        try:
            await _take_floor(speaker)
            pcm, rate = speech_wav("beckett.wav")
            await speaker.speak(np.concatenate([pcm, pcm]), rate)
            await _release(speaker)
            conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="slow"))
            segments = conference.segments_accepted
            await fast.wait_for(
                lambda e, n=segments: e.WhichOneof("event") == "latency" and e.latency.segment_id.endswith(f"{n:06d}"),
                180,
            )
            assert [t.seq for t in fast.of("translation")] == list(range(1, segments + 1))
            # Now the slow listener reads: it learns how much it lost.
            dropped = 0
            while True:
                event = await asyncio.wait_for(slow.call.read(), 10)
                if event.WhichOneof("event") == "dropped":
                    dropped = event.dropped.count
                    break
            assert dropped > 0
        finally:
            for client in (speaker, fast, slow):
                await client.close()


async def test_late_joiner_hears_from_the_next_segment_on(stub: pb_grpc.ConferenceServiceStub) -> None:
    speaker, listener = await _conference(stub, "late", "en", "es")
    late = Client(stub, "late", "latecomer", "es")
    try:
        await speaker.send(pb.ClientEvent(text=pb.TextMessage(text="Good morning.")))
        await listener.wait_for(lambda e: e.WhichOneof("event") == "translation", 30)
        await late.open()
        joined = late.of("joined")[0]
        assert joined.next_segment_seq == 2
        await speaker.send(pb.ClientEvent(text=pb.TextMessage(text="Good night.")))
        await late.wait_for(lambda e: e.WhichOneof("event") == "translation", 30)
        await listener.wait_for(lambda e: e.WhichOneof("event") == "translation" and e.translation.seq == 2, 30)
        assert [t.seq for t in late.of("translation")] == [2]
        assert [t.seq for t in listener.of("translation")] == [1, 2]
        assert "noche" in late.of("translation")[0].text.lower()
    finally:
        for client in (speaker, listener, late):
            await client.close()
