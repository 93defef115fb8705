from __future__ import annotations

import numpy as np
import pytest

from tessera.monitoring.evidence import AudioObs, Box, Context, FrameObs
from tessera.monitoring.fusion import (
    MODEL_RULE_ID,
    REARM_MS,
    AlertDecision,
    Cooldown,
    Merge,
    Policy,
    Source,
    alert_id,
    decide,
    revised,
)
from tessera.monitoring.rules import (
    ObjectRuleKind,
    RoomRules,
    SoundRuleMode,
    TimeWindow,
    make_object_rule,
    make_rules,
    make_sound_rule,
    make_zone,
)

LABELS = ["Speech", "Alarm", "Telephone", "Smoke detector, smoke alarm"]
NOON = 12 * 3_600_000
MIDNIGHT = 0


def rules(
    *,
    sound_mode: SoundRuleMode = SoundRuleMode.CORROBORATED,
    sensitivity: float = 0.5,
    cooldown_ms: int = 5000,
    window: list[TimeWindow] | None = None,
) -> RoomRules:
    door = make_zone(
        "door",
        [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)],
        [make_object_rule("no-person", ObjectRuleKind.FORBIDDEN, ["person"], window or [], 0.5, "z")],
        "z",
    )
    alarm = make_sound_rule("alarm", "Alarm", 0.5, sound_mode, "s")
    return make_rules([door], [alarm], sensitivity, cooldown_ms, 0)


def frame(t: int, *boxes: Box) -> FrameObs:
    return FrameObs(t, boxes, 0.5, 0.2, 0.1, seq=t + 1)


def window(end: int, **scores: float) -> AudioObs:
    vector = np.zeros(len(LABELS), np.float32)
    for name, value in scores.items():
        vector[LABELS.index(name.replace("_", " "))] = value
    return AudioObs(end - 982, end, vector, np.zeros(1024, np.float32), -30.0, 1000.0, seq=end)


PERSON_AT_DOOR = Box("person", 0.9, 0.1, 0.6, 0.3, 0.95)  # foot (0.2, 0.95): inside
PERSON_ELSEWHERE = Box("person", 0.9, 0.6, 0.1, 0.9, 0.4)  # foot (0.75, 0.4): outside


def run(
    context: Context, room: RoomRules, policy: Policy = Policy.FUSION, score: float | None = 0.0, clock: int = NOON
) -> object:
    return decide(
        room_id="r",
        rules=room,
        policy=policy,
        context=context,
        wall_clock_ms=clock + context.at_ms,
        model_score=score,
        labels=LABELS,
        cooldown=Cooldown(),
    )


def test_object_rule_uses_the_zone_the_feet_and_the_time_window() -> None:
    inside = Context(1000, (frame(1000, PERSON_AT_DOOR),), ())
    outside = Context(1000, (frame(1000, PERSON_ELSEWHERE),), ())
    decision = run(inside, rules())
    assert decision is not None and decision.rule_id == "no-person" and decision.source is Source.OBJECT_RULE  # type: ignore[attr-defined]
    assert decision.boxes == (PERSON_AT_DOOR,) and decision.zone_id == "door"  # type: ignore[attr-defined]
    assert run(outside, rules()) is None
    night_only = rules(window=[TimeWindow(22 * 60, 6 * 60)])
    assert run(inside, night_only, clock=NOON) is None
    assert run(inside, night_only, clock=MIDNIGHT) is not None
    weak = Context(1000, (frame(1000, Box("person", 0.3, 0.1, 0.6, 0.3, 0.95)),), ())
    assert run(weak, rules()) is None  # below the rule's min_confidence


def test_corroborated_sound_needs_the_learned_score() -> None:
    ringing = Context(2000, (frame(1800),), (window(2000, Alarm=0.9),))
    assert run(ringing, rules(), score=0.1) is None  # the room's normal: a phone among people
    decision = run(ringing, rules(), score=0.5)  # above the corroboration threshold (0.375), below the model's
    assert decision is not None and decision.rule_id == "alarm" and decision.merged_rule_ids == ()  # type: ignore[attr-defined]
    assert decision.sounds[0].class_name == "Alarm" and decision.model_score == 0.5  # type: ignore[attr-defined]
    always = rules(sound_mode=SoundRuleMode.ALWAYS)
    assert run(ringing, always, score=0.0) is not None
    assert run(ringing, rules(), score=None) is not None  # model unavailable: fail open
    assert run(Context(2000, (), (window(2000, Alarm=0.4),)), rules(), score=0.9).rule_id == MODEL_RULE_ID  # type: ignore[union-attr]


