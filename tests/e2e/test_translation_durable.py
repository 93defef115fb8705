"""Conferences that outlive their gateway (JetStream key-value), expire when idle, are listed page by page, and a
drain that delivers what is in flight before it ends the streams.

Most tests need only a real nats-server: the gateway is built as ``create`` builds it, with the languages set
instead of read from Triton, and where results matter a small fake cascade in the test answers each segment. The
last test runs the real thing: Triton, the three stage workers, the gateway stopped and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tessera.runtime import service
from tessera.runtime.bus import Bus, Received, Subscription
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import field_violations
from tessera.runtime.inference import TritonClient
from tessera.runtime.processes import NatsServer, TritonServer, WorkerPool
from tessera.runtime.rpc_client import RECONNECT_OPTIONS, reason_of
from tessera.runtime.server import ServiceRegistration, TesseraServer, build_server
from tessera.translation import cascade
from tessera.translation.api import SERVICE_NAME, ConferenceServicer, TranslationSettings
from tessera.translation.languages import LanguageSupport
from tessera.translation.v1 import cascade_pb2 as msg
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).parent))
from conference_harness import Client, speech_wav

SUPPORT = LanguageSupport.parse("en", "en-es,es-en", "en,es")
ACTIVE, ENDED = pb.CONFERENCE_STATE_ACTIVE, pb.CONFERENCE_STATE_ENDED
GRANTED = pb.FLOOR_EVENT_KIND_GRANTED


@dataclass
class Gateway:
    """A translation gateway on a real NATS, languages given rather than read from Triton."""

    servicer: ConferenceServicer
    server: TesseraServer
    bus: Bus
    triton: TritonClient

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    stopped: bool = False

    async def stop(self, drain: bool = True) -> None:
        """SIGTERM's path (drain: NOT_SERVING, on_drain hooks, streams end UNAVAILABLE/DRAINING), or a crash's."""
        if self.stopped:
            return
        self.stopped = True
        if drain:
            await self.server.drain()
        else:
            await self.server.server.stop(0)
        await self.servicer.close()
        await self.bus.close()
        await self.triton.close()


STARTED: list[Gateway] = []


@pytest.fixture(autouse=True)
async def _stop_gateways() -> AsyncIterator[None]:
    """Gateways a failed test left running are stopped (a crash's way: nothing to wait for)."""
    yield
    while STARTED:
        await STARTED.pop().stop(drain=False)


async def start_gateway(nats: NatsServer, port: int = 0, **own: Any) -> Gateway:
    settings = ServerSettings(port=port, nats_url=nats.url, drain_delay_s=0, grace_s=10)
    bus = await Bus.connect(nats.url, "translation-gateway-test")
    triton = TritonClient("127.0.0.1:1")  # never called: the languages are set below
    servicer = ConferenceServicer(TranslationSettings(**own), bus, triton)
    servicer.support = SUPPORT
    server = await build_server(
        settings, [ServiceRegistration(SERVICE_NAME, pb_grpc.add_ConferenceServiceServicer_to_server, servicer)]
    )
    server.on_drain.append(servicer.drain)
    await servicer.start(server)
    gateway = Gateway(servicer, server, bus, triton)
    STARTED.append(gateway)
    return gateway


@dataclass
class FakeCascade:
    """Answers every segment published to the cascade with a transcript, a Spanish translation and Spanish speech,
    ``delay_s`` after it was published (what ASR, MT and TTS workers would do)."""

    bus: Bus
    delay_s: float = 0.1
    segments: list[msg.SegmentAudio] = field(default_factory=list)
    _sub: Subscription | None = None
    _tasks: list[asyncio.Future[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._sub = await self.bus.watch(f"{cascade.PREFIX}.*.audio", self._on_audio)

    async def _on_audio(self, message: Received) -> None:
        segment = msg.SegmentAudio.FromString(message.data)
        self.segments.append(segment)
        self._tasks.append(asyncio.ensure_future(self._answer(segment)))

    async def _answer(self, s: msg.SegmentAudio) -> None:
        await asyncio.sleep(self.delay_s)
        common = {"conference_id": s.conference_id, "segment_id": s.segment_id, "seq": s.seq}
        common["speaker_id"] = s.speaker_id
        transcript = msg.SegmentText(**common, source_language=s.language, language=s.language, text=s.text)
        await self._publish(s, "transcript", transcript.SerializeToString())
        for target in s.target_languages:
            text = msg.SegmentText(**common, source_language=s.language, language=target, text=f"[{target}] {s.text}")
            await self._publish(s, f"text.{target}", text.SerializeToString())
            speech = msg.SegmentSpeech(
                conference_id=s.conference_id,
                segment_id=s.segment_id,
                seq=s.seq,
                language=target,
                pcm16=b"\x10\x00" * 1600,
                sample_rate_hz=16000,
                times=msg.StageTimes(cut_unix_ms=s.times.cut_unix_ms, asr_ms=1, mt_ms=1, tts_ms=1),
            )
            await self._publish(s, f"speech.{target}", speech.SerializeToString())

    async def _publish(self, s: msg.SegmentAudio, stage: str, data: bytes) -> None:
        await self.bus.publish(cascade.subject(s.conference_id, stage), data, msg_id=f"{s.segment_id}-fake-{stage}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._sub is not None:
            await self._sub.unsubscribe()


@pytest.fixture
async def fake_cascade(nats_server: NatsServer) -> AsyncIterator[FakeCascade]:
    bus = await Bus.connect(nats_server.url, "fake-cascade")
    await bus.ensure(cascade.STREAM)
    fake = FakeCascade(bus)
    await fake.start()
    yield fake
    await fake.stop()
    await bus.close()


@contextlib.asynccontextmanager
async def channel_to(address: str) -> AsyncIterator[pb_grpc.ConferenceServiceStub]:
    async with grpc.aio.insecure_channel(address, options=RECONNECT_OPTIONS) as channel:
        yield pb_grpc.ConferenceServiceStub(channel)


def _is(which: str, **fields: Any) -> Any:
    def match(event: pb.ServerEvent) -> bool:
        if event.WhichOneof("event") != which:
            return False
        inner = getattr(event, which)
        return all(getattr(inner, name) == value for name, value in fields.items())

    return match


async def _text(client: Client, text: str) -> None:
    await client.send(pb.ClientEvent(text=pb.TextMessage(text=text)))


async def test_a_restarted_gateway_carries_the_conference_on(
    nats_server: NatsServer, fake_cascade: FakeCascade
) -> None:
    old = await start_gateway(nats_server)
    async with channel_to(old.address) as stub:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="keep-1", display_name="Keep"))
        ana, bo = Client(stub, "keep-1", "ana", "en"), Client(stub, "keep-1", "bo", "es")
        await ana.open()
        await bo.open()
        try:
            await _text(ana, "Good morning.")
            await bo.wait_for(_is("translation", seq=1), 10)
            await ana.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
            await ana.wait_for(_is("floor", kind=GRANTED), 10)

            await old.stop(drain=True)  # SIGTERM's path
            new = await start_gateway(nats_server, old.server.port)  # the restarted gateway, same address
            await ana.wait_for(lambda e: ana.rejoins == 1, 20)
            await bo.wait_for(lambda e: bo.rejoins == 1, 20)
            rejoined = bo.of("joined")[1]
            assert rejoined.next_segment_seq == 2, "segments are numbered on, not from 1 again"
            assert rejoined.conference.display_name == "Keep"
            # The floor did not survive; the client asked for it again as it rejoined.
            await ana.wait_for(lambda e: sum(f.kind == GRANTED for f in ana.of("floor")) == 2, 10)

            conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="keep-1"))
            assert conference.state == ACTIVE and conference.segments_accepted == 1
            assert sorted(p.participant_id for p in conference.participants) == ["ana", "bo"]
            assert conference.floor_holder_id == "ana"

            await _text(ana, "Good night.")  # is heard after the restart
            heard = await bo.wait_for(_is("translation", seq=2), 10)
            assert heard.translation.text == "[es] Good night."
            await bo.wait_for(_is("speech", seq=2, last=True), 10)
            await _text(bo, "Buenas noches.")  # and hears
            await ana.wait_for(_is("transcript", seq=3, speaker_id="bo"), 10)
            await ana.wait_for(_is("translation", seq=3, target_language="en"), 10)
            published = [s.seq for s in fake_cascade.segments if s.conference_id == "keep-1"]
            assert published == [1, 2, 3], "each segment published once, none dropped as a duplicate"
            await new.stop()
        finally:
            await ana.close()
            await bo.close()


