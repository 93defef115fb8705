"""A Python client for one conference participant (its Join stream), and real speech samples to send.

Used by the demo, the benchmark and the tests: send events with ``send``/``speak``; everything the server sends
lands in ``events``.

What a client should do when its Join stream ends with UNAVAILABLE: join again, with the same conference id and
participant id, through the same address. With ErrorInfo reason ``DRAINING`` the gateway is shutting down: it has
delivered the segments in flight first, and the conference (kept in JetStream key-value) goes on at another replica
or at the restarted gateway, so rejoin at once. Without a reason the connection was lost (a crash): rejoin with
backoff until the gateway is back. The new ``Joined`` says from which segment on you hear (``next_segment_seq``).
The floor is not carried over: request it again if you held it or waited for it. Speech the draining gateway
refused (an ``ErrorEvent`` with code UNAVAILABLE, "not accepted, please repeat") was not heard: repeat it.
``ConferenceClient`` rejoins (``rejoin``, for up to ``rejoin_timeout_s``), requests the floor again, and holds what
is sent while it reconnects to send after the new join; repeating refused speech is left to its caller. Give its
channel short reconnect backoffs (``runtime.rpc_client.RECONNECT_OPTIONS``) so that a rejoin reaches a gateway that
has just come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
import wave
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
from tessera.runtime.rpc_client import RetryPolicy, draining_or_lost, reason_of
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc


def speech_wav(name: str = "beckett.wav") -> tuple[NDArray[np.int16], int]:
    """A recording shipped in the moonshine-voice wheel (16-bit mono or first channel), and its rate in Hz."""
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("moonshine-voice is not installed (make install)")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
    with wave.open(str(path)) as reader:
        rate, channels = reader.getframerate(), reader.getnchannels()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels)[:, 0].copy()
    return pcm, rate


log = logging.getLogger("tessera.translation.client")


@dataclass
class ConferenceClient:
    """One participant's Join stream; with ``rejoin`` (the default) it joins again when the stream ends with
    UNAVAILABLE, for up to ``rejoin_timeout_s``, and then requests the floor again if it held or wanted it."""

    stub: pb_grpc.ConferenceServiceStub
    conference_id: str
    participant_id: str
    language: str
    max_queued_events: int = 0
    rejoin: bool = True
    rejoin_timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # its backoff spaces the rejoins
    events: list[pb.ServerEvent] = field(default_factory=list)
    rejoins: int = 0  # how many times the stream was joined again
    call: Any = None
    _outbox: deque[pb.ClientEvent] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _generation: int = 0  # bumped when a call ends: its request generator stops
    _closed: bool = False
    _wants_floor: bool = False
    _task: asyncio.Task[None] | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def _join_event(self) -> pb.ClientEvent:
        return pb.ClientEvent(
            join=pb.JoinRequest(
                conference_id=self.conference_id,
                participant_id=self.participant_id,
                language=self.language,
                display_name=self.participant_id.title(),
                max_queued_events=self.max_queued_events,
            )
        )

    def _start_call(self) -> Any:
        """A new Join call: the join event, then what ``send`` queues, until this call ends."""
        generation = self._generation
        holder: list[Any] = []

        async def outgoing() -> AsyncIterator[pb.ClientEvent]:
            yield self._join_event()
            while True:
                while not self._outbox and not self._stale(generation, holder):
                    self._wake.clear()
                    await self._wake.wait()
                # Checked right before the event is handed to the call: an ended call would lose it.
                if self._stale(generation, holder):
                    return
                yield self._outbox.popleft()

        holder.append(self.stub.Join(outgoing()))  # type: ignore[arg-type]  # grpc.aio takes async iterators
        return holder[0]

    def _stale(self, generation: int, holder: list[Any]) -> bool:
        return self._closed or generation != self._generation or (bool(holder) and holder[0].done())

    async def open(self, read: bool = True) -> None:
        """Join; with ``read=False`` only the first event is read (a listener that then stops reading)."""
        self.call = self._start_call()
        if not read:
            self.events.append(await self.call.read())
            return
        self._task = asyncio.ensure_future(self._receive())
        await self.wait_for(lambda e: e.WhichOneof("event") == "joined", 20)

    async def _receive(self) -> None:
        while True:
            try:
                while (event := await self.call.read()) is not grpc.aio.EOF:
                    self._observe(event)
                    self.events.append(event)
                return  # the server ended the stream: the conference ended
            except grpc.aio.AioRpcError as failure:
                self._ended()
                if self._closed or not self.rejoin or not draining_or_lost(failure) or not self._joined_once():
                    raise
                log.info("%s: Join ended (%s); joining again", self.participant_id, reason_of(failure) or "UNAVAILABLE")
                await self._join_again(immediately=reason_of(failure) == "DRAINING")

    def _joined_once(self) -> bool:
        return any(e.WhichOneof("event") == "joined" for e in self.events)

    def _ended(self) -> None:
        self._generation += 1
        self._wake.set()

    async def _join_again(self, immediately: bool) -> None:
        """New Join calls until one is answered with ``joined`` or ``rejoin_timeout_s`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.rejoin_timeout_s
        attempt = 0
        while True:
            if attempt or not immediately:
                await asyncio.sleep(min(self.retry.backoff_s(attempt + 1, self._rng), max(0.0, deadline - loop.time())))
            if self._closed:
                return
            attempt += 1
            if self._wants_floor:  # the floor is not carried over: ask first, before what was queued meanwhile
                self._outbox.appendleft(pb.ClientEvent(request_floor=pb.RequestFloor()))
            self.call = self._start_call()
            try:
                first = await self.call.read()
            except grpc.aio.AioRpcError as failure:
                self._ended()
                if self._wants_floor and self._outbox and self._outbox[0].WhichOneof("event") == "request_floor":
                    self._outbox.popleft()
                if self._closed or not draining_or_lost(failure) or loop.time() >= deadline:
                    raise
                continue
            if first is grpc.aio.EOF:
                self._ended()
                return
            self._observe(first)
            self.events.append(first)
            self.rejoins += 1
            log.info("%s: joined %s again", self.participant_id, self.conference_id)
            return

    def _observe(self, event: pb.ServerEvent) -> None:
        if event.WhichOneof("event") == "floor" and event.floor.kind == pb.FLOOR_EVENT_KIND_RELEASED:
            self._wants_floor = False  # released, expired or taken away

    async def send(self, event: pb.ClientEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "request_floor":
            self._wants_floor = True
        elif kind == "release_floor":
            self._wants_floor = False
        self._outbox.append(event)
        self._wake.set()

    async def speak(self, pcm: NDArray[np.int16], rate: int, chunk_ms: int = 100, realtime: bool = False) -> None:
        """Send PCM16 in ``chunk_ms`` chunks; ``realtime`` paces them like a live microphone."""
        step = rate * chunk_ms // 1000
        for start in range(0, len(pcm), step):
            await self.send(
                pb.ClientEvent(
                    audio=common_pb2.AudioChunk(
                        data=pcm[start : start + step].astype("<i2").tobytes(),
                        encoding=common_pb2.AUDIO_ENCODING_PCM16,
                        sample_rate_hz=rate,
                        channels=1,
                    )
                )
            )
            await asyncio.sleep(chunk_ms / 1000 if realtime else 0)

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    async def wait_for(self, predicate: Any, timeout_s: float) -> pb.ServerEvent:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for event in self.events:
                if predicate(event):
                    return event
            if self._task is not None and self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.participant_id}: no matching event in {timeout_s} s; got "
            f"{[e.WhichOneof('event') for e in self.events]}"
        )

    async def close(self) -> None:
        """Leave: the stream is cancelled, and so is a rejoin in progress."""
        self._closed = True
        self._wake.set()
        if self.call is not None:
            self.call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task
