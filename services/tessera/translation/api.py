"""gRPC gateway of the conference service: Join streams <-> floor, VAD segmentation, cascade, fan-out.

Conferences are records in JetStream key-value (``store``), so they outlive the gateway: after a restart, a crash or
a drain, participants Join the same conference again at the new gateway, which takes it over from its record. What
only lives with the connections (the floor, listener queues, segmenters, ordering) is held in memory, per "room",
while anyone is connected here, and rebuilt as participants rejoin. The gateway publishes each segment of the floor
holder's speech to the cascade once, watches the cascade's results and fans each one out to the listeners of its
language, in segment order, through bounded per-listener queues. A conference nobody is connected to and with no
join, leave or speech for the idle TTL is deleted; an ended one 300 s after its end.

On drain (SIGTERM) the gateway stops taking speech, cuts what each speaker has said so far into segments, waits
(bounded) until every segment in flight has reached its listeners, and only then are the streams ended with
UNAVAILABLE/DRAINING, telling clients to rejoin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.common.v1 import common_pb2
from tessera.runtime import config
from tessera.runtime.bus import Bus, Received, Subscription
from tessera.runtime.echo import shown
from tessera.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from tessera.runtime.identifiers import check_display_name, check_id
from tessera.runtime.inference import TritonClient
from tessera.runtime.server import ServiceRegistration, TesseraServer, draining_error, not_ready_error
from tessera.runtime.service import Capability, serving_when_models_ready
from tessera.translation import cascade, store
from tessera.translation.audio import ASR_RATE, AudioError, decode_chunk
from tessera.translation.conference import Conference, JoinRefused, Participant, SegmentPlan, State
from tessera.translation.delivery import ListenerQueue, SegmentOrder
from tessera.translation.floor import Notice, NoticeKind
from tessera.translation.languages import LanguageSupport
from tessera.translation.segmenter import Segment, Segmenter
from tessera.translation.store import ConferenceStore
from tessera.translation.v1 import cascade_pb2 as msg
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc
from tessera.translation.vad import SileroDetector

log = logging.getLogger("tessera.translation")
T = TypeVar("T")
SERVICE_NAME = "tessera.translation.v1.ConferenceService"
_FLOOR_KINDS = {
    NoticeKind.GRANTED: pb.FLOOR_EVENT_KIND_GRANTED,
    NoticeKind.QUEUED: pb.FLOOR_EVENT_KIND_QUEUED,
    NoticeKind.RELEASED: pb.FLOOR_EVENT_KIND_RELEASED,
    NoticeKind.CHANGED: pb.FLOOR_EVENT_KIND_CHANGED,
}
_ENCODINGS = {common_pb2.AUDIO_ENCODING_PCM16: "pcm16", common_pb2.AUDIO_ENCODING_FLOAT32: "float32"}


class TranslationSettings(BaseSettings):
    """``TESSERA_TRANSLATION_*``."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_TRANSLATION_", extra="ignore")

    max_floor_hold_ms: int = Field(60_000, ge=1000)
    listener_queue_events: int = Field(256, ge=8)
    join_timeout_s: float = Field(10.0, gt=0)
    max_conferences: int = Field(1000, ge=1)
    max_participants: int = Field(512, ge=2)
    gap_timeout_s: float = Field(20.0, gt=0)  # longer than a stage consumer's ack wait (15 s)
    speech_chunk_ms: int = Field(500, ge=20)
    max_text_chars: int = Field(2000, ge=1)
    vad_min_silence_ms: int = Field(500, ge=100)
    max_segment_s: float = Field(15.0, ge=1)
    models_ready_timeout_s: float = Field(600.0, gt=0)
    # Nobody connected and no join, leave or speech for this long: the conference is deleted.
    conference_idle_ttl_s: float = Field(3600.0, ge=1, le=604_800)
    # On drain, how long in-flight segments may take to reach their listeners before the streams end.
    drain_wait_s: float = Field(5.0, ge=0, le=60)

    @property
    def sweep_s(self) -> float:
        """How often expiry is checked: a quarter of the idle TTL, between 0.25 s and 30 s."""
        return min(30.0, max(0.25, self.conference_idle_ttl_s / 4))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Listener:
    participant: Participant
    queue: ListenerQueue[pb.ServerEvent | None]
    start_seq: int