async def test_a_conference_survives_a_crash_and_its_participant_joins_again(nats_server: NatsServer) -> None:
    old = await start_gateway(nats_server)
    async with channel_to(old.address) as stub:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="crash-1", max_floor_hold_ms=5000))
        ana = Client(stub, "crash-1", "ana", "en", rejoin=False)
        await ana.open()
        await _text(ana, "Before the crash.")
        await asyncio.sleep(0.3)
        await ana.close()
    await old.stop(drain=False)  # no drain, no hooks
    new = await start_gateway(nats_server)
    try:
        async with channel_to(new.address) as stub:
            conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="crash-1"))
            assert conference.state == ACTIVE and conference.max_floor_hold_ms == 5000
            assert conference.segments_accepted == 1
            again = Client(stub, "crash-1", "ana", "en")
            await again.open()
            assert again.of("joined")[0].next_segment_seq == 2
            await again.close()
    finally:
        await new.stop()


async def test_idle_conferences_expire_and_connected_ones_do_not(nats_server: NatsServer) -> None:
    gateway = await start_gateway(nats_server, conference_idle_ttl_s=1)
    try:
        async with channel_to(gateway.address) as stub:
            began = time.time() * 1000
            created = await stub.CreateConference(pb.CreateConferenceRequest(conference_id="idle-a"))
            assert began <= created.expire_time_ms - 1000 <= time.time() * 1000
            await stub.CreateConference(pb.CreateConferenceRequest(conference_id="idle-b"))
            await stub.CreateConference(pb.CreateConferenceRequest(conference_id="idle-c"))
            await stub.EndConference(pb.EndConferenceRequest(conference_id="idle-c"))
            present = Client(stub, "idle-b", "ana", "en")
            await present.open()
            await asyncio.sleep(2.5)  # idle TTL 1 s, swept every 0.25 s
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.GetConference(pb.GetConferenceRequest(conference_id="idle-a"))
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
            assert "conference_id" in field_violations(gone.value)
            kept = await stub.GetConference(pb.GetConferenceRequest(conference_id="idle-b"))
            assert kept.state == ACTIVE and [p.participant_id for p in kept.participants] == ["ana"]
            assert kept.expire_time_ms > time.time() * 1000, "renewed while someone is connected"
            ended = await stub.GetConference(pb.GetConferenceRequest(conference_id="idle-c"))
            assert ended.state == ENDED, "an ended conference stays readable for 300 s"
            await present.close()  # the last participant leaves: the idle clock starts
            await asyncio.sleep(2.5)
            with pytest.raises(grpc.aio.AioRpcError) as expired:
                await stub.GetConference(pb.GetConferenceRequest(conference_id="idle-b"))
            assert expired.value.code() == grpc.StatusCode.NOT_FOUND
            late = Client(stub, "idle-b", "bo", "en")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await late.open()
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            await late.close()
    finally:
        await gateway.stop()


