"""Protos <-> the monitoring domain, for the gateway and the workers (field paths name the request fields)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tessera.common.v1 import common_pb2
from tessera.monitoring.evidence import AudioObs, Box, FrameObs
from tessera.monitoring.fusion import AlertDecision, Candidate, Merge, Policy, Source
from tessera.monitoring.rules import (
    ObjectRuleKind,
    RoomRules,
    SoundRuleMode,
    TimeWindow,
    make_object_rule,
    make_rules,
    make_sound_rule,
    make_time_window,
    make_zone,
)
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb

_KINDS = {
    pb.OBJECT_RULE_KIND_FORBIDDEN: ObjectRuleKind.FORBIDDEN,
    pb.OBJECT_RULE_KIND_ALLOWED_ONLY: ObjectRuleKind.ALLOWED_ONLY,
}
_MODES = {
    pb.SOUND_RULE_MODE_UNSPECIFIED: SoundRuleMode.CORROBORATED,
    pb.SOUND_RULE_MODE_CORROBORATED: SoundRuleMode.CORROBORATED,
    pb.SOUND_RULE_MODE_ALWAYS: SoundRuleMode.ALWAYS,
}
_SOURCES = {
    Source.OBJECT_RULE: pb.ALERT_SOURCE_OBJECT_RULE,
    Source.SOUND_RULE: pb.ALERT_SOURCE_SOUND_RULE,
    Source.MODEL: pb.ALERT_SOURCE_MODEL,
}
POLICIES = {
    pb.FUSION_POLICY_UNSPECIFIED: Policy.FUSION,
    pb.FUSION_POLICY_FUSION: Policy.FUSION,
    pb.FUSION_POLICY_RULES_ONLY: Policy.RULES_ONLY,
    pb.FUSION_POLICY_AUDIO_ONLY: Policy.AUDIO_ONLY,
    pb.FUSION_POLICY_VIDEO_ONLY: Policy.VIDEO_ONLY,
}
POLICY_PROTO = {
    Policy.FUSION: pb.FUSION_POLICY_FUSION,
    Policy.RULES_ONLY: pb.FUSION_POLICY_RULES_ONLY,
    Policy.AUDIO_ONLY: pb.FUSION_POLICY_AUDIO_ONLY,
    Policy.VIDEO_ONLY: pb.FUSION_POLICY_VIDEO_ONLY,
}


def rules_from_proto(
    rules: pb.RoomRules,
    field: str = "rules",
    object_classes: frozenset[str] | None = None,
    sound_classes: frozenset[str] | None = None,
) -> RoomRules:
    """Validate and convert; raises ``RuleError`` naming the offending field."""
    zones = []
    for i, zone in enumerate(rules.zones):
        zfield = f"{field}.zones[{i}]"
        object_rules = []
        for j, rule in enumerate(zone.object_rules):
            rfield = f"{zfield}.object_rules[{j}]"
            windows: list[TimeWindow] = [
                make_time_window(w.start_minute, w.end_minute, f"{rfield}.active[{k}]")
                for k, w in enumerate(rule.active)
            ]
            object_rules.append(
                make_object_rule(
                    rule.rule_id,
                    _KINDS.get(rule.kind),
                    list(rule.classes),
                    windows,
                    rule.min_confidence,
                    rfield,
                    object_classes,
                )
            )
        zones.append(make_zone(zone.zone_id, [(p.x, p.y) for p in zone.polygon], object_rules, zfield))
    sounds = [
        make_sound_rule(
            s.rule_id, s.sound_class, s.threshold, _MODES.get(s.mode), f"{field}.sound_rules[{i}]", sound_classes
        )
        for i, s in enumerate(rules.sound_rules)
    ]
    return make_rules(
        zones,
        sounds,
        rules.anomaly_sensitivity if rules.HasField("anomaly_sensitivity") else None,
        rules.cooldown_ms if rules.HasField("cooldown_ms") else None,
        rules.utc_offset_minutes,
        field,
    )


def rules_to_proto(rules: RoomRules) -> pb.RoomRules:
    kinds = {v: k for k, v in _KINDS.items()}
    modes = {
        SoundRuleMode.CORROBORATED: pb.SOUND_RULE_MODE_CORROBORATED,
        SoundRuleMode.ALWAYS: pb.SOUND_RULE_MODE_ALWAYS,
    }
    return pb.RoomRules(
        zones=[
            pb.Zone(
                zone_id=z.zone_id,
                polygon=[pb.Point(x=x, y=y) for x, y in z.polygon],
                object_rules=[
                    pb.ObjectRule(
                        rule_id=r.rule_id,
                        kind=kinds[r.kind],
                        classes=sorted(r.classes),
                        active=[pb.TimeWindow(start_minute=w.start_minute, end_minute=w.end_minute) for w in r.active],
                        min_confidence=r.min_confidence,
                    )
                    for r in z.object_rules
                ],
            )
            for z in rules.zones
        ],
        sound_rules=[
            pb.SoundRule(rule_id=s.rule_id, sound_class=s.sound_class, threshold=s.threshold, mode=modes[s.mode])
            for s in rules.sound_rules
        ],
        anomaly_sensitivity=rules.anomaly_sensitivity,
        cooldown_ms=rules.cooldown_ms,
        utc_offset_minutes=rules.utc_offset_minutes,
    )


def box_to_proto(box: Box) -> pb.Detection:
    return pb.Detection(
        class_name=box.class_name,
        score=box.score,
        box=pb.BoundingBox(x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max),
    )


def box_from_proto(detection: pb.Detection) -> Box:
    b = detection.box
    return Box(detection.class_name, detection.score, b.x_min, b.y_min, b.x_max, b.y_max)


def alert_to_proto(decision: AlertDecision, stream_start_unix_ms: int, publish_unix_ms: int) -> pb.Alert:
    return pb.Alert(
        alert_id=decision.alert_id,
        room_id=decision.room_id,
        source=_SOURCES[decision.source],
        rule_id=decision.rule_id,
        summary=decision.summary,
        event_time_ms=decision.event_time_ms,
        event_unix_ms=stream_start_unix_ms + decision.event_time_ms,
        publish_unix_ms=publish_unix_ms,
        score=decision.score,
        evidence=pb.Evidence(
            frame_timestamp_ms=decision.frame_timestamp_ms,
            boxes=[box_to_proto(b) for b in decision.boxes],
            sounds=[
                pb.SoundEvent(
                    class_name=s.class_name,
                    score=s.score,
                    span=common_pb2.TimeRange(start_ms=s.start_ms, end_ms=s.end_ms),
                )
                for s in decision.sounds
            ],
            model_score=decision.model_score,
            model_name="av_fusion" if decision.model_score >= 0 else "",
            zone_id=decision.zone_id,
            window=common_pb2.TimeRange(start_ms=decision.window[0], end_ms=decision.window[1]),
        ),
        merged_rule_ids=list(decision.merged_rule_ids),
        revision=decision.revision,
        merged=[finding_to_proto(c, stream_start_unix_ms) for c in decision.findings],
    )


def finding_to_proto(candidate: Candidate, stream_start_unix_ms: int) -> pb.MergedFinding:
    return pb.MergedFinding(
        source=_SOURCES[candidate.source],
        rule_id=candidate.rule_id,
        summary=candidate.summary,
        score=candidate.score,
        event_time_ms=candidate.event_time_ms,
        event_unix_ms=stream_start_unix_ms + candidate.event_time_ms,
        zone_id=candidate.zone_id,
        boxes=[box_to_proto(b) for b in candidate.boxes],
    )


def revise(alert: pb.Alert, merge: Merge, stream_start_unix_ms: int, publish_unix_ms: int) -> pb.Alert:
    """A published alert's next revision: the merged findings appended, the rest as first published."""
    out = pb.Alert()
    out.CopyFrom(alert)
    out.ClearField("sequence")
    out.revision = merge.revision
    out.publish_unix_ms = publish_unix_ms
    out.merged_rule_ids.extend(c.rule_id for c in merge.findings)
    out.merged.extend(finding_to_proto(c, stream_start_unix_ms) for c in merge.findings)
    return out


def revision_msg_id(alert: pb.Alert) -> str:
    """The audit stream's de-duplication key: one per alert revision."""
    return alert.alert_id if alert.revision == 0 else f"{alert.alert_id}.r{alert.revision}"


def fired_rules(alert: pb.Alert) -> list[str]:
    return [alert.rule_id, *alert.merged_rule_ids]


def frame_obs(message: msg.FrameDetections) -> FrameObs:
    return FrameObs(
        message.timestamp_ms,
        tuple(box_from_proto(d) for d in message.detections),
        message.stats.luma_mean,
        message.stats.luma_std,
        message.stats.detail_energy,
        message.seq,
    )


def audio_obs(message: msg.AudioEvents) -> AudioObs:
    return AudioObs(
        message.start_ms,
        message.end_ms,
        np.frombuffer(message.scores_f16, dtype="<f2").astype(np.float32),
        np.frombuffer(message.embedding_f16, dtype="<f2").astype(np.float32),
        message.loudness_dbfs,
        message.centroid_hz,
        message.seq,
    )


def f16(values: Sequence[float] | np.ndarray) -> bytes:  # type: ignore[type-arg]
    return np.asarray(values, dtype="<f2").tobytes()