@dataclass
class Room:
    """One conference's live state on this gateway, while anyone is connected to it here."""

    conference: Conference
    listeners: dict[str, Listener] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one record write at a time
    segmenters: dict[str, Segmenter] = field(default_factory=dict)
    plans: dict[int, tuple[str, ...]] = field(default_factory=dict)  # seq -> target languages
    orders: dict[tuple[str, str], SegmentOrder[Any]] = field(default_factory=dict)
    speech_offsets: dict[str, int] = field(default_factory=dict)  # speaker -> ms of audio received

    def plan(self, seq: int, targets: tuple[str, ...], gap_timeout_s: float) -> None:
        """Record a segment's languages; a stream's order starts at the first segment that will carry it."""
        self.plans[seq] = targets
        for kind, language in [("transcript", ""), *[(k, t) for t in targets for k in ("text", "speech")]]:
            if (kind, language) not in self.orders:
                expects = self._expects(kind, language)
                self.orders[(kind, language)] = SegmentOrder(seq, gap_timeout_s, expects)

    def _expects(self, kind: str, language: str) -> Callable[[int], bool]:
        if kind == "transcript":
            return lambda seq: seq in self.plans
        return lambda seq: language in self.plans.get(seq, ())

    def in_flight(self) -> int:
        """Segments published whose results have not all been released to the listeners yet."""
        return sum(
            1
            for seq in self.plans
            if any(seq >= order.next_seq and order.expects(seq) for order in self.orders.values())
        )

    def queued(self) -> int:
        """Events waiting in listener queues (not yet written to the streams)."""
        return sum(len(listener.queue) for listener in self.listeners.values())


