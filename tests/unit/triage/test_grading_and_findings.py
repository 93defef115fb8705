"""The grading rules, the findings text schema and its features: hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.triage import findings, grading
from tessera.triage.findings import Finding, Peak
from tessera.triage.fundus import HEATMAP_STRIDE, KINDS, QUADRANTS

ALL = QUADRANTS


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ({}, "no_dr"),
        ({("microaneurysm", "superior_nasal"): 1}, "mild"),
        ({("microaneurysm", "superior_nasal"): 4, ("hard_exudate", "inferior_temporal"): 1}, "moderate"),
        ({("hemorrhage", q): 3 for q in ALL}, "severe"),
        ({**{("hemorrhage", q): 3 for q in ALL[:3]}, ("hemorrhage", ALL[3]): 2}, "moderate"),  # one short: not 4-2-1
        ({("hemorrhage", q): 9 for q in ALL[:3]}, "moderate"),  # many, but a quadrant clear
        ({("neovascularization", "inferior_nasal"): 1}, "proliferative"),
        ({("neovascularization", "inferior_nasal"): 1, **{("hemorrhage", q): 5 for q in ALL}}, "proliferative"),
    ],
)
def test_rules(counts: dict[tuple[str, str], int], want: str) -> None:
    assert grading.grade(counts) == want


def test_text_round_trip_and_lenient_parse() -> None:
    found = findings.numbered(
        {
            ("hemorrhage", "superior_nasal"): findings.Tally(3, 0.91),
            ("microaneurysm", "inferior_temporal"): findings.Tally(1, 0.6),
        }
    )
    assert [f.id for f in found] == ["F1", "F2"] and found[0].kind == "microaneurysm"  # schema order: kind first
    text = findings.to_text(found)
    assert text.splitlines()[1] == "finding F2: hemorrhage | superior_nasal | count=3 | confidence=0.91"
    parsed, skipped = findings.parse(
        text + "\nthe fundus looks otherwise normal\nfinding F9: drusen | x | count=2 | confidence=1"
    )
    assert parsed == found and skipped == 2
    assert findings.parse(findings.NO_LESION) == ([], 0)
    assert findings.to_text([]) == findings.NO_LESION


def test_faint_and_possible_lesions_are_written_read_and_bound_the_grade() -> None:
    heat = np.zeros((len(KINDS), 64, 64), np.float32)
    k = KINDS.index("hemorrhage")
    heat[k, 5, 5], heat[k, 5, 12], heat[k, 12, 5] = 0.9, 0.42, 0.3  # seen, faint, possible (superior nasal)
    (found,) = findings.from_peaks(findings.peaks(heat))
    assert (found.count, found.faint, found.possible) == (2, 1, 1)
    text = findings.to_text([found])
    assert text.endswith("| faint=1 | possible=1")
    assert findings.parse(text)[0] == [found]
    only_possible = findings.from_peaks(findings.peaks(np.where(heat > 0.35, 0, heat)))
    assert [(f.count, f.possible) for f in only_possible] == [(0, 1)]
    assert not findings.features(only_possible).any(), "the reasoner counts seen lesions only"
    cited = [grading.CitedFinding(f.id, f.kind, f.location, f.count, f.faint, f.possible) for f in [found]]
    assert grading.grade_range(cited) == ("moderate", "moderate")
    edge = [grading.CitedFinding("F1", "microaneurysm", "superior_nasal", 1, faint=1)]
    assert grading.grade_range(edge) == ("no_dr", "mild"), "one faint microaneurysm: mild or nothing"
    severe = [grading.CitedFinding(f"F{i}", "hemorrhage", q, 3) for i, q in enumerate(ALL)]
    short = [*severe[:3], grading.CitedFinding("F4", "hemorrhage", ALL[3], 2, possible=1)]
    assert grading.grade_range(short) == ("moderate", "severe")


def test_peaks_become_counts_per_quadrant() -> None:
    side = 256 // HEATMAP_STRIDE
    heat = np.zeros((len(KINDS), side, side), np.float32)
    k = KINDS.index("hemorrhage")
    for y, x in ((5, 5), (5, 12), (50, 50)):  # two superior-nasal lesions, one inferior-temporal
        heat[k, y, x] = 0.9
    heat[k, 5, 6] = 0.5  # a shoulder of the first peak, not a second lesion
    heat[KINDS.index("microaneurysm"), 40, 10] = 0.2  # below the threshold
    found = findings.from_peaks(findings.peaks(heat))
    assert [(f.kind, f.location, f.count) for f in found] == [
        ("hemorrhage", "superior_nasal", 2),
        ("hemorrhage", "inferior_temporal", 1),
    ]
    assert isinstance(findings.peaks(heat)[0], Peak)


def test_merge_takes_the_larger_count_per_place() -> None:
    a = [Finding("F1", "hemorrhage", "superior_nasal", 2, 0.8)]
    b = [Finding("F1", "hemorrhage", "superior_nasal", 3, 0.7), Finding("F2", "hard_exudate", "inferior_nasal", 1, 0.9)]
    merged = findings.merge([a, b])
    assert [(f.id, f.kind, f.count) for f in merged] == [("F1", "hemorrhage", 3), ("F2", "hard_exudate", 1)]


def test_features_encode_the_severe_threshold_per_quadrant() -> None:
    three = [Finding(f"F{i}", "hemorrhage", q, 3, 1.0) for i, q in enumerate(ALL)]
    two = [*three[:3], Finding("F4", "hemorrhage", ALL[3], 2, 1.0)]
    width = len(QUADRANTS) + 4
    h = KINDS.index("hemorrhage") * width
    reached = h + len(QUADRANTS) + 3  # the "quadrants at the severe threshold" feature
    assert findings.features(three)[reached] == 1.0 and findings.features(two)[reached] == 0.75
    assert findings.features([]).shape == (findings.FEATURES,) and not findings.features([]).any()


def test_rationale_cites_the_findings_behind_the_class_and_flags_disagreement() -> None:
    cited = [
        grading.CitedFinding("F1", "microaneurysm", "superior_nasal", 2),
        grading.CitedFinding("F2", "hemorrhage", "inferior_temporal", 1),
    ]
    text, ids = grading.rationale("moderate", cited)
    assert ids == ["F2"] and "F2" in text and "rules" not in text
    text, ids = grading.rationale("severe", cited)
    assert ids == ["F2"] and "give moderate" in text
    assert grading.rationale("no_dr", []) == ("no_dr: no lesion findings", [])
