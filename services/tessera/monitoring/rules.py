"""A room's rules: zones as normalised polygons, object rules per zone and time window, sound classes of concern.

Pure Python: the gRPC layer converts protos to these types and every check raises ``RuleError`` naming the field
(dotted path as in the request), which the servicer turns into INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from tessera.runtime.echo import shown

_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
MINUTES_PER_DAY = 1440
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_SENSITIVITY = 0.5
DEFAULT_COOLDOWN_MS = 10_000
MAX_ZONES = 32
MAX_RULES = 64
MAX_POLYGON_POINTS = 64


class RuleError(ValueError):
    """A rule that cannot be applied; ``field`` is the request field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class ObjectRuleKind(Enum):
    FORBIDDEN = "forbidden"
    ALLOWED_ONLY = "allowed_only"


class SoundRuleMode(Enum):
    CORROBORATED = "corroborated"
    ALWAYS = "always"


@dataclass(frozen=True)
class TimeWindow:
    """[start_minute, end_minute) of the local day; end <= start wraps past midnight."""

    start_minute: int
    end_minute: int

    def contains(self, minute_of_day: int) -> bool:
        if self.start_minute == self.end_minute:
            return True  # 00:00-00:00 style: the whole day
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute_of_day < self.end_minute
        return minute_of_day >= self.start_minute or minute_of_day < self.end_minute

    def describe(self) -> str:
        def hhmm(m: int) -> str:
            return f"{m // 60 % 24:02d}:{m % 60:02d}"

        return f"{hhmm(self.start_minute)}-{hhmm(self.end_minute)}"


@dataclass(frozen=True)
class ObjectRule:
    rule_id: str
    kind: ObjectRuleKind
    classes: frozenset[str]
    active: tuple[TimeWindow, ...] = ()
    min_confidence: float = DEFAULT_MIN_CONFIDENCE

    def active_at(self, minute_of_day: int) -> bool:
        return not self.active or any(w.contains(minute_of_day) for w in self.active)

    def breaks(self, class_name: str) -> bool:
        inside = class_name in self.classes
        return inside if self.kind is ObjectRuleKind.FORBIDDEN else not inside

    def describe(self) -> str:
        what = "forbidden" if self.kind is ObjectRuleKind.FORBIDDEN else "not allowed"
        when = f" {', '.join(w.describe() for w in self.active)}" if self.active else ""
        return f"{what}{when}"


@dataclass(frozen=True)
class Zone:
    zone_id: str
    polygon: tuple[tuple[float, float], ...]  # empty: the whole frame
    object_rules: tuple[ObjectRule, ...] = ()

    def contains(self, x: float, y: float) -> bool:
        if not self.polygon:
            return 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
        return point_in_polygon(x, y, self.polygon)


@dataclass(frozen=True)
class SoundRule:
    rule_id: str
    sound_class: str
    threshold: float
    mode: SoundRuleMode = SoundRuleMode.CORROBORATED