class ConferenceServicer(pb_grpc.ConferenceServiceServicer):
    def __init__(self, own: TranslationSettings, bus: Bus, triton: TritonClient) -> None:
        self.own = own
        self.bus = bus
        self.triton = triton
        self.store = ConferenceStore(bus)
        self.rooms: dict[str, Room] = {}  # conferences someone is connected to here
        self.known: dict[str, pb.Conference] = {}  # the last record seen of each conference (counts active ones)
        self._creating: set[str] = set()
        self.support = LanguageSupport(frozenset(), frozenset(), frozenset())
        self.handing_over = False  # draining: no new joins or speech
        self.frozen = False  # drained: no more writes, the next gateway owns the records
        self._tasks: list[asyncio.Future[Any]] = []
        self._subscriptions: list[Subscription] = []

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self, server: TesseraServer) -> None:
        await self.bus.ensure(cascade.STREAM)
        await self.store.open()
        for stage in ("transcript", "text.*", "speech.*"):
            self._subscriptions.append(await self.bus.watch(f"{cascade.PREFIX}.*.{stage}", self._on_result))
        self._tasks.append(asyncio.ensure_future(self._tick()))
        self._tasks.append(asyncio.ensure_future(self._sweeper()))

    async def models_ready(self) -> None:
        self.support = await cascade.language_support(self.triton)
        log.info("languages: %s", self.support.participant_languages())

    async def drain(self) -> None:
        """The on_drain hook: take no more speech, cut what was said into segments, then wait (at most
        ``drain_wait_s``) until every segment in flight has been released to, and written out to, its listeners."""
        self.handing_over = True
        for room in list(self.rooms.values()):
            for speaker in list(room.segmenters):
                with contextlib.suppress(Unavailable, FailedPrecondition):
                    await self._flush(room, speaker)
        self.frozen = True  # what happens from here on (leaves) is the next gateway's to record
        deadline = time.monotonic() + self.own.drain_wait_s
        while time.monotonic() < deadline:
            in_flight = sum(room.in_flight() for room in self.rooms.values())
            queued = sum(room.queued() for room in self.rooms.values())
            if not in_flight and not queued:
                break
            await asyncio.sleep(0.05)
        else:
            log.warning("drain: %.1f s passed with segments still in flight; ending the streams", self.own.drain_wait_s)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for room in self.rooms.values():
            for listener in room.listeners.values():
                listener.queue.put(None)

    # -- conference records ----------------------------------------------------------------------------------
    def _record(self, room: Room) -> pb.Conference:
        return store.to_record(room.conference, self.own.conference_idle_ttl_s, _now_ms(), bool(room.listeners))

    async def _write(self, room: Room, change: Callable[[Conference], T] | None = None) -> T | None:
        """Apply ``change`` to the conference and store it, after taking in what the stored record says (another
        gateway may have written it): one write at a time per conference. An end found in the record ends the
        conference here too, before ``change`` runs."""
        async with room.lock:
            ended_elsewhere = False
            if not self.frozen:
                stored = await self.store.get(room.conference.conference_id)
                ended_elsewhere = stored is not None and store.merge(room.conference, stored)
            if ended_elsewhere:
                self._close_listeners(room)
            result = change(room.conference) if change is not None else None
            if not self.frozen:
                record = self._record(room)
                await self.store.put(record)
                self.known[record.conference_id] = record
            return result

    async def _record_of(self, conference_id: str, field_name: str) -> pb.Conference:
        check_id(conference_id, field_name)
        room = self.rooms.get(conference_id)
        if room is not None:
            return self._describe(room)
        record = await self.store.get(conference_id)
        if record is None:
            raise NotFound(f"no conference {shown(conference_id)}", field=field_name)
        self.known[conference_id] = record
        return record

    async def _room(self, conference_id: str, field_name: str) -> Room:
        """The conference's live state here, taken over from its record when nobody is connected here yet."""
        check_id(conference_id, field_name)
        room = self.rooms.get(conference_id)
        if room is not None:
            return room
        record = await self.store.get(conference_id)
        room = self.rooms.get(conference_id)  # taken over by another call meanwhile
        if room is not None:
            return room
        if record is None:
            raise NotFound(f"no conference {shown(conference_id)}", field=field_name)
        self.known[conference_id] = record
        room = self.rooms[conference_id] = Room(store.from_record(record, self.support))
        log.info("took over conference %s at segment %d", conference_id, room.conference.next_seq)
        return room

    def _describe(self, room: Room) -> pb.Conference:
        described = self._record(room)
        described.floor_holder_id = room.conference.floor.holder
        described.floor_queue.extend(room.conference.floor.queue)
        return described

    # -- conference resource ---------------------------------------------------------------------------------
    async def CreateConference(
        self, request: pb.CreateConferenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Conference:
        if not self.support.asr:
            raise not_ready_error("translation")
        conference_id = check_id(request.conference_id or uuid.uuid4().hex[:12], "conference_id")
        hold_ms = request.max_floor_hold_ms or self.own.max_floor_hold_ms
        if not 1000 <= hold_ms <= 3_600_000:
            raise InvalidArgument("must be 1000-3600000 ms", field="max_floor_hold_ms")
        exists = conference_id in self.rooms or await self.store.get(conference_id) is not None
        if exists or conference_id in self._creating:
            raise InvalidArgument(f"conference {shown(conference_id)} exists", field="conference_id")
        self._creating.add(conference_id)
        try:
            ids = await self.store.ids()
            ended = pb.CONFERENCE_STATE_ENDED
            active = sum(1 for i in ids if i not in self.known or self.known[i].state != ended)
            if active >= self.own.max_conferences:
                raise ResourceExhausted(f"at most {self.own.max_conferences} conferences")
            now = _now_ms()
            conf = Conference(
                conference_id,
                check_display_name(request.display_name, "display_name"),
                hold_ms / 1000,
                now,
                self.support,
            )
            record = store.to_record(conf, self.own.conference_idle_ttl_s, now, connected=False)
            await self.store.put(record)
            self.known[conference_id] = record
            return record
        finally:
            self._creating.discard(conference_id)

    async def GetConference(
        self, request: pb.GetConferenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Conference:
        return await self._record_of(request.conference_id, "conference_id")

    async def EndConference(
        self, request: pb.EndConferenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Conference:
        check_id(request.conference_id, "conference_id")
        room = self.rooms.get(request.conference_id)
        if room is None:  # nobody connected here: end the record
            record = await self._record_of(request.conference_id, "conference_id")
            if record.state == pb.CONFERENCE_STATE_ENDED:
                return record
            conf = store.from_record(record, self.support)
            conf.end(_now_ms())
            ended = store.to_record(conf, self.own.conference_idle_ttl_s, _now_ms(), connected=False)
            ended.participants.extend(record.participants)
            await self.store.put(ended)
            self.known[ended.conference_id] = ended
            return ended
        for speaker in list(room.segmenters):  # what was said before the end is still translated
            with contextlib.suppress(Unavailable, FailedPrecondition):
                await self._flush(room, speaker)
        await self._write(room, lambda conf: conf.end(_now_ms()))
        described = self._describe(room)
        self._close_listeners(room)
        return described

    async def ListConferences(
        self, request: pb.ListConferencesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListConferencesResponse:
        size = store.page_size(request.page_size)
        after = store.decode_page_token(request.page_token) if request.page_token else ""
        page = store.page_of(await self.store.ids(), after, size)

        async def described(conference_id: str) -> pb.Conference | None:
            room = self.rooms.get(conference_id)
            return self._describe(room) if room is not None else await self.store.get(conference_id)

        found = await asyncio.gather(*(described(i) for i in page.ids))
        return pb.ListConferencesResponse(
            conferences=[c for c in found if c is not None], next_page_token=page.next_page_token
        )

    async def ListLanguages(
        self, request: pb.ListLanguagesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListLanguagesResponse:
        s = self.support
        return pb.ListLanguagesResponse(
            participant_languages=s.participant_languages(),
            asr_languages=sorted(s.asr),
            mt_pairs=[pb.LanguagePair(source=a, target=b) for a, b in sorted(s.mt_pairs)],
            tts_languages=sorted(s.tts),
        )

    # -- the Join stream -------------------------------------------------------------------------------------
    async def Join(
        self, request_iterator: AsyncIterator[pb.ClientEvent], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ServerEvent]:
        events = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(events.__anext__(), self.own.join_timeout_s)
        except (TimeoutError, StopAsyncIteration):
            raise InvalidArgument(f"send join first, within {self.own.join_timeout_s:g} s", field="join") from None
        if first.WhichOneof("event") != "join":
            raise InvalidArgument("the first event must be join", field="join")
        if self.handing_over:
            raise draining_error()
        if not self.support.asr:
            raise not_ready_error("translation", "join again shortly")
        room = await self._room(first.join.conference_id, "join.conference_id")
        listener = await self._admit(room, first.join)
        # The stream's end (the client cancelled or went away) wakes the reader below, so that the participant
        # leaves even when the server has stopped iterating this generator.
        context.add_done_callback(lambda _: listener.queue.put(None))  # type: ignore[arg-type]  # stub: a class
        participant = listener.participant
        log.info("%s joined %s (%s)", participant.participant_id, room.conference.conference_id, participant.language)
        reader = asyncio.ensure_future(self._read(room, listener, events))
        try:
            yield pb.ServerEvent(joined=pb.Joined(conference=self._describe(room), next_segment_seq=listener.start_seq))
            yield pb.ServerEvent(
                floor=pb.FloorEvent(
                    kind=pb.FLOOR_EVENT_KIND_CHANGED, holder_id=room.conference.floor.holder, reason="joined"
                )
            )
            while True:
                event = await listener.queue.get()
                dropped = listener.queue.take_dropped()
                if dropped:
                    yield pb.ServerEvent(dropped=pb.Dropped(count=dropped, reason="listener queue full"))
                if event is None:
                    return  # conference ended, gateway stopping, or the call is over
                yield event
        finally:
            reader.cancel()
            await self._leave(room, listener)

    async def _admit(self, room: Room, join: pb.JoinRequest) -> Listener:
        """``join``'s participant, connected and recorded; a refused join leaves nothing behind."""
        listener: Listener | None = None
        try:
            if len(room.conference.participants) >= self.own.max_participants:
                raise ResourceExhausted(f"at most {self.own.max_participants} participants", field="join.conference_id")
            try:
                participant = room.conference.join(
                    join.participant_id, check_display_name(join.display_name, "join.display_name"), join.language
                )
            except JoinRefused as exc:
                raise InvalidArgument(str(exc), field=exc.field) from None
            capacity = min(join.max_queued_events or self.own.listener_queue_events, self.own.listener_queue_events)
            listener = Listener(participant, ListenerQueue(capacity), room.conference.next_seq)
            room.listeners[participant.participant_id] = listener
            await self._write(room, _touch)
            if room.conference.state is not State.ACTIVE:  # ended at another gateway, as its record says
                raise InvalidArgument("the conference has ended", field="join.conference_id")
            listener.start_seq = room.conference.next_seq  # after the record's counter was taken in
            return listener
        except BaseException:
            if listener is not None:
                pid = listener.participant.participant_id
                room.listeners.pop(pid, None)
                room.conference.leave(pid)
            self._release_if_empty(room)
            raise

    def _release_if_empty(self, room: Room) -> None:
        """Nobody connected here any more: the room goes; its record holds all that is left of it."""
        if not room.listeners and self.rooms.get(room.conference.conference_id) is room:
            del self.rooms[room.conference.conference_id]

    async def _read(self, room: Room, listener: Listener, events: AsyncIterator[pb.ClientEvent]) -> None:
        pid = listener.participant.participant_id
        async for event in events:
            kind = event.WhichOneof("event")
            try:
                if kind == "request_floor":
                    self._notify(room, room.conference.floor.request(pid, time.monotonic()))
                elif kind == "release_floor":
                    await self._flush(room, pid)
                    self._notify(room, room.conference.floor.release(pid, time.monotonic()))
                elif kind == "audio":
                    await self._on_audio(room, listener, event.audio)
                elif kind == "text":
                    await self._on_text(room, listener, event.text.text)
                else:
                    raise InvalidArgument("already joined; send floor requests, audio or text", field="join")
            except (InvalidArgument, FailedPrecondition) as exc:
                listener.queue.put(_error(exc))
            except Unavailable as exc:  # the bus, or this gateway draining
                listener.queue.put(
                    pb.ServerEvent(
                        error=pb.ErrorEvent(
                            code=grpc.StatusCode.UNAVAILABLE.value[0], message=f"not accepted, please repeat: {exc}"
                        )
                    )
                )

    def _accepting(self, room: Room) -> None:
        if self.handing_over:
            raise Unavailable("the gateway is draining: join again (UNAVAILABLE/DRAINING follows) and repeat this")
        if room.conference.state is not State.ACTIVE:
            raise FailedPrecondition("the conference has ended")

    async def _on_audio(self, room: Room, listener: Listener, chunk: common_pb2.AudioChunk) -> None:
        pid, language = listener.participant.participant_id, listener.participant.language
        self._accepting(room)
        if not room.conference.floor.may_speak(pid):
            raise FailedPrecondition(
                "you do not hold the floor: send request_floor and wait for GRANTED; audio dropped", field="audio"
            )
        if not self.support.can_speak(language):
            raise FailedPrecondition(f"no speech recognition for {shown(language)}; send text instead", field="audio")
        try:
            samples = decode_chunk(chunk.data, _ENCODINGS.get(chunk.encoding, ""), chunk.sample_rate_hz, chunk.channels)
        except AudioError as exc:
            raise InvalidArgument(str(exc), field=exc.field) from None
        segmenter = room.segmenters.get(pid)
        if segmenter is None:
            segmenter = room.segmenters[pid] = Segmenter(
                SileroDetector(), min_silence_ms=self.own.vad_min_silence_ms, max_segment_s=self.own.max_segment_s
            )
        segments = await asyncio.to_thread(segmenter.push, samples)
        for segment in segments:
            await self._publish(room, pid, segment, "")

    async def _on_text(self, room: Room, listener: Listener, text: str) -> None:
        self._accepting(room)
        text = text.strip()
        if not text:
            raise InvalidArgument("must not be empty", field="text.text")
        if len(text) > self.own.max_text_chars:
            raise InvalidArgument(f"at most {self.own.max_text_chars} characters", field="text.text")
        await self._publish(room, listener.participant.participant_id, None, text)

    async def _flush(self, room: Room, speaker: str) -> None:
        """What ``speaker`` said so far, cut into segments and published (also after an end: it was said before)."""
        segmenter = room.segmenters.pop(speaker, None)
        if segmenter is not None:
            for segment in await asyncio.to_thread(segmenter.flush):
                await self._publish(room, speaker, segment, "", final=True)

    async def _publish(
        self, room: Room, speaker: str, segment: Segment | None, text: str, *, final: bool = False
    ) -> None:
        if speaker not in room.conference.participants:
            return
        if self.frozen:
            raise Unavailable("the gateway is draining: join again and repeat this")

        def plan_segment(conf: Conference) -> SegmentPlan:
            if conf.state is not State.ACTIVE and not final:
                raise FailedPrecondition("the conference has ended")
            conf.last_activity_ms = _now_ms()
            return conf.plan_segment(speaker)

        # The counter is stored before the segment is published: a gateway taking over never reuses a number.
        plan = await self._write(room, plan_segment)
        assert plan is not None
        room.plan(plan.seq, plan.targets, self.own.gap_timeout_s)
        rate = ASR_RATE  # the segmenter's output
        audio = msg.SegmentAudio(
            conference_id=room.conference.conference_id,
            segment_id=plan.segment_id,
            seq=plan.seq,
            speaker_id=speaker,
            language=plan.language,
            target_languages=list(plan.targets),
            times=msg.StageTimes(cut_unix_ms=_now_ms()),
            text=text,
        )
        if segment is not None:
            audio.pcm_f32 = segment.audio.tobytes()
            audio.start_ms, audio.end_ms = segment.start_sample * 1000 // rate, segment.end_sample * 1000 // rate
        try:
            await self.bus.publish(
                cascade.subject(room.conference.conference_id, "audio"),
                audio.SerializeToString(),
                msg_id=plan.segment_id,
            )
        except BaseException:
            room.plans.pop(plan.seq, None)  # never published: nobody waits for its results
            raise

    async def _leave(self, room: Room, listener: Listener) -> None:
        pid = listener.participant.participant_id
        if room.listeners.get(pid) is not listener:
            return  # already left
        del room.listeners[pid]
        with contextlib.suppress(Unavailable, FailedPrecondition):
            await self._flush(room, pid)  # speech already spoken is still translated
        self._notify(room, room.conference.floor.leave(pid, time.monotonic()))
        room.conference.leave(pid)
        log.info("%s left %s", pid, room.conference.conference_id)
        try:
            await self._write(room, _touch)
        except Unavailable as exc:
            log.warning("%s left %s; not recorded: %s", pid, room.conference.conference_id, exc)
        self._release_if_empty(room)

    def _close_listeners(self, room: Room) -> None:
        for listener in room.listeners.values():
            listener.queue.put(None)

    def _notify(self, room: Room, notices: list[Notice]) -> None:
        for notice in notices:
            event = pb.ServerEvent(
                floor=pb.FloorEvent(
                    kind=_FLOOR_KINDS[notice.kind],
                    holder_id=notice.holder,
                    queue_position=notice.position,
                    reason=notice.reason,
                )
            )
            targets = room.listeners.values() if notice.to is None else [room.listeners.get(notice.to)]
            for listener in targets:
                if listener is not None:
                    listener.queue.put(event)

    # -- results from the cascade ----------------------------------------------------------------------------
    async def _on_result(self, message: Received) -> None:
        parts = cascade.parse_subject(message.subject)
        if parts is None:
            return
        room = self.rooms.get(parts.conference_id)
        if room is None:
            return  # a conference of another gateway replica
        stage, language = parts.stage, parts.language
        try:
            order = room.orders.get((stage, language))
            if order is None:
                return  # not a stream this gateway planned
            item: msg.SegmentText | msg.SegmentSpeech
            item = (
                msg.SegmentSpeech.FromString(message.data)
                if stage == "speech"
                else msg.SegmentText.FromString(message.data)
            )
            for released in order.offer(item.seq, item, time.monotonic()):
                self._deliver(room, stage, released)
        except Exception:
            log.exception("bad cascade message on %s", message.subject)

    def _deliver(self, room: Room, kind: str, item: Any) -> None:
        if kind == "transcript":
            self._deliver_transcript(room, item)
        elif kind == "text":
            self._deliver_translation(room, item)
        else:
            self._deliver_speech(room, item)

    def _listeners(self, room: Room, seq: int, language: str | None = None) -> list[Listener]:
        return [
            listener
            for listener in room.listeners.values()
            if listener.start_seq <= seq and (language is None or listener.participant.language == language)
        ]

    def _deliver_transcript(self, room: Room, text: msg.SegmentText) -> None:
        event = pb.ServerEvent(
            transcript=pb.Transcript(
                segment_id=text.segment_id,
                seq=text.seq,
                speaker_id=text.speaker_id,
                language=text.language,
                text=text.text,
                span=common_pb2.TimeRange(start_ms=text.start_ms, end_ms=text.end_ms),
            )
        )
        for listener in self._listeners(room, text.seq):
            listener.queue.put(event)

    def _deliver_translation(self, room: Room, text: msg.SegmentText) -> None:
        event = pb.ServerEvent(
            translation=pb.Translation(
                segment_id=text.segment_id,
                seq=text.seq,
                speaker_id=text.speaker_id,
                source_language=text.source_language,
                target_language=text.language,
                text=text.text,
            )
        )
        for listener in self._listeners(room, text.seq, text.language):
            listener.queue.put(event)

    def _deliver_speech(self, room: Room, speech: msg.SegmentSpeech) -> None:
        listeners = self._listeners(room, speech.seq, speech.language)
        if not listeners:
            return
        rate = speech.sample_rate_hz or ASR_RATE
        step = max(2, rate * self.own.speech_chunk_ms // 1000 * 2)
        pcm = speech.pcm16
        pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)] or [b""]
        events = [
            pb.ServerEvent(
                speech=pb.SpeechChunk(
                    segment_id=speech.segment_id,
                    seq=speech.seq,
                    language=speech.language,
                    last=i == len(pieces) - 1,
                    audio=common_pb2.AudioChunk(
                        data=piece, encoding=common_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=rate, channels=1
                    ),
                )
            )
            for i, piece in enumerate(pieces)
        ]
        times = speech.times
        total = max(0.0, _now_ms() - times.cut_unix_ms) if times.cut_unix_ms else 0.0
        stages = times.asr_ms + times.mt_ms + times.tts_ms
        latency = pb.ServerEvent(
            latency=pb.LatencyBreakdown(
                segment_id=speech.segment_id,
                language=speech.language,
                asr_ms=times.asr_ms,
                mt_ms=times.mt_ms,
                tts_ms=times.tts_ms,
                queue_ms=max(0.0, total - stages),
                total_ms=total,
            )
        )
        for listener in listeners:
            for event in events:
                listener.queue.put(event)
            listener.queue.put(latency)

    async def _tick(self) -> None:
        """Floor expiry and ordering gaps, four times a second."""
        while True:
            await asyncio.sleep(0.25)
            try:
                await self._tick_once(time.monotonic())
            except Exception:
                log.exception("floor and ordering tick failed")

    async def _tick_once(self, now: float) -> None:
        for room in list(self.rooms.values()):
            holder = room.conference.floor.holder
            notices = room.conference.floor.expire(now)
            if notices:
                with contextlib.suppress(Unavailable, FailedPrecondition):
                    await self._flush(room, holder)
                self._notify(room, notices)
            for (kind, _language), order in list(room.orders.items()):
                for item in order.poll(now):
                    self._deliver(room, kind, item)
            low = min((o.next_seq for o in room.orders.values()), default=room.conference.next_seq)
            for seq in [s for s in room.plans if s < low - 1]:
                del room.plans[seq]

    async def _sweeper(self) -> None:
        while True:
            try:
                await self.sweep()
            except Unavailable as exc:
                log.warning("conference expiry skipped: %s", exc)
            except Exception:
                log.exception("conference expiry failed")
            await asyncio.sleep(self.own.sweep_s)

    async def sweep(self) -> None:
        """Delete expired conferences (every gateway sweeps the whole bucket: a crashed one's conferences expire
        too) and renew the expiry of those with participants connected here."""
        if self.frozen:
            return
        ids = await self.store.ids()
        for gone in set(self.known) - set(ids) - set(self.rooms):
            del self.known[gone]
        now = _now_ms()
        for conference_id in ids:
            if conference_id in self.rooms:
                continue
            record = await self.store.get(conference_id)
            if record is None:
                self.known.pop(conference_id, None)
                continue
            self.known[conference_id] = record
            if store.is_expired(record, now) and conference_id not in self.rooms and not self.frozen:
                await self.store.delete(conference_id)
                self.known.pop(conference_id, None)
                log.info(
                    "conference %s deleted: %s",
                    conference_id,
                    "ended" if record.state == pb.CONFERENCE_STATE_ENDED else "idle",
                )
        renew_ms = now + int(self.own.conference_idle_ttl_s * 1000 * 2 / 3)
        for room in list(self.rooms.values()):
            if not room.listeners and not room.lock.locked():
                self._release_if_empty(room)
                continue
            record = self.known.get(room.conference.conference_id)
            if record is None or record.expire_time_ms < renew_ms:
                await self._write(room)  # also finds an end recorded by another gateway


def _touch(conference: Conference) -> None:
    conference.last_activity_ms = _now_ms()


def _error(exc: InvalidArgument | FailedPrecondition) -> pb.ServerEvent:
    """A refused client event, reported in the stream (which goes on) rather than ending it."""
    return pb.ServerEvent(error=pb.ErrorEvent(code=exc.code.value[0], message=exc.message, field=exc.field or ""))


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(TranslationSettings)
    bus = await Bus.connect(settings.nats_url, "translation-gateway")
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = ConferenceServicer(own, bus, triton)
    return Capability(
        name="translation",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_ConferenceServiceServicer_to_server, servicer)],
        on_start=[
            serving_when_models_ready(
                triton, SERVICE_NAME, list(cascade.MODELS), own.models_ready_timeout_s, then=servicer.models_ready
            ),
            servicer.start,
        ],
        on_close=[bus.close, triton.close, servicer.close],
        on_drain=[servicer.drain],
    )
