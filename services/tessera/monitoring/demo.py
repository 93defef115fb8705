"""Demo scenario: clips of the vtest.avi hall with injected anomalies, analysed, with their alert timelines.

1. A smoke alarm goes off while people walk through the hall (day): the audio-visual model and the sound rules.
2. The same hall at night, empty, until someone walks in: the zone's night rule.
3. A phone rings among people: the "Alarm" sound rule alone would fire; fusion knows the room and stays quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import grpc

from tessera.common.v1 import common_pb2
from tessera.monitoring import convert, scenarios
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc

ROOM = "demo-hall"


def run(address: str, build_dir: Path) -> None:
    # Under build/media: one of the media roots the stack hands the services.
    out_dir = build_dir / "media" / "monitoring-demo"
    clips = scenarios.generate_set(
        out_dir,
        build_dir / "media" / "opencv-doc",
        per_kind=1,
        seed=4242,
        kinds=("alarm", "intruder", "busy_phone"),
        duration_s=8.0,
    )
    asyncio.run(_run(address, {scenario.kind: (scenario, path) for scenario, path in clips}))


def _clock(minute: int) -> int:
    return int(time.time() * 1000) // 86_400_000 * 86_400_000 + minute * 60_000


def _timeline(report: pb.AnalyzeClipResponse) -> list[str]:
    lines = []
    last = max([f.timestamp_ms for f in report.frames] + [e.span.end_ms for e in report.sound_events] + [0])
    for second in range(0, last + 1, 1000):
        frames = [f for f in report.frames if second <= f.timestamp_ms < second + 1000]
        people = max(
            (sum(1 for d in f.detections if d.class_name == "person" and d.score >= 0.4) for f in frames), default=0
        )
        sounds = sorted(
            {e.class_name for e in report.sound_events if second <= e.span.end_ms < second + 1000 and e.score >= 0.4}
        )
        scores = [p.score for p in report.scores if second <= p.time_ms < second + 1000]
        alerts = [a for a in report.alerts if second <= a.event_time_ms < second + 1000]
        heard = ", ".join(sounds) or "-"
        line = f"    {second / 1000:4.1f}s  people {people}  score {max(scores, default=0):.2f}  sounds {heard}"
        for alert in alerts:
            line += f"\n           ALERT {alert.rule_id} at {alert.event_time_ms} ms: {alert.summary}"
            boxes = ", ".join(f"{b.class_name} {b.score:.2f}" for b in alert.evidence.boxes[:3])
            heard = ", ".join(f"{s.class_name} {s.score:.2f}" for s in alert.evidence.sounds[:3])
            line += f"\n             evidence: frame {alert.evidence.frame_timestamp_ms} ms [{boxes}]; heard [{heard}]"
            line += f"; av_fusion {alert.evidence.model_score:.2f}"
            if alert.merged_rule_ids:
                line += f"; also {', '.join(alert.merged_rule_ids)}"
        lines.append(line)
    return lines


async def _run(address: str, clips: dict[str, tuple[scenarios.Scenario, Path]]) -> None:
    rules = convert.rules_to_proto(scenarios.reference_rules())
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.MonitoringServiceStub(channel)
        with contextlib.suppress(grpc.aio.AioRpcError):  # left over from an earlier run
            await stub.DeleteRoom(pb.DeleteRoomRequest(room_id=ROOM))
        await stub.CreateRoom(pb.CreateRoomRequest(room_id=ROOM, display_name="vtest hall", rules=rules))
        print(f"room {ROOM}: nobody in the hall 22:00-06:00; sounds of concern: alarms, sirens, glass, screams")
        for kind in ("alarm", "intruder", "busy_phone"):
            scenario, path = clips[kind]
            start = _clock(scenario.start_minute)
            print(
                f"\n  {path.name}: {scenario.description} "
                f"(local {scenario.start_minute // 60:02d}:{scenario.start_minute % 60:02d}"
                + (f", injected at {scenario.onset_ms} ms)" if scenario.onset_ms >= 0 else ")")
            )
            source = common_pb2.MediaSource(uri=str(path))
            report = await stub.AnalyzeClip(
                pb.AnalyzeClipRequest(video=source, room_id=ROOM, start_unix_ms=start), timeout=300
            )
            for line in _timeline(report):
                print(line)
            audio_only = await stub.AnalyzeClip(
                pb.AnalyzeClipRequest(
                    video=source, room_id=ROOM, start_unix_ms=start, policy=pb.FUSION_POLICY_AUDIO_ONLY
                ),
                timeout=300,
            )
            print(
                f"    -> fusion: {len(report.alerts)} alert(s) {[a.rule_id for a in report.alerts]}; "
                f"audio-only rules: {len(audio_only.alerts)} {[a.rule_id for a in audio_only.alerts]}; "
                f"analysed {report.frames_analyzed} frames + {report.audio_windows_analyzed} audio windows "
                f"in {report.analysis_ms:.0f} ms"
            )
        await stub.DeleteRoom(pb.DeleteRoomRequest(room_id=ROOM))
