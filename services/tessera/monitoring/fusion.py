"""The alerting decision: a room's rules and the learned audio-visual score applied to aligned evidence.

``decide`` looks at one evidence context (see ``evidence.context_at``) and returns at most one alert, with the
other rules that fired on the same evidence merged into it. Policies:

- FUSION: object rules; sound rules, where a CORROBORATED one needs the learned score to reach the room's
  corroboration threshold; and the learned score on its own above the room's model threshold.
- RULES_ONLY: object rules and every sound rule, no learned score (ablation).
- AUDIO_ONLY / VIDEO_ONLY: the sound rules / the object rules alone (single-modality baselines).

One event, one alert: ``Cooldown`` keeps the room's open alert for the room's cooldown after its evidence. Within
it a rule that keeps firing adds nothing, and a rule that was not yet part of the alert is merged into it: ``decide``
returns a ``Merge`` (the alert's next revision with the new findings), which the caller re-publishes under the same
alert id. A rule of the alert that had gone quiet for ``REARM_MS`` and fires again is a new occurrence (a second
anomaly close to the first: a crash, then an alarm, both only seen by the learned score) and joins the alert again
as a new finding, so a second event inside the cooldown is published rather than swallowed. Its state can be
rebuilt from past alerts, which is how a restarted fusion worker neither re-alerts an event it already reported nor
numbers a revision twice. Cooldown and alert ids use the evidence's wall-clock time
(the stream's start + stream time), so a reconnected stream, whose stream time starts again at 0, neither hides a new
alert behind an old one nor reuses an old alert's id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from tessera.monitoring.evidence import AudioObs, Box, Context
from tessera.monitoring.rules import ObjectRule, RoomRules, SoundRule, SoundRuleMode, Zone

MODEL_RULE_ID = "av_fusion"
REARM_MS = 3000  # a rule quiet this long (evidence time) that fires again within the cooldown is a new occurrence
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
    revision: int = 0
    findings: tuple[Candidate, ...] = ()  # rules merged in later revisions, in the order they joined


def revised(decision: AlertDecision, merge: Merge) -> AlertDecision:
    """The alert with a merge applied (the same alert id, the next revision)."""
    assert merge.alert_id == decision.alert_id
    new_ids = tuple(c.rule_id for c in merge.findings)
    return replace(
        decision,
        revision=merge.revision,
        merged_rule_ids=decision.merged_rule_ids + new_ids,
        findings=decision.findings + merge.findings,
    )


@dataclass(frozen=True)
class Merge:
    """Findings of rules that fired within the cooldown of the room's open alert: its next revision."""

    alert_id: str
    revision: int
    findings: tuple[Candidate, ...]


@dataclass
class OpenAlert:
    alert_id: str
    at_ms: int  # wall clock of the alert's evidence, ms since the epoch
    revision: int
    rule_ids: set[str]
    last_fired: dict[str, int] = field(default_factory=dict)  # rule id -> wall clock of its latest firing


@dataclass
class Cooldown:
    """The room's open alert: evidence within the cooldown of it (before or after: a redelivered older message) is
    the same event."""

    open: OpenAlert | None = None
    suppressed: int = 0  # firings that added nothing to the open alert

    def covers(self, at_ms: int, cooldown_ms: int) -> bool:
        return self.open is not None and abs(at_ms - self.open.at_ms) < cooldown_ms

    def opened(self, alert_id: str, at_ms: int, rule_ids: Sequence[str]) -> None:
        self.open = OpenAlert(alert_id, at_ms, 0, set(rule_ids), dict.fromkeys(rule_ids, at_ms))

    def rearmed(self, rule_id: str, at_ms: int, rearm_ms: int = REARM_MS) -> bool:
        """Whether ``rule_id``, already part of the open alert, had been quiet for ``rearm_ms`` before ``at_ms``."""
        assert self.open is not None
        last = self.open.last_fired.get(rule_id)
        return last is not None and at_ms - last >= rearm_ms

    def fired(self, rule_ids: Sequence[str], at_ms: int) -> None:
        assert self.open is not None
        for rule_id in rule_ids:
            self.open.last_fired[rule_id] = max(at_ms, self.open.last_fired.get(rule_id, at_ms))

    def merged(self, rule_ids: Sequence[str]) -> int:
        """Adds rules to the open alert; returns its new revision."""
        assert self.open is not None
        self.open.rule_ids.update(rule_ids)
        self.open.revision += 1
        return self.open.revision

    def restore(self, alerts: Sequence[tuple[str, int, int, Sequence[str]]]) -> None:
        """Rebuild from past alerts: (alert id, revision, evidence time, rule ids fired) in publication order."""
        for alert, revision, at_ms, rule_ids in alerts:
            # When a restored rule last fired is unknown (redelivered evidence may still hold it): it re-arms only
            # after it has been seen firing again and then quiet for the re-arm time.
            if self.open is None or (alert != self.open.alert_id and at_ms >= self.open.at_ms):
                self.open = OpenAlert(alert, at_ms, revision, set(rule_ids))
            elif alert == self.open.alert_id and revision >= self.open.revision:
                self.open.revision = revision
                self.open.rule_ids.update(rule_ids)


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


def _rank(candidate: Candidate) -> tuple[int, float]:
    return _PRIORITY[candidate.source], -candidate.score


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
) -> AlertDecision | Merge | None:
    """At most one alert for this context, the other rules that fire merged into it; within the cooldown of the
    room's open alert, a ``Merge`` of the rules new to it (None when there are none).

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
    if not firing:
        return None
    at = wall_clock_ms  # the evidence's wall clock decides which alert it belongs to
    if cooldown.covers(at, rules.cooldown_ms):
        assert cooldown.open is not None
        joining = {
            c.rule_id: c
            for c in sorted(firing, key=_rank)
            if c.rule_id not in cooldown.open.rule_ids or cooldown.rearmed(c.rule_id, at)
        }
        cooldown.fired([c.rule_id for c in firing], at)
        cooldown.suppressed += len(firing) - len(joining)
        if not joining:
            return None
        findings = tuple(joining.values())
        return Merge(cooldown.open.alert_id, cooldown.merged(list(joining)), findings)
    clock = wall_clock_ms - context.at_ms  # the stream's start on the wall clock
    allowed = firing
    allowed.sort(key=_rank)
    primary = allowed[0]
    merged = tuple(dict.fromkeys(c.rule_id for c in allowed[1:] if c.rule_id != primary.rule_id))
    identity = alert_id(room_id, primary.rule_id, clock + primary.event_time_ms)
    cooldown.opened(identity, clock + primary.event_time_ms, [primary.rule_id, *merged])
    frame = context.latest_frame
    sound_first = [r.sound_class for r in rules.sound_rules if r.rule_id in {primary.rule_id, *merged}]
    boxes = primary.boxes or (frame.boxes if frame is not None else ())
    return AlertDecision(
        alert_id=identity,
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
