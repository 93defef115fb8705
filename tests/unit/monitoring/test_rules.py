from __future__ import annotations

import pytest

from tessera.monitoring.rules import (
    ObjectRuleKind,
    RuleError,
    SoundRuleMode,
    TimeWindow,
    make_object_rule,
    make_rules,
    make_sound_rule,
    make_time_window,
    make_zone,
    point_in_polygon,
)

SQUARE = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]
L_SHAPE = [(0.0, 0.0), (1.0, 0.0), (1.0, 0.4), (0.4, 0.4), (0.4, 1.0), (0.0, 1.0)]


def test_point_in_polygon_convex_concave_and_edges() -> None:
    assert point_in_polygon(0.5, 0.5, SQUARE)
    assert not point_in_polygon(0.1, 0.5, SQUARE)
    assert point_in_polygon(0.2, 0.5, SQUARE)  # on an edge counts as inside
    assert point_in_polygon(0.8, 0.8, SQUARE)  # a vertex too
    assert point_in_polygon(0.2, 0.9, L_SHAPE)
    assert not point_in_polygon(0.7, 0.7, L_SHAPE)  # the notch of the L


def test_time_windows_wrap_past_midnight() -> None:
    night = TimeWindow(22 * 60, 6 * 60)
    assert night.contains(23 * 60) and night.contains(0) and night.contains(5 * 60 + 59)
    assert not night.contains(6 * 60) and not night.contains(12 * 60)
    office = TimeWindow(9 * 60, 17 * 60)
    assert office.contains(9 * 60) and not office.contains(17 * 60)
    assert make_time_window(0, 1440, "w").contains(1439)
    assert night.describe() == "22:00-06:00"
    with pytest.raises(RuleError) as error:
        make_time_window(1440, 10, "rules.zones[0].object_rules[0].active[0]")
    assert error.value.field == "rules.zones[0].object_rules[0].active[0].start_minute"


def test_object_rule_kinds() -> None:
    forbidden = make_object_rule("r", ObjectRuleKind.FORBIDDEN, ["person", "dog"], [], 0, "f")
    assert forbidden.breaks("person") and not forbidden.breaks("chair")
    assert forbidden.min_confidence == 0.5  # 0 means the default
    allowed = make_object_rule("a", ObjectRuleKind.ALLOWED_ONLY, ["person"], [], 0.3, "f")
    assert allowed.breaks("knife") and not allowed.breaks("person")
    assert forbidden.active_at(3) and not make_object_rule(
        "t", ObjectRuleKind.FORBIDDEN, ["person"], [TimeWindow(600, 700)], 0.5, "f"
    ).active_at(800)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: make_zone("z", [(0.1, 0.1), (0.2, 0.2)], [], "rules.zones[0]"), "rules.zones[0].polygon"),
        (
            lambda: make_zone("z", [(0.1, 0.1), (1.2, 0.2), (0.1, 0.9)], [], "rules.zones[0]"),
            "rules.zones[0].polygon[1].x",
        ),
        (lambda: make_zone("z", [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)], [], "rules.zones[0]"), "rules.zones[0].polygon"),
        (lambda: make_object_rule("r", None, ["person"], [], 0.5, "o"), "o.kind"),
        (lambda: make_object_rule("r", ObjectRuleKind.FORBIDDEN, [], [], 0.5, "o"), "o.classes"),
        (
            lambda: make_object_rule("r", ObjectRuleKind.FORBIDDEN, ["x"], [], 0.5, "o", frozenset({"y"})),
            "o.classes[0]",
        ),
        (lambda: make_object_rule("r", ObjectRuleKind.FORBIDDEN, ["y"], [], 1.5, "o"), "o.min_confidence"),
        (lambda: make_sound_rule("s", "", 0.5, None, "s0"), "s0.sound_class"),
        (lambda: make_sound_rule("s", "Alarm", 0.0, None, "s0"), "s0.threshold"),
        (lambda: make_sound_rule("s", "Roar", 0.5, None, "s0", frozenset({"Alarm"})), "s0.sound_class"),
    ],
)
def test_invalid_pieces_name_their_field(build: object, field: str) -> None:
    with pytest.raises(RuleError) as error:
        build()  # type: ignore[operator]
    assert error.value.field == field


def test_rule_set_checks_ids_and_bounds() -> None:
    rule = make_object_rule("same", ObjectRuleKind.FORBIDDEN, ["person"], [], 0.5, "o")
    zone = make_zone("door", SQUARE, [rule], "z")
    sound = make_sound_rule("same", "Alarm", 0.5, SoundRuleMode.ALWAYS, "s")
    with pytest.raises(RuleError) as error:
        make_rules([zone], [sound], None, None, 0)
    assert error.value.field == "rules.sound_rules[0].rule_id"
    with pytest.raises(RuleError) as error:
        make_rules([make_zone("Bad Id", [], [], "z")], [], None, None, 0)
    assert error.value.field == "rules.zones[0].zone_id"
    reserved = make_sound_rule("av_fusion", "Alarm", 0.5, None, "s")
    with pytest.raises(RuleError, match="reserved"):
        make_rules([], [reserved], None, None, 0)
    for kwargs, field in (
        ({"anomaly_sensitivity": 1.5}, "rules.anomaly_sensitivity"),
        ({"cooldown_ms": -1}, "rules.cooldown_ms"),
        ({"utc_offset_minutes": 900}, "rules.utc_offset_minutes"),
    ):
        args = {"anomaly_sensitivity": None, "cooldown_ms": None, "utc_offset_minutes": 0, **kwargs}
        with pytest.raises(RuleError) as error:
            make_rules([], [], args["anomaly_sensitivity"], args["cooldown_ms"], args["utc_offset_minutes"])
        assert error.value.field == field


def test_defaults_thresholds_and_local_time() -> None:
    rules = make_rules([], [], None, None, 60)
    assert rules.anomaly_sensitivity == 0.5 and rules.cooldown_ms == 10_000
    assert rules.model_threshold == pytest.approx(0.75) and rules.corroboration_threshold == pytest.approx(0.375)
    assert make_rules([], [], 1.0, None, 0).model_threshold == pytest.approx(0.5)
    assert make_rules([], [], 0.0, None, 0).model_threshold > 1.0  # the model never alerts on its own
    assert rules.minute_of_day(0) == 60  # 00:00 UTC is 01:00 at +60
    assert make_rules([], [], None, None, -120).minute_of_day(60_000 * 60) == 23 * 60
