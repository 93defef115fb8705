"""A Python client for one conference participant (its Join stream), and real speech samples to send.

Used by the demo, the benchmark and the tests: send events with ``send``/``speak``; everything the server sends
lands in ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from tessera.common.v1 import common_pb2
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


@dataclass
class ConferenceClient:
    """One participant's Join stream."""

    stub: pb_grpc.ConferenceServiceStub
    conference_id: str
    participant_id: str
    language: str
    max_queued_events: int = 0
    events: list[pb.ServerEvent] = field(default_factory=list)
    _outbox: asyncio.Queue[pb.ClientEvent | None] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None
    call: Any = None

    async def open(self, read: bool = True) -> None:
        """Join; with ``read=False`` only the first event is read (a listener that then stops reading)."""
        await self._outbox.put(
            pb.ClientEvent(
                join=pb.JoinRequest(
                    conference_id=self.conference_id,
                    participant_id=self.participant_id,
                    language=self.language,
                    display_name=self.participant_id.title(),
                    max_queued_events=self.max_queued_events,
                )
            )
        )

        async def outgoing() -> AsyncIterator[pb.ClientEvent]:
            while True:
                event = await self._outbox.get()
                if event is None:
                    return
                yield event

        self.call = self.stub.Join(outgoing())  # type: ignore[arg-type]  # grpc.aio takes async iterators
        if not read:
            self.events.append(await self.call.read())
            return

        async def incoming() -> None:
            async for event in self.call:
                self.events.append(event)

        self._task = asyncio.ensure_future(incoming())
        await self.wait_for(lambda e: e.WhichOneof("event") == "joined", 20)

    async def send(self, event: pb.ClientEvent) -> None:
        await self._outbox.put(event)

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
        await self._outbox.put(None)
        if self.call is not None:
            self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task
