"""A conference with N participants: one unit of load is an utterance of real speech, spoken into the cascade.

Each conference has ``participants`` Join streams with languages taken in turn from ``languages``; the speakers
are the participants whose language has speech recognition (the first language), taking turns. An utterance:
request the floor, stream the recording (``tessera.translation.client.speech_wav``) in 100 ms PCM16 chunks on an
absolute real-time schedule from the utterance's due time, release the floor, then wait until every listener
language has received the synthesised speech of every segment the gateway cut.

Per segment and listener language it records
- ``e2e_ms``: from the scheduled end of that segment's speech (due time + the segment's end within the utterance)
  to the first speech chunk at the listener: what the listener waits for, VAD silence included, measured from the
  schedule so that a client (or server) running late cannot hide it;
- the gateway's ``LatencyBreakdown``: model time per stage (asr, mt, tts) and queueing/transport (queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from loadtest.stack import Target
from tessera.common.v1 import common_pb2
from tessera.translation.client import speech_wav
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc

CHUNK_MS = 100
TOKENS_PER_WORD = 1.3  # subword tokens per word, to express MT cost per token as the planner's tables do


class UtteranceFailed(Exception):
    """An utterance that did not complete; ``detail`` keeps the segments that did."""

    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class Participant:
    """One Join stream; every server event is kept with its arrival time (perf_counter seconds)."""

    stub: Any  # ConferenceServiceStub on a grpc.aio channel
    conference_id: str
    participant_id: str
    language: str
    events: list[tuple[float, pb.ServerEvent]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _outbox: asyncio.Queue[pb.ClientEvent | None] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None
    _call: Any = None

    async def open(self, timeout_s: float = 20) -> None:
        join = pb.JoinRequest(
            conference_id=self.conference_id, participant_id=self.participant_id, language=self.language
        )
        await self._outbox.put(pb.ClientEvent(join=join))

        async def outgoing() -> AsyncIterator[pb.ClientEvent]:
            while (event := await self._outbox.get()) is not None:
                yield event

        self._call = self.stub.Join(outgoing())  # grpc.aio takes async iterators

        async def incoming() -> None:
            async for event in self._call:
                self.events.append((time.perf_counter(), event))
                self.changed.set()

        self._reader = asyncio.ensure_future(incoming())
        await self.wait_for(lambda e: e.WhichOneof("event") == "joined", timeout_s)

    async def send(self, event: pb.ClientEvent) -> None:
        await self._outbox.put(event)

    async def wait_for(self, predicate: Any, timeout_s: float, since: int = 0) -> pb.ServerEvent:
        deadline = time.perf_counter() + timeout_s
        seen = since
        while True:
            for _, event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if self._reader is not None and self._reader.done():
                self._reader.result()  # raises the stream's error
                raise ConnectionError(f"{self.participant_id}: stream closed")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{self.participant_id}: no matching event in {timeout_s:g} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def close(self) -> None:
        await self._outbox.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, ConnectionError):
                await self._reader


@dataclass
class Room:
    conference_id: str
    members: list[Participant]
    speakers: list[Participant]
    turn: int = 0
    accepted: int = 0  # segments accepted so far


def _seq(segment_id: str) -> int:
    return int(segment_id.rsplit("-", 1)[1])


@dataclass
class ConferenceScenario:
    target: Target
    participants: int
    languages: list[str]
    speech: NDArray[np.int16]
    rate: int
    timeout_s: float
    max_conferences: int
    name: str = "translation"
    channel: grpc.aio.Channel | None = None
    stub: Any = None  # a ConferenceServiceStub on a grpc.aio channel (its generated types are the sync ones)
    idle: list[Room] = field(default_factory=list)
    rooms: list[Room] = field(default_factory=list)
    error_events: dict[str, int] = field(default_factory=dict)
    dropped_events: int = 0
    speech_s_sent: float = 0.0
    warmup: dict[str, Any] = field(default_factory=dict)
    _serial: int = 0
    _run: str = ""

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any]) -> ConferenceScenario:
        pcm, rate = speech_wav(str(options.get("recording", "beckett.wav")))
        seconds = float(options.get("utterance_s", 0) or 0)
        if seconds:
            pcm = pcm[: int(seconds * rate)]
        return cls(
            target,
            int(options.get("participants", 4)),
            list(options.get("languages", ["en", "es", "ca"])),
            pcm,
            rate,
            float(options.get("timeout_s", 90)),
            int(options.get("max_conferences", 16)),
        )

    async def setup(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.target.address("translation"))
        self.stub = pb_grpc.ConferenceServiceStub(self.channel)
        self._run = f"lt{int(time.time()) % 100000}"
        for _ in range(600):  # the gateway answers UNAVAILABLE until its models are ready
            try:
                await self.stub.ListLanguages(pb.ListLanguagesRequest(), timeout=5)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        # Warm-up: one utterance through the whole cascade (first calls load pipelines and caches).
        self.warmup = await self.once(time.perf_counter())

    async def _room(self) -> Room:
        if self.idle:
            return self.idle.pop()
        if len(self.rooms) >= self.max_conferences:
            raise RuntimeError(f"more than {self.max_conferences} conferences would be needed")
        assert self.stub is not None
        self._serial += 1
        conference_id = f"{self._run}-c{self._serial}"
        await self.stub.CreateConference(pb.CreateConferenceRequest(conference_id=conference_id), timeout=10)
        members = [
            Participant(self.stub, conference_id, f"p{i}-{lang}", lang)
            for i, lang in enumerate(self.languages[i % len(self.languages)] for i in range(self.participants))
        ]
        await asyncio.gather(*(m.open() for m in members))
        speakers = [m for m in members if m.language == self.languages[0]]
        room = Room(conference_id, members, speakers)
        self.rooms.append(room)
        return room

    async def once(self, scheduled_s: float) -> dict[str, Any]:
        room = await self._room()
        try:
            return await self._utterance(room, scheduled_s)
        finally:
            self.idle.append(room)

    async def _utterance(self, room: Room, scheduled_s: float) -> dict[str, Any]:
        assert self.stub is not None
        speaker = room.speakers[room.turn % len(room.speakers)]
        room.turn += 1
        listeners = {m.language: m for m in room.members if m.language != speaker.language}
        marks = {id(m): len(m.events) for m in room.members}
        await speaker.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        await speaker.wait_for(
            lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == pb.FLOOR_EVENT_KIND_GRANTED,
            10,
            marks[id(speaker)],
        )
        step = self.rate * CHUNK_MS // 1000
        for n, start in enumerate(range(0, len(self.speech), step)):
            delay = scheduled_s + n * CHUNK_MS / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = common_pb2.AudioChunk(
                data=self.speech[start : start + step].astype("<i2").tobytes(),
                encoding=common_pb2.AUDIO_ENCODING_PCM16,
                sample_rate_hz=self.rate,
                channels=1,
            )
            await speaker.send(pb.ClientEvent(audio=chunk))
        self.speech_s_sent += len(self.speech) / self.rate
        await speaker.send(pb.ClientEvent(release_floor=pb.ReleaseFloor()))
        await speaker.wait_for(
            lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == pb.FLOOR_EVENT_KIND_RELEASED,
            30,
            marks[id(speaker)],
        )
        conference = await self.stub.GetConference(pb.GetConferenceRequest(conference_id=room.conference_id))
        seqs = list(range(room.accepted + 1, conference.segments_accepted + 1))
        room.accepted = conference.segments_accepted
        detail: dict[str, Any] = {"segments": [], "speech_s": len(self.speech) / self.rate, "seqs": len(seqs)}
        deadline = time.perf_counter() + self.timeout_s
        for language, listener in listeners.items():
            wanted = set(seqs)
            try:
                while wanted:
                    got = {
                        _seq(e.latency.segment_id)
                        for _, e in listener.events[marks[id(listener)] :]
                        if e.WhichOneof("event") == "latency"
                    }
                    wanted -= got
                    if wanted:
                        await listener.wait_for(
                            lambda e: e.WhichOneof("event") == "latency",
                            max(0.01, deadline - time.perf_counter()),
                            len(listener.events),
                        )
            finally:
                detail["segments"] += self._segments(listener, language, marks[id(listener)], scheduled_s, seqs)
                self._count_errors(listener, marks[id(listener)])
            if wanted:
                raise UtteranceFailed(f"{language}: segments {sorted(wanted)} never arrived", detail)
        self._count_errors(speaker, marks[id(speaker)])
        return detail

    def _segments(
        self, listener: Participant, language: str, mark: int, scheduled_s: float, seqs: list[int]
    ) -> list[dict[str, Any]]:
        spans: dict[int, int] = {}
        lengths: dict[int, float] = {}
        words: dict[int, int] = {}
        first_audio: dict[int, float] = {}
        breakdown: dict[int, pb.LatencyBreakdown] = {}
        for arrived, event in listener.events[mark:]:
            kind = event.WhichOneof("event")
            if kind == "transcript":
                span = event.transcript.span
                spans[event.transcript.seq] = span.end_ms
                lengths[event.transcript.seq] = max(0, span.end_ms - span.start_ms) / 1000
            elif kind == "translation":
                words[event.translation.seq] = len(event.translation.text.split())
            elif kind == "speech":
                first_audio.setdefault(event.speech.seq, arrived)
            elif kind == "latency":
                breakdown[_seq(event.latency.segment_id)] = event.latency
        out = []
        for seq in seqs:
            if seq not in breakdown or seq not in first_audio or seq not in spans:
                continue
            b = breakdown[seq]
            out.append(
                {
                    "language": language,
                    "seq": seq,
                    "e2e_ms": (first_audio[seq] - (scheduled_s + spans[seq] / 1000)) * 1000,
                    "asr_ms": b.asr_ms,
                    "mt_ms": b.mt_ms,
                    "tts_ms": b.tts_ms,
                    "queue_ms": b.queue_ms,
                    "total_ms": b.total_ms,
                    "segment_s": lengths.get(seq, 0.0),
                    "tokens": words.get(seq, 0) * TOKENS_PER_WORD,
                }
            )
        return out

    def _count_errors(self, participant: Participant, mark: int) -> None:
        for _, event in participant.events[mark:]:
            kind = event.WhichOneof("event")
            if kind == "error":
                name = grpc.StatusCode.UNKNOWN.name
                for code in grpc.StatusCode:
                    if code.value[0] == event.error.code:
                        name = code.name
                self.error_events[name] = self.error_events.get(name, 0) + 1
            elif kind == "dropped":
                self.dropped_events += int(event.dropped.count)

    def extras(self) -> dict[str, Any]:
        return {
            "conference": {
                "participants": self.participants,
                "languages": self.languages,
                "utterance_s": round(len(self.speech) / self.rate, 2),
                "conferences_used": len(self.rooms),
            },
            "stream_error_events": dict(self.error_events),
            "dropped_events": self.dropped_events,
            "speech_s_sent": round(self.speech_s_sent, 1),
        }

    async def close(self) -> None:
        for room in self.rooms:
            for member in room.members:
                await member.close()
            if self.stub is not None:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self.stub.EndConference(pb.EndConferenceRequest(conference_id=room.conference_id))
        if self.channel is not None:
            await self.channel.close()


SCENARIO = ConferenceScenario  # discovered by loadtest.scenarios.factory