def test_policies_select_modalities() -> None:
    both = Context(2000, (frame(2000, PERSON_AT_DOOR),), (window(2000, Alarm=0.9),))
    fused = run(both, rules(), score=0.9)
    assert fused.rule_id == "no-person" and set(fused.merged_rule_ids) == {"alarm", MODEL_RULE_ID}  # type: ignore[attr-defined]
    assert run(both, rules(), Policy.AUDIO_ONLY, score=None).rule_id == "alarm"  # type: ignore[union-attr]
    assert run(both, rules(), Policy.VIDEO_ONLY, score=None).rule_id == "no-person"  # type: ignore[union-attr]
    rules_only = run(both, rules(), Policy.RULES_ONLY, score=0.0)
    assert rules_only.merged_rule_ids == ("alarm",)  # type: ignore[attr-defined]  # sound not gated, no model rule
    only_model = Context(2000, (frame(2000),), (window(2000, Speech=0.9),))
    assert run(only_model, rules(), Policy.RULES_ONLY, score=0.99) is None
    assert run(only_model, rules(sensitivity=0.0), score=0.99) is None  # sensitivity 0: never alone
    assert run(only_model, rules(sensitivity=1.0), score=0.6).source is Source.MODEL  # type: ignore[union-attr]


def _at(
    room: RoomRules, cooldown: Cooldown, t: int, score: float, *, person: bool = True, alarm: float = 0.0
) -> object:
    boxes = (PERSON_AT_DOOR,) if person else ()
    return decide(
        room_id="r",
        rules=room,
        policy=Policy.FUSION,
        context=Context(t, (frame(t, *boxes),), (window(t, Alarm=alarm),) if alarm else ()),
        wall_clock_ms=NOON + t,
        model_score=score,
        labels=LABELS,
        cooldown=cooldown,
    )


def test_a_rule_firing_again_within_the_cooldown_adds_nothing_before_or_after() -> None:
    room = rules(cooldown_ms=5000)
    cooldown = Cooldown()
    first = _at(room, cooldown, 1000, 0.0)
    assert isinstance(first, AlertDecision)
    assert _at(room, cooldown, 3000, 0.0) is None and cooldown.suppressed == 1
    assert _at(room, cooldown, 800, 0.0) is None  # a redelivered older frame inside the cooldown
    later = _at(room, cooldown, 6000, 0.0)  # past the cooldown: a new event
    assert isinstance(later, AlertDecision) and later.alert_id != first.alert_id


def test_one_event_one_alert_later_rules_are_merged_as_revisions_with_their_evidence() -> None:
    """A single alarm: the object rule, then the sound rule, then the learned score fire 200 ms apart."""
    room = rules(cooldown_ms=5000, sound_mode=SoundRuleMode.ALWAYS)
    cooldown = Cooldown()
    first = _at(room, cooldown, 1000, 0.0)
    second = _at(room, cooldown, 1200, 0.0, alarm=0.9)
    third = _at(room, cooldown, 1400, 0.99, alarm=0.9)
    assert isinstance(first, AlertDecision) and first.rule_id == "no-person"
    assert isinstance(second, Merge) and isinstance(third, Merge)
    assert (second.alert_id, second.revision, [c.rule_id for c in second.findings]) == (first.alert_id, 1, ["alarm"])
    assert (third.revision, [c.rule_id for c in third.findings]) == (2, [MODEL_RULE_ID])
    assert _at(room, cooldown, 1600, 0.99, alarm=0.9) is None  # every rule is in the alert already
    final = revised(revised(first, second), third)
    assert final.alert_id == first.alert_id and final.revision == 2
    assert final.merged_rule_ids == ("alarm", MODEL_RULE_ID)
    assert [c.event_time_ms for c in final.findings] == [1200, 1400] and final.findings[0].score == pytest.approx(0.9)


