"""Lightweight conference participants for the benchmark: many Join streams in one process.

Unlike ``tessera.translation.client.ConferenceClient`` (which keeps every event), a participant here keeps only
what the benchmark measures - per segment, the wall-clock receipt time of the first and last synthesised-speech
chunk, the gateway's ``LatencyBreakdown``, and counts - so hundreds of listeners can run for minutes without
holding their audio. Every stream is read continuously, so nothing backs up at the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc


@dataclass
class Breakdown:
    asr_ms: float
    mt_ms: float
    tts_ms: float
    queue_ms: float
    total_ms: float
    received_unix: float  # when this participant read the LatencyBreakdown event


@dataclass
class Participant:
    stub: pb_grpc.ConferenceServiceStub
    conference_id: str
    participant_id: str
    language: str
    first_chunk_unix: dict[int, float] = field(default_factory=dict)  # seq -> time.time() at the first chunk
    last_chunk_unix: dict[int, float] = field(default_factory=dict)
    speech_bytes: dict[int, int] = field(default_factory=dict)
    latency: dict[int, Breakdown] = field(default_factory=dict)
    transcripts: dict[int, str] = field(default_factory=dict)
    translations: dict[int, str] = field(default_factory=dict)
    floor: list[int] = field(default_factory=list)  # FloorEvent kinds, in order
    dropped: int = 0
    errors: list[str] = field(default_factory=list)
    events: int = 0
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    _outbox: asyncio.Queue[pb.ClientEvent | None] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None
    _call: Any = None  # grpc.aio.StreamStreamCall
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, timeout_s: float = 30) -> None:
        await self._outbox.put(
            pb.ClientEvent(
                join=pb.JoinRequest(
                    conference_id=self.conference_id, participant_id=self.participant_id, language=self.language
                )
            )
        )

        async def outgoing() -> AsyncIterator[pb.ClientEvent]:
            while True:
                event = await self._outbox.get()
                if event is None:
                    return
                yield event

        self._call = self.stub.Join(outgoing())  # type: ignore[arg-type]  # grpc.aio takes async iterators
        self._task = asyncio.ensure_future(self._read())
        joined = asyncio.ensure_future(self.joined.wait())
        done, _ = await asyncio.wait({joined, self._task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if joined not in done:
            joined.cancel()
            if self._task.done():
                self._task.result()
            raise TimeoutError(f"{self.participant_id}: not joined in {timeout_s} s")

    async def _read(self) -> None:
        assert self._call is not None
        async for event in self._call:
            now = time.time()
            self.events += 1
            kind = event.WhichOneof("event")
            if kind == "speech":
                chunk = event.speech
                self.first_chunk_unix.setdefault(chunk.seq, now)
                self.speech_bytes[chunk.seq] = self.speech_bytes.get(chunk.seq, 0) + len(chunk.audio.data)
                if chunk.last:
                    self.last_chunk_unix[chunk.seq] = now
            elif kind == "latency":
                b = event.latency
                seq = int(b.segment_id.rsplit("-", 1)[1])
                self.latency[seq] = Breakdown(b.asr_ms, b.mt_ms, b.tts_ms, b.queue_ms, b.total_ms, now)
            elif kind == "transcript":
                self.transcripts[event.transcript.seq] = event.transcript.text
            elif kind == "translation":
                self.translations[event.translation.seq] = event.translation.text
            elif kind == "floor":
                self.floor.append(event.floor.kind)
            elif kind == "dropped":
                self.dropped += event.dropped.count
            elif kind == "error":
                self.errors.append(f"{event.error.field}: {event.error.message}")
            elif kind == "joined":
                self.joined.set()
            self._changed.set()

    async def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``done()`` is true (re-checked on every event); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._task is not None and self._task.done():
                self._task.result()
                return done()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return True

    async def send(self, event: pb.ClientEvent) -> None:
        await self._outbox.put(event)

    async def take_floor(self, timeout_s: float = 10) -> None:
        await self.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        granted = pb.FLOOR_EVENT_KIND_GRANTED
        if not await self.wait_until(lambda: granted in self.floor, timeout_s):
            raise TimeoutError(f"{self.participant_id}: floor not granted")

    async def release_floor(self, timeout_s: float = 30) -> None:
        """Release and wait for RELEASED: by then the gateway has cut (flushed) the last segment."""
        released = pb.FLOOR_EVENT_KIND_RELEASED
        before = self.floor.count(released)
        await self.send(pb.ClientEvent(release_floor=pb.ReleaseFloor()))
        if not await self.wait_until(lambda: self.floor.count(released) > before, timeout_s):
            raise TimeoutError(f"{self.participant_id}: floor not released")

    async def speak_realtime(self, pcm: NDArray[np.int16], rate: int, chunk_ms: int = 100) -> float:
        """Stream PCM16 like a live microphone: chunk i leaves at start + i * chunk_ms (no drift); returns the start.

        The same 100 ms chunks as ``ConferenceClient.speak(realtime=True)``, paced against the clock rather than
        by sleeping a fixed time after each send, so a busy event loop does not stretch the speech.
        """
        step = rate * chunk_ms // 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, offset in enumerate(range(0, len(pcm), step)):
            wait = start + i * chunk_ms / 1000 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.send(
                pb.ClientEvent(
                    audio=common_pb2.AudioChunk(
                        data=pcm[offset : offset + step].astype("<i2").tobytes(),
                        encoding=common_pb2.AUDIO_ENCODING_PCM16,
                        sample_rate_hz=rate,
                        channels=1,
                    )
                )
            )
        tail = start + len(pcm) / rate - loop.time()
        if tail > 0:
            await asyncio.sleep(tail)  # the last chunk's duration
        return start

    async def close(self) -> None:
        await self._outbox.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task
