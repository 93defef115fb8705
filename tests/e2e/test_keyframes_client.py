"""The typed keyframes client: against the real service (real Triton, real video) and, for the retry rules, against a
real grpc.aio server whose servicer answers with scripted status codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tessera.keyframes.client import NO_RETRY, KeyframesClient, KeyframesError, RetryPolicy
from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.runtime import service
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import InvalidArgument, to_grpc_status
from tessera.runtime.processes import TritonServer, free_port

FAST = RetryPolicy(attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
SCENES = [[(0, 10_000)], [(20_000, 30_000)]]


# --- the real service --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def address(triton_server: TritonServer, short_video: Path) -> AsyncIterator[str]:
    settings = ServerSettings(port=0, triton_url=triton_server.grpc_url, media_roots=[short_video.parent])
    capability, server = await service.start("keyframes", settings)
    yield f"127.0.0.1:{server.port}"
    await server.server.stop(0)
    await capability.close()


def _query(video: Path) -> str:
    manifest = json.loads((video.parent / "manifest.json").read_text())
    question: str = manifest["videos"][0]["questions"][0]["question"]
    return question


async def test_select_returns_the_typed_selection(address: str, short_video: Path) -> None:
    async with KeyframesClient.connect(address) as client:
        reply = await client.select(short_video, _query(short_video), 8, timeout_s=120)
        assert isinstance(reply, pb.SelectKeyframesResponse)
        stamps = [f.timestamp_ms for f in reply.frames]
        assert len(stamps) == 8 and stamps == sorted(stamps)
        assert reply.strategy == pb.STRATEGY_FOCUS and 0 < reply.stats.scored_fraction < 1
        assert client.retries == 0


async def test_progress_stream_ends_with_the_result(address: str, short_video: Path) -> None:
    async with KeyframesClient.connect(address) as client:
        events = [e async for e in client.stream_select(short_video, "a tree", 6, timeout_s=120)]
        assert events and isinstance(events[-1], pb.SelectKeyframesResponse) and len(events[-1].frames) == 6
        progress = events[:-1]
        assert progress and all(isinstance(p, pb.Progress) for p in progress)

        seen: list[pb.Progress] = []
        reply = await client.select(short_video, "a tree", 6, timeout_s=120, on_progress=seen.append)
        assert seen and len(reply.frames) == 6


async def test_evaluate_takes_scenes_as_segments(address: str) -> None:
    async with KeyframesClient.connect(address) as client:
        reply = await client.evaluate([1000, 5000, 50_000], SCENES, timeout_s=10)
    assert reply.kfr == pytest.approx(2 / 3) and list(reply.hits_per_scene) == [2, 0]


async def test_errors_name_code_fields_and_reason_without_retrying(address: str, short_video: Path) -> None:
    async with KeyframesClient.connect(address) as client:
        with pytest.raises(KeyframesError) as bad_k:
            await client.select(short_video, "a cat", 0)
        assert bad_k.value.code == grpc.StatusCode.INVALID_ARGUMENT and "k" in bad_k.value.fields
        assert bad_k.value.attempts == 1 and "k: must be >= 1" in str(bad_k.value)

        with pytest.raises(KeyframesError) as unreadable:
            await client.select(b"this is not a video at all", "a cat", 2)
        assert unreadable.value.reason == "VIDEO_UNREADABLE" and "video" in unreadable.value.fields

        with pytest.raises(KeyframesError) as denied:
            await client.select(Path("/etc/passwd"), "a cat", 2)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED

        with pytest.raises(KeyframesError) as late:
            await client.select(
                short_video, "a unicorn on a bicycle", 8, strategy=pb.STRATEGY_EXHAUSTIVE_TOP_K, timeout_s=0.001
            )
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and late.value.attempts == 1
        assert client.retries == 0


async def test_a_call_made_while_the_service_starts_is_retried_until_it_answers(
    triton_server: TritonServer, short_video: Path
) -> None:
    port = free_port()
    patient = RetryPolicy(attempts=50, initial_backoff_s=0.05, max_backoff_s=0.2)
    async with KeyframesClient.connect(f"127.0.0.1:{port}", retry=patient) as client:
        call = asyncio.ensure_future(client.evaluate([1000], SCENES, timeout_s=60))
        while client.retries == 0:  # nothing listens yet: the first attempt is refused with UNAVAILABLE
            assert not call.done(), call
            await asyncio.sleep(0.01)
        settings = ServerSettings(port=port, triton_url=triton_server.grpc_url, media_roots=[short_video.parent])
        capability, server = await service.start("keyframes", settings)
        try:
            reply = await call
            assert list(reply.hits_per_scene) == [1, 0] and client.retries >= 1
        finally:
            await server.server.stop(0)
            await capability.close()


# --- retry rules against scripted status codes --------------------------------------------------------------------


class ScriptedKeyframes(pb_grpc.KeyframeServiceServicer):
    """Each call fails with the next scripted code (None answers); counts the calls it received."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode | None] = []
        self.always: grpc.StatusCode | None = None
        self.fail_after_progress: grpc.StatusCode | None = None
        self.delay_s = 0.0
        self.hold_after_progress_s = 0.0
        self.cancelled = asyncio.Event()
        self.calls = 0

    async def _next(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        code = self.script.pop(0) if self.script else self.always
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            await context.abort_with_status(to_grpc_status(InvalidArgument("must be >= 1", field="k")))
        elif code is not None:
            await context.abort(code, f"scripted {code.name}")

    async def SelectKeyframes(
        self, request: pb.SelectKeyframesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SelectKeyframesResponse:
        await self._next(context)
        return pb.SelectKeyframesResponse(frames=[pb.SelectedFrame(timestamp_ms=1000)])

    async def StreamSelectKeyframes(
        self, request: pb.SelectKeyframesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamSelectKeyframesResponse]:
        await self._next(context)
        yield pb.StreamSelectKeyframesResponse(progress=pb.Progress(phase="coarse", frames_scored=1))
        if self.fail_after_progress is not None:
            await context.abort(self.fail_after_progress, "scripted, mid-stream")
        try:
            await asyncio.sleep(self.hold_after_progress_s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        yield pb.StreamSelectKeyframesResponse(result=pb.SelectKeyframesResponse(frames=[pb.SelectedFrame()]))

    async def EvaluateSelection(
        self, request: pb.EvaluateSelectionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateSelectionResponse:
        await self._next(context)
        return pb.EvaluateSelectionResponse(kfr=1.0)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedKeyframes, str]]:
    servicer = ScriptedKeyframes()
    server = grpc.aio.server()
    pb_grpc.add_KeyframeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0)


async def test_unavailable_is_retried_until_the_service_answers(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, None]
    async with KeyframesClient.connect(address, retry=FAST) as client:
        reply = await client.evaluate([1000], SCENES, timeout_s=10)
    assert reply.kfr == 1.0 and servicer.calls == 3 and client.retries == 2


async def test_invalid_argument_is_not_retried(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.INVALID_ARGUMENT
    async with KeyframesClient.connect(address, retry=FAST) as client:
        with pytest.raises(KeyframesError) as caught:
            await client.select("clip.mp4", "a cat", 0, timeout_s=10)
    assert servicer.calls == 1 and client.retries == 0
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.fields == {"k": "must be >= 1"}
    assert error.attempts == 1 and error.method == "SelectKeyframes"


async def test_retries_are_bounded(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    async with KeyframesClient.connect(address, retry=FAST) as client:
        with pytest.raises(KeyframesError) as caught:
            await client.select("clip.mp4", "a cat", 1, timeout_s=10)
    assert servicer.calls == FAST.attempts == caught.value.attempts
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and "after 4 attempts" in str(caught.value)

    servicer.calls = 0
    async with KeyframesClient.connect(address, retry=NO_RETRY) as client:
        with pytest.raises(KeyframesError):
            await client.select("clip.mp4", "a cat", 1, timeout_s=10)
    assert servicer.calls == 1


async def test_retries_stay_within_the_calls_deadline(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    slow = RetryPolicy(attempts=20, initial_backoff_s=0.6, max_backoff_s=0.6, jitter=0.0)
    async with KeyframesClient.connect(address, retry=slow) as client:
        with pytest.raises(KeyframesError) as caught:
            await client.evaluate([1000], SCENES, timeout_s=1.0)
    # 0.6 s of backoff fits once in 1 s, a second one does not: two attempts, then the client gives up.
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == caught.value.attempts == 2


async def test_deadline_exceeded_is_not_retried(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.delay_s = 1.0
    async with KeyframesClient.connect(address, retry=FAST) as client:
        with pytest.raises(KeyframesError) as caught:
            await client.evaluate([1000], SCENES, timeout_s=0.2)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and servicer.calls == 1


async def test_stream_is_retried_only_before_its_first_event(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE]
    async with KeyframesClient.connect(address, retry=FAST) as client:
        events = [e async for e in client.stream_select("clip.mp4", "a cat", 1, timeout_s=10)]
        assert [type(e) for e in events] == [pb.Progress, pb.SelectKeyframesResponse] and servicer.calls == 2

        servicer.calls, servicer.fail_after_progress = 0, grpc.StatusCode.UNAVAILABLE
        seen: list[pb.Progress] = []
        with pytest.raises(KeyframesError) as caught:
            await client.select("clip.mp4", "a cat", 1, timeout_s=10, on_progress=seen.append)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 1 and len(seen) == 1


async def test_nothing_listening_is_unavailable_after_the_retries() -> None:
    async with KeyframesClient.connect(f"127.0.0.1:{free_port()}", retry=FAST) as client:
        with pytest.raises(KeyframesError) as caught:
            await client.evaluate([1000], SCENES, timeout_s=10)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.attempts == FAST.attempts


async def test_a_reader_that_stops_early_cancels_the_stream(scripted: tuple[ScriptedKeyframes, str]) -> None:
    servicer, address = scripted
    servicer.hold_after_progress_s = 60.0
    async with KeyframesClient.connect(address, retry=FAST) as client:
        async with contextlib.aclosing(client.stream_select("clip.mp4", "a cat", 1, timeout_s=120)) as events:
            async for event in events:
                assert isinstance(event, pb.Progress)
                break
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