async def test_list_conferences_pages_through_every_conference(nats_server: NatsServer) -> None:
    gateway = await start_gateway(nats_server)
    try:
        async with channel_to(gateway.address) as stub:
            ids = [f"page-{i}" for i in range(7)]
            for conference_id in reversed(ids):
                await stub.CreateConference(pb.CreateConferenceRequest(conference_id=conference_id))
            await stub.EndConference(pb.EndConferenceRequest(conference_id="page-3"))
            listener = Client(stub, "page-5", "ana", "en")
            await listener.open()
            seen: list[pb.Conference] = []
            token, pages = "", 0
            while True:
                page = await stub.ListConferences(pb.ListConferencesRequest(page_size=3, page_token=token))
                assert len(page.conferences) <= 3
                seen += page.conferences
                pages += 1
                token = page.next_page_token
                if not token:
                    break
            await listener.close()
            listed = [c.conference_id for c in seen]
            assert listed == sorted(listed) and len(set(listed)) == len(listed), "in id order, each once"
            mine = {c.conference_id: c for c in seen if c.conference_id.startswith("page-")}
            assert sorted(mine) == ids and pages >= 3
            assert mine["page-3"].state == ENDED and mine["page-0"].state == ACTIVE
            assert [p.participant_id for p in mine["page-5"].participants] == ["ana"], "live view of a room"
            everything = await stub.ListConferences(pb.ListConferencesRequest())
            assert len(everything.conferences) <= 50

            for bad in ("not-a-token", "x" * 5000, "YzE6QmFkIElk"):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListConferences(pb.ListConferencesRequest(page_token=bad))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "page_token" in field_violations(refused.value)
            with pytest.raises(grpc.aio.AioRpcError) as negative:
                await stub.ListConferences(pb.ListConferencesRequest(page_size=-1))
            assert "page_size" in field_violations(negative.value)
    finally:
        await gateway.stop()