def test_the_open_alert_is_restored_from_published_revisions() -> None:
    room = rules(cooldown_ms=5000, sound_mode=SoundRuleMode.ALWAYS)
    live = Cooldown()
    first = _at(room, live, 1000, 0.0)
    merge = _at(room, live, 1200, 0.0, alarm=0.9)
    assert isinstance(first, AlertDecision) and isinstance(merge, Merge)
    restored = Cooldown()
    restored.restore(
        [
            ("older", 0, NOON - 60_000, ["no-person"]),
            (first.alert_id, 0, NOON + 1000, ["no-person"]),
            (first.alert_id, 1, NOON + 1000, ["no-person", "alarm"]),
        ]
    )
    assert _at(room, restored, 1300, 0.0, alarm=0.9) is None  # both rules already reported
    resumed = _at(room, restored, 1400, 0.99)
    assert isinstance(resumed, Merge) and (resumed.alert_id, resumed.revision) == (first.alert_id, 2)


def test_a_reconnected_stream_is_not_held_back_by_the_previous_one() -> None:
    room = rules(cooldown_ms=5000)
    cooldown = Cooldown()
    seen = Context(1000, (frame(1000, PERSON_AT_DOOR),), ())
    first = decide(
        room_id="r",
        rules=room,
        policy=Policy.FUSION,
        context=seen,
        wall_clock_ms=NOON + 1000,
        model_score=0.0,
        labels=LABELS,
        cooldown=cooldown,
    )
    # The camera reconnects a minute later: its stream time starts at 0 again, the wall clock does not.
    again = decide(
        room_id="r",
        rules=room,
        policy=Policy.FUSION,
        context=seen,
        wall_clock_ms=NOON + 61_000,
        model_score=0.0,
        labels=LABELS,
        cooldown=cooldown,
    )
    assert first is not None and again is not None and first.alert_id != again.alert_id


def test_alert_ids_are_stable() -> None:
    assert alert_id("r", "alarm", 1200) == alert_id("r", "alarm", 1200)
    assert len({alert_id("r", "alarm", 1200), alert_id("r", "alarm", 1400), alert_id("s", "alarm", 1200)}) == 3
    decision = run(Context(2000, (frame(2000, PERSON_AT_DOOR),), ()), rules())
    assert decision.alert_id == alert_id("r", "no-person", NOON + 2000)  # type: ignore[attr-defined]
    assert decision.window == (2000, 2000) and decision.model_score == pytest.approx(0.0)  # type: ignore[attr-defined]


def test_a_rule_quiet_for_the_rearm_time_that_fires_again_joins_the_alert_as_a_new_occurrence() -> None:
    """Two anomalies 4 s apart inside a 10 s cooldown, both seen by the same rule: the second is published."""
    room = rules(cooldown_ms=10_000)
    cooldown = Cooldown()
    first = _at(room, cooldown, 1000, 0.0)
    assert isinstance(first, AlertDecision) and first.rule_id == "no-person"
    for t in range(1200, 2200, 200):  # the same event keeps firing: nothing new
        assert _at(room, cooldown, t, 0.0) is None
    assert _at(room, cooldown, 2000 + REARM_MS - 200, 0.0, person=False) is None  # quiet evidence fires nothing
    again = _at(room, cooldown, 2000 + REARM_MS + 200, 0.0)  # quiet since 2000 for more than REARM_MS
    assert isinstance(again, Merge) and again.alert_id == first.alert_id and again.revision == 1
    assert [(c.rule_id, c.event_time_ms) for c in again.findings] == [("no-person", 2000 + REARM_MS + 200)]
    assert _at(room, cooldown, 2000 + REARM_MS + 400, 0.0) is None  # and is then part of the alert again
    assert revised(first, again).merged_rule_ids == ("no-person",)


def test_a_restored_rule_re_arms_only_after_it_was_seen_quiet() -> None:
    """After a restart the redelivered evidence of the same event must not look like a second occurrence."""
    room = rules(cooldown_ms=10_000)
    restored = Cooldown()
    restored.restore([("alert-1", 0, NOON + 1000, ["no-person"])])
    assert _at(room, restored, 1000 + REARM_MS + 1000, 0.0) is None  # redelivered: last firing unknown, adds nothing
    assert _at(room, restored, 1000 + REARM_MS + 1200, 0.0) is None
    again = _at(room, restored, 1000 + 2 * REARM_MS + 1400, 0.0)  # seen quiet for REARM_MS since: a new occurrence
    assert isinstance(again, Merge) and (again.alert_id, again.revision) == ("alert-1", 1)