@dataclass(frozen=True)
class RoomRules:
    zones: tuple[Zone, ...] = ()
    sound_rules: tuple[SoundRule, ...] = ()
    anomaly_sensitivity: float = DEFAULT_SENSITIVITY
    cooldown_ms: int = DEFAULT_COOLDOWN_MS
    utc_offset_minutes: int = 0
    rule_ids: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def model_threshold(self) -> float:
        """The learned score at which the model alerts on its own: 1 - sensitivity / 2 (> 1: never)."""
        return 1.0 - self.anomaly_sensitivity / 2.0 if self.anomaly_sensitivity > 0 else 1.01

    @property
    def corroboration_threshold(self) -> float:
        """The learned score at which a CORROBORATED sound rule may alert: half the model threshold."""
        return min(1.0, 1.0 - self.anomaly_sensitivity / 2.0) / 2.0

    def minute_of_day(self, unix_ms: int) -> int:
        return int((unix_ms // 60_000 + self.utc_offset_minutes) % MINUTES_PER_DAY)


def point_in_polygon(x: float, y: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting; points on an edge count as inside."""
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if _on_segment(x, y, x1, y1, x2, y2):
            return True
        if (y1 > y) != (y2 > y):
            cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross:
                inside = not inside
    return inside


def _on_segment(x: float, y: float, x1: float, y1: float, x2: float, y2: float, eps: float = 1e-9) -> bool:
    if abs((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) > eps:
        return False
    return min(x1, x2) - eps <= x <= max(x1, x2) + eps and min(y1, y2) - eps <= y <= max(y1, y2) + eps


def _check_id(value: str, field_name: str, seen: set[str]) -> None:
    if not _ID.match(value):
        raise RuleError("must be 1-64 characters of [a-z0-9_-]", field_name)
    if value in seen:
        raise RuleError(f"duplicate id {shown(value)} (rule and zone ids are unique within a room)", field_name)
    seen.add(value)


def _polygon_area(points: Sequence[tuple[float, float]]) -> float:
    area = 0.0
    for i, (x1, y1) in enumerate(points):
        x2, y2 = points[(i + 1) % len(points)]
        area += x1 * y2 - x2 * y1
    return abs(area) / 2.0


def make_time_window(start: int, end: int, field_name: str) -> TimeWindow:
    if not 0 <= start < MINUTES_PER_DAY:
        raise RuleError("must be 0-1439", f"{field_name}.start_minute")
    if not 0 <= end <= MINUTES_PER_DAY:
        raise RuleError("must be 0-1440", f"{field_name}.end_minute")
    return TimeWindow(start, end % MINUTES_PER_DAY if end == MINUTES_PER_DAY and start == 0 else end)


def make_zone(
    zone_id: str,
    polygon: Sequence[tuple[float, float]],
    object_rules: Sequence[ObjectRule],
    field_name: str,
) -> Zone:
    if polygon:
        if len(polygon) < 3:
            raise RuleError("a polygon needs at least 3 points (or none for the whole frame)", f"{field_name}.polygon")
        if len(polygon) > MAX_POLYGON_POINTS:
            raise RuleError(f"at most {MAX_POLYGON_POINTS} points", f"{field_name}.polygon")
        for i, (x, y) in enumerate(polygon):
            for axis, value in (("x", x), ("y", y)):
                if not 0.0 <= value <= 1.0:
                    raise RuleError("normalised coordinates must lie in [0, 1]", f"{field_name}.polygon[{i}].{axis}")
        if _polygon_area(polygon) < 1e-6:
            raise RuleError("the polygon has no area", f"{field_name}.polygon")
    return Zone(zone_id, tuple((float(x), float(y)) for x, y in polygon), tuple(object_rules))


def make_object_rule(
    rule_id: str,
    kind: ObjectRuleKind | None,
    classes: Sequence[str],
    active: Sequence[TimeWindow],
    min_confidence: float,
    field_name: str,
    known_classes: frozenset[str] | None = None,
) -> ObjectRule:
    if kind is None:
        raise RuleError("must be FORBIDDEN or ALLOWED_ONLY", f"{field_name}.kind")
    cleaned = [c.strip() for c in classes]
    if kind is ObjectRuleKind.FORBIDDEN and not cleaned:
        raise RuleError("a FORBIDDEN rule needs at least one class", f"{field_name}.classes")
    for i, name in enumerate(cleaned):
        if not name:
            raise RuleError("must not be empty", f"{field_name}.classes[{i}]")
        if known_classes is not None and name not in known_classes:
            raise RuleError(f"{shown(name)} is not a class of the object detector", f"{field_name}.classes[{i}]")
    confidence = min_confidence or DEFAULT_MIN_CONFIDENCE
    if not 0.0 < confidence <= 1.0:
        raise RuleError("must be in (0, 1]", f"{field_name}.min_confidence")
    return ObjectRule(rule_id, kind, frozenset(cleaned), tuple(active), confidence)


def make_sound_rule(
    rule_id: str,
    sound_class: str,
    threshold: float,
    mode: SoundRuleMode | None,
    field_name: str,
    known_classes: frozenset[str] | None = None,
) -> SoundRule:
    name = sound_class.strip()
    if not name:
        raise RuleError("must name an AudioSet class", f"{field_name}.sound_class")
    if known_classes is not None and name not in known_classes:
        raise RuleError(f"{shown(name)} is not a class of the audio_events model", f"{field_name}.sound_class")
    if not 0.0 < threshold <= 1.0:
        raise RuleError("must be in (0, 1]", f"{field_name}.threshold")
    return SoundRule(rule_id, name, float(threshold), mode or SoundRuleMode.CORROBORATED)


def make_rules(
    zones: Sequence[Zone],
    sound_rules: Sequence[SoundRule],
    anomaly_sensitivity: float | None,
    cooldown_ms: int | None,
    utc_offset_minutes: int,
    field_name: str = "rules",
) -> RoomRules:
    """Check the whole rule set (ids unique across zones and rules, bounds) and build it."""
    if len(zones) > MAX_ZONES:
        raise RuleError(f"at most {MAX_ZONES} zones", f"{field_name}.zones")
    if len(sound_rules) > MAX_RULES or sum(len(z.object_rules) for z in zones) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} object rules and {MAX_RULES} sound rules", field_name)
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        _check_id(zone.zone_id, f"{field_name}.zones[{i}].zone_id", seen)
        for j, rule in enumerate(zone.object_rules):
            _check_id(rule.rule_id, f"{field_name}.zones[{i}].object_rules[{j}].rule_id", seen)
    for i, sound in enumerate(sound_rules):
        _check_id(sound.rule_id, f"{field_name}.sound_rules[{i}].rule_id", seen)
    if "av_fusion" in seen:
        raise RuleError("'av_fusion' is reserved for the learned model's alerts", field_name)
    sensitivity = DEFAULT_SENSITIVITY if anomaly_sensitivity is None else float(anomaly_sensitivity)
    if not 0.0 <= sensitivity <= 1.0:
        raise RuleError("must be in [0, 1]", f"{field_name}.anomaly_sensitivity")
    cooldown = DEFAULT_COOLDOWN_MS if cooldown_ms is None else int(cooldown_ms)
    if not 0 <= cooldown <= 86_400_000:
        raise RuleError("must be 0-86400000 ms", f"{field_name}.cooldown_ms")
    if not -840 <= utc_offset_minutes <= 840:
        raise RuleError("must be -840..840 minutes", f"{field_name}.utc_offset_minutes")
    return RoomRules(tuple(zones), tuple(sound_rules), sensitivity, cooldown, int(utc_offset_minutes), frozenset(seen))