async def test_drain_delivers_the_segment_in_flight_then_ends_the_stream_with_draining(
    nats_server: NatsServer, fake_cascade: FakeCascade
) -> None:
    fake_cascade.delay_s = 1.0  # the segment is still in the cascade when the drain begins
    gateway = await start_gateway(nats_server, drain_wait_s=10)
    async with channel_to(gateway.address) as stub:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="drain-1"))
        ana = Client(stub, "drain-1", "ana", "en", rejoin=False)
        bo = Client(stub, "drain-1", "bo", "es", rejoin=False)
        await ana.open()
        await bo.open()
        try:
            await _text(ana, "Last words.")
            for _ in range(100):
                if any(s.conference_id == "drain-1" for s in fake_cascade.segments):
                    break
                await asyncio.sleep(0.02)
            began = time.monotonic()
            await gateway.server.drain()  # the on_drain hook waits for the segment's results
            assert time.monotonic() - began >= 0.5
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await bo.wait_for(lambda e: False, 10)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and reason_of(ended.value) == "DRAINING"
            kinds = [e.WhichOneof("event") for e in bo.events]
            assert {"transcript", "translation", "speech", "latency"} <= set(kinds), kinds
            assert bo.of("translation")[0].text == "[es] Last words."
            assert any(c.last for c in bo.of("speech")), "all of the speech, not part of it"
        finally:
            await ana.close()
            await bo.close()


async def test_a_draining_gateway_refuses_new_speech_and_joins(nats_server: NatsServer) -> None:
    gateway = await start_gateway(nats_server, drain_wait_s=1)
    async with channel_to(gateway.address) as stub:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="drain-2"))
        ana = Client(stub, "drain-2", "ana", "en", rejoin=False)
        await ana.open()
        gateway.servicer.handing_over = True  # what the on_drain hook sets first
        await _text(ana, "Too late.")
        refused = await ana.wait_for(_is("error"), 5)
        assert refused.error.code == grpc.StatusCode.UNAVAILABLE.value[0] and "draining" in refused.error.message
        late = Client(stub, "drain-2", "bo", "en", rejoin=False)
        with pytest.raises(grpc.aio.AioRpcError) as turned_away:
            await late.open()
        assert turned_away.value.code() == grpc.StatusCode.UNAVAILABLE and reason_of(turned_away.value) == "DRAINING"
        await late.close()
        await ana.close()
    await gateway.stop()


