"""The keyframe service end to end: real video from real media, real Triton with the real frame_relevance model."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tessera.keyframes.v1 import keyframes_pb2 as pb
from tessera.keyframes.v1 import keyframes_pb2_grpc as pb_grpc
from tessera.runtime import service
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import field_violations
from tessera.runtime.processes import TritonServer
from tessera.runtime.rpc_client import reason_of
from tessera.runtime.server import TesseraServer


@pytest.fixture(scope="module")
async def keyframes(triton_server: TritonServer, short_video: Path) -> AsyncIterator[pb_grpc.KeyframeServiceStub]:
    settings = ServerSettings(port=0, triton_url=triton_server.grpc_url, media_roots=[short_video.parent])
    capability, server = await service.start("keyframes", settings)
    server: TesseraServer
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.KeyframeServiceStub(channel)
    await server.server.stop(0)
    await capability.close()


def _request(path: Path, **kw: object) -> pb.SelectKeyframesRequest:
    base: dict[str, object] = {"video": {"uri": str(path)}, "query": "a cat", "k": 8, "strategy": pb.STRATEGY_FOCUS}
    base.update(kw)
    return pb.SelectKeyframesRequest(**base)  # type: ignore[arg-type]


def _question(video: Path) -> tuple[str, list[list[list[float]]]]:
    manifest = json.loads((video.parent / "manifest.json").read_text())
    question = manifest["videos"][0]["questions"][0]
    return question["question"], question["scenes"]


async def test_focus_selects_k_frames_scoring_a_small_fraction(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path
) -> None:
    query, _ = _question(short_video)
    reply = await keyframes.SelectKeyframes(_request(short_video, query=query, k=8), timeout=120)
    stamps = [f.timestamp_ms for f in reply.frames]
    assert len(stamps) == 8 and stamps == sorted(stamps) and len(set(stamps)) == 8
    assert all(0 <= t <= reply.stats.video_duration_ms for t in stamps)
    stats = reply.stats
    assert stats.frames_sampled == pytest.approx(stats.video_duration_ms / 1000, abs=1)
    assert 0 < stats.frames_scored < stats.frames_sampled
    assert stats.scored_fraction == pytest.approx(stats.frames_scored / stats.frames_sampled)
    assert {p.phase for p in stats.phases} >= {"probe", "decode", "score", "select"}
    assert reply.strategy == pb.STRATEGY_FOCUS


async def test_exhaustive_scores_every_frame_and_second_query_hits_cache(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path
) -> None:
    first = await keyframes.SelectKeyframes(
        _request(short_video, strategy=pb.STRATEGY_EXHAUSTIVE_TOP_K, query="a person walking"), timeout=300
    )
    assert first.stats.frames_scored == first.stats.frames_sampled
    assert first.stats.frames_decoded >= first.stats.frames_sampled
    second = await keyframes.SelectKeyframes(
        _request(short_video, strategy=pb.STRATEGY_EXHAUSTIVE_TOP_K, query="a cup of coffee"), timeout=300
    )
    # Thumbnails are query-independent: the second query decodes nothing.
    assert second.stats.cache_hits == second.stats.frames_sampled
    assert second.stats.frames_decoded == 0
    phases_first = {p.phase: p.duration_ms for p in first.stats.phases}
    phases_second = {p.phase: p.duration_ms for p in second.stats.phases}
    assert phases_second["decode"] < phases_first["decode"]
    # Different queries rank frames differently.
    assert [f.timestamp_ms for f in first.frames] != [f.timestamp_ms for f in second.frames]


async def test_the_request_chooses_the_scorer_and_the_reply_names_it(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path
) -> None:
    """Both scorers serve the same contract; the default is the open-vocabulary one; their scores differ."""
    replies = {}
    for scorer in (pb.SCORER_UNSPECIFIED, pb.SCORER_OPEN_VOCABULARY, pb.SCORER_DETECTOR):
        replies[scorer] = await keyframes.SelectKeyframes(
            _request(short_video, strategy=pb.STRATEGY_UNIFORM, k=6, query="a butterfly", scorer=scorer), timeout=120
        )
    assert replies[pb.SCORER_UNSPECIFIED].scorer == pb.SCORER_OPEN_VOCABULARY
    assert replies[pb.SCORER_OPEN_VOCABULARY].scorer == pb.SCORER_OPEN_VOCABULARY
    assert replies[pb.SCORER_DETECTOR].scorer == pb.SCORER_DETECTOR
    open_scores = [f.score for f in replies[pb.SCORER_OPEN_VOCABULARY].frames]
    detector_scores = [f.score for f in replies[pb.SCORER_DETECTOR].frames]
    assert [f.score for f in replies[pb.SCORER_UNSPECIFIED].frames] == open_scores  # deterministic
    assert all(0.0 <= s <= 1.0 for s in open_scores + detector_scores)
    assert open_scores != detector_scores


async def test_uniform_is_evenly_spaced(keyframes: pb_grpc.KeyframeServiceStub, short_video: Path) -> None:
    reply = await keyframes.SelectKeyframes(_request(short_video, strategy=pb.STRATEGY_UNIFORM, k=4), timeout=60)
    stamps = [f.timestamp_ms for f in reply.frames]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) - min(gaps) <= 1000
    assert reply.stats.frames_scored == 4


async def test_stream_sends_progress_then_result(keyframes: pb_grpc.KeyframeServiceStub, short_video: Path) -> None:
    events = [e async for e in keyframes.StreamSelectKeyframes(_request(short_video, k=6, query="a tree"), timeout=120)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    assert progress and {p.phase for p in progress} <= {"coarse", "fine"}
    scored = [p.frames_scored for p in progress]
    assert scored == sorted(scored) and all(p.frames_sampled > 0 for p in progress)
    assert len(events[-1].result.frames) == 6


async def test_same_seed_same_selection(keyframes: pb_grpc.KeyframeServiceStub, short_video: Path) -> None:
    request = _request(short_video, query="a cat", focus=pb.FocusOptions(seed=11))
    a = await keyframes.SelectKeyframes(request, timeout=60)
    b = await keyframes.SelectKeyframes(request, timeout=60)
    assert [f.timestamp_ms for f in a.frames] == [f.timestamp_ms for f in b.frames]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 100_000}, "k"),
        ({"query": "   "}, "query"),
        ({"strategy": 42}, "strategy"),
        ({"sampling_fps": -1.0}, "sampling_fps"),
        ({"video": {}}, "video"),
        ({"video": {"inline_data": b"this is not a video at all"}}, "video"),
        ({"focus": {"temperature": -1.0}}, "focus.temperature"),
        ({"scorer": 99}, "scorer"),
    ],
)
async def test_bad_input_names_the_field(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keyframes.SelectKeyframes(_request(short_video, **changes), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)


async def test_corrupt_and_forbidden_files(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path, tmp_path: Path
) -> None:
    corrupt = short_video.parent / "corrupt.mp4"
    data = short_video.read_bytes()
    corrupt.write_bytes(data[:4096] + bytes(reversed(data[4096:200_000])))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keyframes.SelectKeyframes(_request(corrupt), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "video" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await keyframes.SelectKeyframes(_request(Path("/etc/passwd")), timeout=60)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The service is still healthy after hostile input.
    ok = await keyframes.SelectKeyframes(_request(short_video, strategy=pb.STRATEGY_UNIFORM, k=2), timeout=60)
    assert len(ok.frames) == 2


async def test_a_truncated_upload_is_refused_by_name(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path, tmp_path: Path
) -> None:
    import av

    whole = tmp_path / "whole.mp4"  # index at the front, as streaming encoders write it
    with av.open(str(short_video)) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = whole.read_bytes()
    for strategy in (pb.STRATEGY_UNIFORM, pb.STRATEGY_EXHAUSTIVE_TOP_K):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            request = _request(short_video, video={"inline_data": data[: len(data) // 2]}, strategy=strategy)
            await keyframes.SelectKeyframes(request, timeout=120)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "truncated" in field_violations(caught.value)["video"] and reason_of(caught.value) == "VIDEO_TRUNCATED"
    ok = await keyframes.SelectKeyframes(
        _request(short_video, video={"inline_data": data}, strategy=pb.STRATEGY_UNIFORM, k=3), timeout=60
    )
    assert len(ok.frames) == 3


async def test_inline_video_works(keyframes: pb_grpc.KeyframeServiceStub, short_video: Path) -> None:
    reply = await keyframes.SelectKeyframes(
        _request(short_video, video={"inline_data": short_video.read_bytes()}, strategy=pb.STRATEGY_UNIFORM, k=3),
        timeout=60,
    )
    assert len(reply.frames) == 3


async def test_evaluate_selection(keyframes: pb_grpc.KeyframeServiceStub) -> None:
    # Two scenes of 10 s ([0, 10] and [20, 30], each extended to 11 s); hits 2 and 0, plus one miss at 50 s.
    request = pb.EvaluateSelectionRequest(
        timestamps_ms=[1000, 5000, 50_000],
        scenes=[
            pb.Scene(segments=[{"start_ms": 0, "end_ms": 10_000}]),
            pb.Scene(segments=[{"start_ms": 20_000, "end_ms": 30_000}]),
        ],
    )
    reply = await keyframes.EvaluateSelection(request, timeout=10)
    assert reply.kfr == pytest.approx(2 / 3)
    assert reply.shr == pytest.approx(0.5)
    assert list(reply.hits_per_scene) == [2, 0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keyframes.EvaluateSelection(pb.EvaluateSelectionRequest(timestamps_ms=[1]), timeout=10)
    assert "scenes" in field_violations(caught.value)


async def test_the_open_vocabulary_scorer_finds_what_coco_cannot_name(
    keyframes: pb_grpc.KeyframeServiceStub, short_video: Path
) -> None:
    """A question about a monkey (no COCO class): the open scorer's selections land in its scenes, the detector's
    do not, and FOCUS on the open scorer beats uniform spacing."""
    manifest = json.loads((short_video.parent / "manifest.json").read_text())
    question = next((q for q in manifest["videos"][0]["questions"] if q["label"] == "monkey"), None)
    if question is None:
        pytest.fail("the fixture video has no question about a monkey; change its seed")
    gt = [
        pb.Scene(segments=[{"start_ms": int(a * 1000), "end_ms": int(b * 1000)} for a, b in s])
        for s in question["scenes"]
    ]

    async def kfr(strategy: int, scorer: int) -> float:
        # A 4-minute video: the lean schedule's 5 % is 12 frames; the published one probes every 16 s arm.
        focus = pb.FocusOptions(schedule=pb.FOCUS_SCHEDULE_PUBLISHED)
        request = _request(short_video, strategy=strategy, k=8, query=question["question"], scorer=scorer, focus=focus)
        reply = await keyframes.SelectKeyframes(request, timeout=300)
        stamps = [f.timestamp_ms for f in reply.frames]
        return (await keyframes.EvaluateSelection(pb.EvaluateSelectionRequest(timestamps_ms=stamps, scenes=gt))).kfr

    open_exhaustive = await kfr(pb.STRATEGY_EXHAUSTIVE_TOP_K, pb.SCORER_OPEN_VOCABULARY)
    detector_exhaustive = await kfr(pb.STRATEGY_EXHAUSTIVE_TOP_K, pb.SCORER_DETECTOR)
    assert open_exhaustive >= 0.75 > detector_exhaustive
    assert await kfr(pb.STRATEGY_FOCUS, pb.SCORER_OPEN_VOCABULARY) > await kfr(
        pb.STRATEGY_UNIFORM, pb.SCORER_UNSPECIFIED
    )
