"""The alerting decision: a room's rules and the learned audio-visual score applied to aligned evidence.

``decide`` looks at one evidence context (see ``evidence.context_at``) and returns at most one alert, with the
other rules that fired on the same evidence merged into it. Policies:

- FUSION: object rules; sound rules, where a CORROBORATED one needs the learned score to reach the room's
  corroboration threshold; and the learned score on its own above the room's model threshold.
- RULES_ONLY: object rules and every sound rule, no learned score (ablation).
- AUDIO_ONLY / VIDEO_ONLY: the sound rules / the object rules alone (single-modality baselines).

``Cooldown`` keeps a rule from alerting again within the room's cooldown. Its state can be rebuilt from past alerts,
which is how a restarted fusion worker avoids re-alerting an event it already reported. Cooldown and alert ids use
the evidence's wall-clock time (the stream's start + stream time), so a reconnected stream, whose stream time starts
again at 0, neither hides a new alert behind an old one nor reuses an old alert's id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from tessera.monitoring.evidence import AudioObs, Box, Context
from tessera.monitoring.rules import ObjectRule, RoomRules, SoundRule, SoundRuleMode, Zone

MODEL_RULE_ID = "av_fusion"
_SOUNDS_IN_EVIDENCE = 3


class Policy(Enum):
    FUSION = "fusion"
    RULES_ONLY = "rules_only"
    AUDIO_ONLY = "audio_only"
    VIDEO_ONLY = "video_only"

    @property
    def uses_objects(self) -> bool:
        return self is not Policy.AUDIO_ONLY

    @property
    def uses_sounds(self) -> bool:
        return self is not Policy.VIDEO_ONLY

    @property
    def uses_model(self) -> bool:
        return self is Policy.FUSION


class Source(Enum):
    OBJECT_RULE = "object_rule"
    SOUND_RULE = "sound_rule"
    MODEL = "model"


_PRIORITY = {Source.OBJECT_RULE: 0, Source.SOUND_RULE: 1, Source.MODEL: 2}


@dataclass(frozen=True)
class SoundHit:
    class_name: str
    score: float
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Candidate:
    source: Source
    rule_id: str
    score: float
    summary: str
    event_time_ms: int
    zone_id: str = ""
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class AlertDecision:
    alert_id: str
    room_id: str
    source: Source
    rule_id: str
    summary: str
    event_time_ms: int
    score: float
    frame_timestamp_ms: int  # -1: no frame in the context
    boxes: tuple[Box, ...]
    sounds: tuple[SoundHit, ...]
    model_score: float  # -1: not evaluated
    zone_id: str
    window: tuple[int, int]
    merged_rule_ids: tuple[str, ...] = ()


@dataclass
class Cooldown:
    """Last alert time per rule (wall clock of the evidence, ms since the epoch)."""

    last_ms: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0

    def allows(self, rule_id: str, at_ms: int, cooldown_ms: int) -> bool:
        """Symmetric: evidence within the cooldown of the last alert, before or after it (a redelivered older
        message), is held back."""
        last = self.last_ms.get(rule_id)
        return last is None or abs(at_ms - last) >= cooldown_ms

    def record(self, rule_ids: Sequence[str], at_ms: int) -> None:
        for rule_id in rule_ids:
            self.last_ms[rule_id] = at_ms

    def restore(self, decisions: Sequence[tuple[Sequence[str], int]]) -> None:
        """Rebuild from past alerts: (rule ids fired, event time) pairs in publication order."""
        for rule_ids, at_ms in decisions:
            self.record(rule_ids, at_ms)


def alert_id(room_id: str, rule_id: str, event_unix_ms: int) -> str:
    """The same room, rule and evidence time give the same id: it de-duplicates republished alerts."""
    digest = hashlib.blake2b(f"{room_id}\x00{rule_id}\x00{event_unix_ms}".encode(), digest_size=12).hexdigest()
    return f"alert-{digest}"


def object_candidates(rules: RoomRules, context: Context, wall_clock_ms: int) -> list[Candidate]:
    """Object rules broken in the latest frame of the context."""
    frame = context.latest_frame
    if frame is None:
        return []
    minute = rules.minute_of_day(wall_clock_ms)
    found: list[Candidate] = []
    for zone in rules.zones:
        for rule in zone.object_rules:
            if not rule.active_at(minute):
                continue
            offending = _offending(zone, rule, frame.boxes)
            if offending:
                best = max(offending, key=lambda b: b.score)
                names = sorted({b.class_name for b in offending})
                found.append(
                    Candidate(
                        Source.OBJECT_RULE,
                        rule.rule_id,
                        best.score,
                        f"{', '.join(names)} in zone {zone.zone_id} ({rule.describe()})",
                        frame.timestamp_ms,
                        zone.zone_id,
                        tuple(sorted(offending, key=lambda b: -b.score)),
                    )
                )
    return found


def _offending(zone: Zone, rule: ObjectRule, boxes: Sequence[Box]) -> list[Box]:
    return [
        box
        for box in boxes
        if box.score >= rule.min_confidence and rule.breaks(box.class_name) and zone.contains(*box.foot)
    ]


def sound_candidates(
    rules: RoomRules, window: AudioObs | None, class_index: dict[str, int]
) -> list[tuple[SoundRule, Candidate]]:
    if window is None:
        return []
    found = []
    for rule in rules.sound_rules:
        index = class_index.get(rule.sound_class)
        if index is None:
            continue
        score = float(window.scores[index])
        if score >= rule.threshold:
            found.append(
                (
                    rule,
                    Candidate(
                        Source.SOUND_RULE,
                        rule.rule_id,
                        score,
                        f"sound {rule.sound_class!r} at {score:.2f} (threshold {rule.threshold:.2f})",
                        window.end_ms,
                    ),
                )
            )
    return found


def top_sounds(window: AudioObs | None, labels: Sequence[str], first: Sequence[str] = ()) -> tuple[SoundHit, ...]:
    """The named classes first (a sound rule's class), then the highest-scoring others."""
    if window is None:
        return ()
    index_of = {name: i for i, name in enumerate(labels)}
    chosen = [name for name in dict.fromkeys(first) if name in index_of]
    limit = len(chosen) + _SOUNDS_IN_EVIDENCE
    for index in np.argsort(-window.scores):
        if len(chosen) >= limit:
            break
        name = labels[int(index)]
        if name not in chosen:
            chosen.append(name)
    return tuple(
        SoundHit(name, float(window.scores[index_of[name]]), window.start_ms, window.end_ms) for name in chosen
    )


def decide(
    *,
    room_id: str,
    rules: RoomRules,
    policy: Policy,
    context: Context,
    wall_clock_ms: int,
    model_score: float | None,
    labels: Sequence[str],
    cooldown: Cooldown,
) -> AlertDecision | None:
    """At most one alert for this context; rules in cooldown are left out, the rest are merged into it.

    ``wall_clock_ms`` is the wall-clock time of ``context.at_ms`` (the stream's start + stream time): it sets the
    local time of day for the rules' time windows, the cooldown's clock and the alert id."""
    class_index = {name: i for i, name in enumerate(labels)}
    firing: list[Candidate] = []
    if policy.uses_objects:
        firing += object_candidates(rules, context, wall_clock_ms)
    if policy.uses_sounds:
        for rule, candidate in sound_candidates(rules, context.latest_audio, class_index):
            corroborated = (
                not policy.uses_model
                or rule.mode is SoundRuleMode.ALWAYS
                or model_score is None  # the model is unavailable: fail open, a sound of concern still alerts
                or model_score >= rules.corroboration_threshold
            )
            if corroborated:
                firing.append(candidate)
    if policy.uses_model and model_score is not None and model_score >= rules.model_threshold:
        firing.append(
            Candidate(
                Source.MODEL,
                MODEL_RULE_ID,
                model_score,
                f"audio-visual anomaly score {model_score:.2f} (threshold {rules.model_threshold:.2f})",
                context.at_ms,
            )
        )
    clock = wall_clock_ms - context.at_ms  # the stream's start on the wall clock
    allowed = [c for c in firing if cooldown.allows(c.rule_id, clock + c.event_time_ms, rules.cooldown_ms)]
    cooldown.suppressed += len(firing) - len(allowed)
    if not allowed:
        return None
    allowed.sort(key=lambda c: (_PRIORITY[c.source], -c.score))
    primary = allowed[0]
    merged = tuple(c.rule_id for c in allowed[1:])
    cooldown.record([primary.rule_id, *merged], clock + primary.event_time_ms)
    frame = context.latest_frame
    sound_first = [r.sound_class for r in rules.sound_rules if r.rule_id in {primary.rule_id, *merged}]
    boxes = primary.boxes or (frame.boxes if frame is not None else ())
    return AlertDecision(
        alert_id=alert_id(room_id, primary.rule_id, clock + primary.event_time_ms),
        room_id=room_id,
        source=primary.source,
        rule_id=primary.rule_id,
        summary=primary.summary,
        event_time_ms=primary.event_time_ms,
        score=primary.score,
        frame_timestamp_ms=frame.timestamp_ms if frame is not None else -1,
        boxes=boxes,
        sounds=top_sounds(context.latest_audio, labels, sound_first),
        model_score=-1.0 if model_score is None else float(model_score),
        zone_id=primary.zone_id,
        window=context.span,
        merged_rule_ids=merged,
    )