async def test_a_participant_who_disconnects_leaves_and_the_floor_passes_on(nats_server: NatsServer) -> None:
    """The client cancels its Join: the gateway's stream handler ends and the participant leaves (even though the
    runtime's drain wrapper stops iterating the handler's generator when the call is cancelled)."""
    gateway = await start_gateway(nats_server)
    async with channel_to(gateway.address) as stub:
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="leave-1"))
        holder, waiting = Client(stub, "leave-1", "ana", "en"), Client(stub, "leave-1", "bo", "en")
        await holder.open()
        await waiting.open()
        await holder.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        await holder.wait_for(_is("floor", kind=GRANTED), 5)
        await waiting.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        await waiting.wait_for(_is("floor", kind=pb.FLOOR_EVENT_KIND_QUEUED), 5)
        await holder.close()
        await waiting.wait_for(_is("floor", kind=GRANTED), 5)
        conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="leave-1"))
        assert [p.participant_id for p in conference.participants] == ["bo"]
        await waiting.close()
    await gateway.stop()


# -- the real cascade --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workers(
    nats_server: NatsServer, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerPool]:
    env = {"TESSERA_NATS_URL": nats_server.url, "TESSERA_TRITON_URL": triton_server.grpc_url, "TESSERA_PORT": "0",
           "TESSERA_GRACE_S": "2"}  # fmt: skip
    pool = WorkerPool("translation", env, tmp_path_factory.mktemp("durable-workers"))
    for stage in ("asr", "mt", "tts"):
        pool.start(stage)
    yield pool
    pool.stop()


async def _serve(nats: NatsServer, triton: TritonServer, port: int = 0) -> tuple[service.Capability, TesseraServer]:
    settings = ServerSettings(port=port, nats_url=nats.url, triton_url=triton.grpc_url, drain_delay_s=0.2, grace_s=15)
    return await service.start("translation", settings)


async def _ready(stub: pb_grpc.ConferenceServiceStub) -> None:
    for _ in range(600):  # the gateway reads its languages from Triton before it takes conferences
        with contextlib.suppress(grpc.aio.AioRpcError):  # UNAVAILABLE until the channel has reconnected
            if (await stub.ListLanguages(pb.ListLanguagesRequest())).asr_languages:
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the gateway never read its languages")


@pytest.mark.slow
async def test_real_cascade_participants_rejoin_a_restarted_gateway_and_are_heard(
    nats_server: NatsServer, triton_server: TritonServer, workers: WorkerPool
) -> None:
    capability, server = await _serve(nats_server, triton_server)
    port = server.port
    async with channel_to(f"127.0.0.1:{port}") as stub:
        await _ready(stub)
        await stub.CreateConference(pb.CreateConferenceRequest(conference_id="durable-real"))
        ana, bo = Client(stub, "durable-real", "ana", "en"), Client(stub, "durable-real", "bo", "es")
        await ana.open()
        await bo.open()
        try:
            await _text(ana, "Good morning.")
            await bo.wait_for(_is("translation", seq=1), 60)

            await server.drain()  # SIGTERM: NOT_SERVING, the on_drain hook, streams end UNAVAILABLE/DRAINING
            await capability.close()
            capability, server = await _serve(nats_server, triton_server, port)
            await _ready(stub)
            conference = await stub.GetConference(pb.GetConferenceRequest(conference_id="durable-real"))
            assert conference.state == ACTIVE and conference.segments_accepted == 1
            await ana.wait_for(lambda e: ana.rejoins == 1, 60)
            await bo.wait_for(lambda e: bo.rejoins == 1, 60)

            await ana.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
            await ana.wait_for(_is("floor", kind=GRANTED), 10)
            pcm, rate = speech_wav("beckett.wav")
            await ana.speak(pcm[: rate * 3], rate)  # "Ever tried. Ever failed." and a pause
            await ana.send(pb.ClientEvent(release_floor=pb.ReleaseFloor()))
            heard = await bo.wait_for(lambda e: e.WhichOneof("event") == "translation" and e.translation.seq >= 2, 120)
            assert heard.translation.source_language == "en" and heard.translation.target_language == "es"
            await bo.wait_for(lambda e: e.WhichOneof("event") == "speech" and e.speech.seq >= 2 and e.speech.last, 120)
            await _text(bo, "Buenas noches.")
            hears = await ana.wait_for(_is("translation", speaker_id="bo"), 120)
            assert hears.translation.target_language == "en" and hears.translation.text
        finally:
            await ana.close()
            await bo.close()
            await server.server.stop(0)
            await capability.close()
