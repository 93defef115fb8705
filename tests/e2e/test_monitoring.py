"""Room monitoring end to end: real yolov3-tiny, YAMNet and the trained av_fusion on Triton, real JetStream, real media.

The gateway runs in this process; the detector, audio-event and fusion workers run as real processes, so one can be
killed with SIGKILL while a room streams. Scenario clips come from opencv-doc's vtest.avi and Debian's sound files
(tessera.monitoring.scenarios, evaluation split).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from tessera.common.v1 import common_pb2
from tessera.monitoring import cascade, client, convert, scenarios
from tessera.monitoring.scenarios import Scenario
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.runtime import service
from tessera.runtime.bus import Bus
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import field_violations
from tessera.runtime.processes import NatsServer, TritonServer, WorkerPool

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "build" / "test-media" / "monitoring"
NIGHT = 23 * 60  # local minute of day the night clips play at
NOON = 12 * 60


def _workers(nats: NatsServer, triton: TritonServer, logs: Path) -> WorkerPool:
    env = {"TESSERA_NATS_URL": nats.url, "TESSERA_TRITON_URL": triton.grpc_url, "TESSERA_PORT": "0",
           "TESSERA_GRACE_S": "2"}  # fmt: skip
    return WorkerPool("monitoring", env, logs)


@pytest.fixture(scope="module")
def clips(opencv_doc: Path) -> dict[str, tuple[Scenario, Path]]:
    made = scenarios.generate_set(
        CLIPS, opencv_doc, per_kind=1, seed=77, kinds=("busy_phone", "alarm", "intruder"), duration_s=7.0
    )
    return {scenario.kind: (scenario, path) for scenario, path in made}


@pytest.fixture(scope="module")
def workers(
    nats_server: NatsServer, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerPool]:
    pool = _workers(nats_server, triton_server, tmp_path_factory.mktemp("monitoring-workers"))
    for stage in ("detector", "audio", "fusion"):
        pool.start(stage)
    yield pool
    pool.stop()


@pytest.fixture(scope="module")
async def gateway(nats_server: NatsServer, triton_server: TritonServer, workers: WorkerPool) -> AsyncIterator[str]:
    settings = ServerSettings(
        port=0, nats_url=nats_server.url, triton_url=triton_server.grpc_url, media_roots=[ROOT / "build"]
    )
    capability, server = await service.start("monitoring", settings)
    yield f"127.0.0.1:{server.port}"
    await server.server.stop(0)
    await capability.close()


@pytest.fixture(scope="module")
async def stub(gateway: str) -> AsyncIterator[pb_grpc.MonitoringServiceStub]:
    async with grpc.aio.insecure_channel(gateway) as channel:
        monitoring = pb_grpc.MonitoringServiceStub(channel)
        for _ in range(600):  # the gateway reports SERVING once Triton has the models
            try:
                await monitoring.CreateRoom(pb.CreateRoomRequest(room_id="warmup"))
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        yield monitoring


def _rules() -> pb.RoomRules:
    return convert.rules_to_proto(scenarios.reference_rules())


def _local_start(minute: int) -> int:
    """A stream start whose local time (UTC offset 0) is ``minute`` of today."""
    return int(time.time() * 1000) // 86_400_000 * 86_400_000 + minute * 60_000


def _offset_to(minute: int) -> int:
    """The UTC offset (minutes, within +-12 h) that makes the local time now ``minute`` of the day."""
    now = int(time.time() * 1000) // 60_000 % 1440
    return (minute - now + 720) % 1440 - 720


async def _room(stub: pb_grpc.MonitoringServiceStub, room_id: str) -> None:
    await stub.CreateRoom(pb.CreateRoomRequest(room_id=room_id, display_name=room_id, rules=_rules()))


def _merged(alert: pb.Alert, rule_id: str) -> pb.MergedFinding:
    return next(f for f in alert.merged if f.rule_id == rule_id)


async def _error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


async def test_rooms_are_validated_field_by_field(stub: pb_grpc.MonitoringServiceStub) -> None:
    bad_polygon = _rules()
    bad_polygon.zones[0].polygon.extend([pb.Point(x=0.1, y=0.1), pb.Point(x=1.5, y=0.2), pb.Point(x=0.3, y=0.9)])
    error = await _error(stub.CreateRoom(pb.CreateRoomRequest(room_id="bad", rules=bad_polygon)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rules.zones[0].polygon[1].x" in field_violations(error)
    unknown_class = _rules()
    unknown_class.zones[0].object_rules[0].classes[:] = ["unicorn"]
    error = await _error(stub.CreateRoom(pb.CreateRoomRequest(room_id="bad", rules=unknown_class)))
    assert "rules.zones[0].object_rules[0].classes[0]" in field_violations(error)
    unknown_sound = _rules()
    unknown_sound.sound_rules[0].sound_class = "Dragon roar"
    error = await _error(stub.CreateRoom(pb.CreateRoomRequest(room_id="bad", rules=unknown_sound)))
    assert "rules.sound_rules[0].sound_class" in field_violations(error)
    error = await _error(stub.CreateRoom(pb.CreateRoomRequest(room_id="Bad Id", rules=_rules())))
    assert "room_id" in field_violations(error)

    await _room(stub, "crud")
    error = await _error(stub.CreateRoom(pb.CreateRoomRequest(room_id="crud", rules=_rules())))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "room_id" in field_violations(error)
    changed = _rules()
    changed.cooldown_ms = 2500
    updated = await stub.UpdateRoom(pb.UpdateRoomRequest(room_id="crud", rules=changed))
    assert updated.room.rules.cooldown_ms == 2500
    got = await stub.GetRoom(pb.GetRoomRequest(room_id="crud"))
    assert got.room.rules.cooldown_ms == 2500 and got.room.rules.sound_rules[0].sound_class
    await stub.DeleteRoom(pb.DeleteRoomRequest(room_id="crud"))
    error = await _error(stub.GetRoom(pb.GetRoomRequest(room_id="crud")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


HOSTILE_IDS = ["../x", "a b", "a\x00b", "*", ">", "50%", "café", "room\n", "x" * 100_000]


async def test_hostile_room_ids_are_invalid_argument_on_every_rpc(stub: pb_grpc.MonitoringServiceStub) -> None:
    """A room id the key-value store would refuse never reaches it: INVALID_ARGUMENT naming room_id, echo bounded."""
    for room_id in HOSTILE_IDS:

        async def one_frame(room: str = room_id) -> AsyncIterator[pb.IngestRequest]:
            yield pb.IngestRequest(room_id=room)

        calls = {
            "CreateRoom": stub.CreateRoom(pb.CreateRoomRequest(room_id=room_id, rules=_rules())),
            "GetRoom": stub.GetRoom(pb.GetRoomRequest(room_id=room_id)),
            "UpdateRoom": stub.UpdateRoom(pb.UpdateRoomRequest(room_id=room_id, rules=_rules())),
            "DeleteRoom": stub.DeleteRoom(pb.DeleteRoomRequest(room_id=room_id)),
            "Ingest": stub.Ingest(one_frame()),
            "StartFeed": stub.StartFeed(pb.StartFeedRequest(room_id=room_id, uri="vtest.avi")),
            "StopFeed": stub.StopFeed(pb.StopFeedRequest(room_id=room_id)),
            "AnalyzeClip": stub.AnalyzeClip(
                pb.AnalyzeClipRequest(room_id=room_id, video=common_pb2.MediaSource(uri="vtest.avi"))
            ),
        }
        for name, call in calls.items():
            error = await _error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, room_id[:20], error.details())
            assert "room_id" in field_violations(error), name
            assert len(error.details() or "") < 200, "the id is echoed bounded"
        watch = stub.Watch(pb.WatchRequest(room_id=room_id))
        with pytest.raises(grpc.aio.AioRpcError) as watched:
            async for _ in watch:
                pass
        assert watched.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_analyze_clip_reports_the_injected_anomaly_with_its_evidence(
    stub: pb_grpc.MonitoringServiceStub, clips: dict[str, tuple[Scenario, Path]]
) -> None:
    scenario, path = clips["alarm"]
    noon = _local_start(NOON)
    request = pb.AnalyzeClipRequest(video=common_pb2.MediaSource(uri=str(path)), rules=_rules(), start_unix_ms=noon)
    report = await stub.AnalyzeClip(request)
    assert report.frames_analyzed == 35 and report.audio_windows_analyzed > 20
    assert any(d.class_name == "person" for f in report.frames for d in f.detections)
    assert report.alerts, "a smoke alarm among people must alert"
    first = report.alerts[0]
    assert scenario.onset_ms - 500 <= first.event_time_ms <= scenario.offset_ms + 1500
    assert first.evidence.model_name == "av_fusion" and first.evidence.model_score >= 0.5
    assert first.evidence.frame_timestamp_ms >= 0 and first.evidence.boxes
    assert first.evidence.sounds and first.evidence.window.start_ms < first.evidence.window.end_ms
    assert max(p.score for p in report.scores) > 0.5
    assert any("alarm" in e.class_name.lower() or "beep" in e.class_name.lower() for e in report.sound_events)

    # The phone ringing among people: the sound rule "Alarm" fires on it alone, fusion knows the room.
    _, phone = clips["busy_phone"]
    source = common_pb2.MediaSource(uri=str(phone))
    fused = await stub.AnalyzeClip(pb.AnalyzeClipRequest(video=source, rules=_rules(), start_unix_ms=noon))
    audio_only = await stub.AnalyzeClip(
        pb.AnalyzeClipRequest(video=source, rules=_rules(), policy=pb.FUSION_POLICY_AUDIO_ONLY, start_unix_ms=noon)
    )
    assert not fused.alerts
    assert [a.rule_id for a in audio_only.alerts] == ["alarm"]
    assert not audio_only.scores  # no learned score outside fusion


async def test_analyze_clip_refuses_bad_input_naming_the_field(
    stub: pb_grpc.MonitoringServiceStub, clips: dict[str, tuple[Scenario, Path]], tmp_path: Path
) -> None:
    _, path = clips["alarm"]
    source = common_pb2.MediaSource
    outside = await _error(stub.AnalyzeClip(pb.AnalyzeClipRequest(video=source(uri="/etc/passwd"), rules=_rules())))
    assert outside.code() == grpc.StatusCode.PERMISSION_DENIED and "video.uri" in field_violations(outside)
    garbage = await _error(
        stub.AnalyzeClip(pb.AnalyzeClipRequest(video=source(inline_data=b"not a video"), rules=_rules()))
    )
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT and "video" in field_violations(garbage)
    fps = await _error(
        stub.AnalyzeClip(pb.AnalyzeClipRequest(video=source(uri=str(path)), rules=_rules(), sampling_fps=50))
    )
    assert "sampling_fps" in field_violations(fps)
    nothing = await _error(stub.AnalyzeClip(pb.AnalyzeClipRequest(rules=_rules())))
    assert "video" in field_violations(nothing)
    # Separate audio only: the sound rules and the model still apply (no frames).
    report = await stub.AnalyzeClip(pb.AnalyzeClipRequest(audio=source(uri=str(path)), rules=_rules()))
    assert report.frames_analyzed == 0 and report.audio_windows_analyzed > 20 and report.alerts


async def test_live_room_alerts_on_an_intruder_from_a_feed_then_replays_for_audit(
    stub: pb_grpc.MonitoringServiceStub, clips: dict[str, tuple[Scenario, Path]]
) -> None:
    scenario, path = clips["intruder"]
    night = _rules()
    night.utc_offset_minutes = _offset_to(NIGHT)  # it is 23:00 in this room now: nobody may be in
    await stub.CreateRoom(pb.CreateRoomRequest(room_id="lobby", rules=night))
    watcher = client.AlertWatcher(stub, pb.WatchRequest(room_id="lobby"))
    try:
        await asyncio.sleep(0.3)
        started = await stub.StartFeed(pb.StartFeedRequest(room_id="lobby", uri=str(path)))
        assert started.feed.state == pb.FEED_STATE_RUNNING
        busy = await _error(stub.StartFeed(pb.StartFeedRequest(room_id="lobby", uri=str(path))))
        assert busy.code() == grpc.StatusCode.FAILED_PRECONDITION
        # One event, one alert: the object rule leads it, or joins the alert another rule opened on the intruder.
        alert = await watcher.wait_for(lambda a: "no-person-at-night" in convert.fired_rules(a), 30)
        found = alert if alert.rule_id == "no-person-at-night" else _merged(alert, "no-person-at-night")
        assert found.source == pb.ALERT_SOURCE_OBJECT_RULE
        boxes = found.evidence.boxes if isinstance(found, pb.Alert) else found.boxes
        assert all(b.class_name == "person" for b in boxes) and boxes
        assert (found.evidence.zone_id if isinstance(found, pb.Alert) else found.zone_id) == "hall"
        assert scenario.onset_ms - 250 <= found.event_time_ms <= scenario.onset_ms + 1500
        assert alert.publish_unix_ms >= alert.event_unix_ms and alert.sequence > 0
        stopped = await stub.StopFeed(pb.StopFeedRequest(room_id="lobby"))
        assert stopped.feed.state == pb.FEED_STATE_STOPPED and stopped.feed.frames_sent > 10
    finally:
        watcher.cancel()
    # The alert stream is the audit log: a later Watch replays what was published, then stays live.
    replay = client.AlertWatcher(stub, pb.WatchRequest(room_id="lobby", replay_all=True))
    try:
        again = await replay.wait_for(lambda a: (a.alert_id, a.revision) == (alert.alert_id, alert.revision), 10)
        assert again.sequence == alert.sequence and again.evidence == alert.evidence
    finally:
        replay.cancel()
    after = client.AlertWatcher(stub, pb.WatchRequest(room_id="lobby", after_sequence=alert.sequence))
    try:
        await asyncio.sleep(1.0)
        assert all(a.sequence > alert.sequence for a, _ in after.alerts)
    finally:
        after.cancel()


async def test_fusion_worker_killed_mid_stream_loses_no_alert_and_repeats_none(
    stub: pb_grpc.MonitoringServiceStub, workers: WorkerPool, clips: dict[str, tuple[Scenario, Path]]
) -> None:
    scenario, path = clips["alarm"]
    await _room(stub, "kitchen")
    watcher = client.AlertWatcher(stub, pb.WatchRequest(room_id="kitchen"))
    items = client.clip_items(path)
    try:
        await asyncio.sleep(0.3)
        workers.kill("fusion")  # down before the anomaly: its detections wait in the stream
        reply = await client.ingest(stub, "kitchen", items, speed=2.0, stream_start_unix_ms=_local_start(NOON))
        assert reply.frames_accepted == 35 and reply.audio_ms_accepted >= 6900
        workers.start("fusion")
        first = await watcher.wait_for(lambda a: True, 40)
        assert scenario.onset_ms - 500 <= first.event_time_ms <= scenario.offset_ms + 1500
        # Killed again right after its first alert: the redelivered, unacknowledged detections must not raise
        # the same rules again (cooldown comes back from the audit stream).
        workers.kill("fusion")
        workers.start("fusion")
        await asyncio.sleep(7)  # past the 5 s ack wait: what the killed worker held has come back and been handled
        sent = [(a.alert_id, a.revision) for a, _ in watcher.alerts]
        assert len(sent) == len(set(sent)), f"an alert revision was sent twice: {sent}"
        for alert_id in {a for a, _ in sent}:  # each alert's revisions once each, in order, no rule twice
            revisions = [a for a, _ in watcher.alerts if a.alert_id == alert_id]
            assert [a.revision for a in revisions] == list(range(len(revisions))), sent
            rules = convert.fired_rules(revisions[-1])
            assert len(rules) == len(set(rules)), f"a rule merged twice: {rules}"
    finally:
        watcher.cancel()


async def test_a_burst_is_shed_oldest_first_and_audio_is_never_shed(
    stub: pb_grpc.MonitoringServiceStub, nats_server: NatsServer, clips: dict[str, tuple[Scenario, Path]]
) -> None:
    _, path = clips["busy_phone"]
    await _room(stub, "atrium")
    detected: list[msg.FrameDetections] = []
    all_back = asyncio.Event()
    expected = 10**9
    bus = await Bus.connect(nats_server.url, "test-monitoring-burst")

    async def on_detection(message: object) -> None:
        detected.append(msg.FrameDetections.FromString(message.data))  # type: ignore[attr-defined]
        if len(detected) >= expected:
            all_back.set()

    sub = await bus.watch(cascade.subject("atrium", "detections.frame"), on_detection)
    try:
        items = client.clip_items(path, fps=10.0)  # 70 frames and 7 s of audio, all at once
        reply = await client.ingest(stub, "atrium", items, speed=0)
        assert reply.frames_accepted == 70
        assert reply.frames_shed > 0, "a burst far beyond the in-flight budget must shed"
        room = (await stub.GetRoom(pb.GetRoomRequest(room_id="atrium"))).room
        assert room.stats.frames_shed == reply.frames_shed
        assert room.stats.audio_ms_accepted == reply.audio_ms_accepted >= 6900
        expected_windows = (reply.audio_ms_accepted - 982) // 200 + 1  # a 0.982 s window every 200 ms
        assert room.stats.audio_windows_published == expected_windows  # every audio window went on
        expected = reply.frames_accepted - reply.frames_shed
        if len(detected) >= expected:
            all_back.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_back.wait(), 30)
        assert len(detected) == expected  # every admitted frame came back (detected, or shed by the detector)
        analysed = sorted(d.timestamp_ms for d in detected if not d.shed)
        assert analysed and analysed[-1] == 6900, "the newest frame is never the one dropped"
        # What the gateway dropped is a run of older frames, not the latest ones.
        all_times = [i.data.frame.timestamp_ms for i in items if i.data.WhichOneof("data") == "frame"]
        dropped = sorted(set(all_times) - {d.timestamp_ms for d in detected})
        assert len(dropped) == reply.frames_shed and max(dropped) < analysed[-1]
        room = (await stub.GetRoom(pb.GetRoomRequest(room_id="atrium"))).room
        assert room.stats.frames_analyzed + room.stats.frames_shed_by_detector == len(detected)
    finally:
        await sub.unsubscribe()
        await bus.close()


async def test_ingest_refuses_bad_sensor_data_naming_the_field(stub: pb_grpc.MonitoringServiceStub) -> None:
    await _room(stub, "cellar")

    async def one(data: pb.SensorData, room_id: str = "cellar") -> grpc.aio.AioRpcError:
        async def stream() -> AsyncIterator[pb.IngestRequest]:
            yield pb.IngestRequest(room_id=room_id, data=data)

        return await _error(stub.Ingest(stream()))

    async def rejected(frame: common_pb2.Image) -> pb.RejectedFrame:
        """A bad frame is refused on its own: the stream ends normally and the response names the field."""

        async def stream() -> AsyncIterator[pb.IngestRequest]:
            yield pb.IngestRequest(room_id="cellar", data=pb.SensorData(frame=frame))

        reply = await stub.Ingest(stream())
        assert reply.frames_accepted == 0 and reply.frames_rejected == 1
        return reply.rejected_frames[0]

    image = common_pb2.Image
    chunk = common_pb2.AudioChunk
    not_jpeg = await rejected(image(data=b"GIF89a", encoding=common_pb2.IMAGE_ENCODING_JPEG))
    assert not_jpeg.field == "data.frame.data" and not_jpeg.reason == pb.FRAME_REJECTION_REASON_INVALID
    raw = await rejected(image(data=b"\0" * 10, encoding=common_pb2.IMAGE_ENCODING_RAW_RGB8))
    assert raw.field == "data.frame.width_px"
    rate = await one(pb.SensorData(audio=chunk(data=b"\0\0", encoding=common_pb2.AUDIO_ENCODING_PCM16)))
    assert "data.audio.sample_rate_hz" in field_violations(rate)
    odd = await one(
        pb.SensorData(audio=chunk(data=b"\0\0\0", encoding=common_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=16000))
    )
    assert "data.audio.data" in field_violations(odd)
    empty = await one(pb.SensorData())
    assert "data" in field_violations(empty)
    missing = await one(pb.SensorData(), room_id="nowhere")
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "room_id" in field_violations(missing)


async def test_the_load_test_ingest_scenario_times_frames_through_the_real_cascade(
    stub: pb_grpc.MonitoringServiceStub, gateway: str, nats_server: NatsServer, triton_server: TritonServer
) -> None:
    """loadtest's monitoring scenario: a frame is done when its detections come back from the detector worker."""
    from loadtest.engine import open_loop
    from loadtest.scenarios.monitoring import MonitoringScenario
    from loadtest.stack import Target

    target = Target({"monitoring": gateway}, triton_server.grpc_url, nats_server.url)
    scenario = await MonitoringScenario.create(target, {"cameras": 2, "fps": 5, "timeout_s": 20})
    await scenario.setup()
    try:
        run = await open_loop(scenario.once, 4.0, 2.0, 20, arrivals="uniform", drain_s=20)
    finally:
        await scenario.close()
    assert [s.status for s in run.samples] == ["OK"] * 8
    assert all(0 < s.detail["detect_ms"] < s.latency_ms for s in run.samples)
    assert scenario.ingest_totals == {"frames_accepted": 10, "frames_shed": 0}  # 2 warm-up frames + 8 measured
