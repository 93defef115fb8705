"""Diabetic-retinopathy grading from findings: the task's classes, its rules, and the rationale that cites findings.

The rules follow the international clinical DR severity scale, with the "4-2-1" severe criterion scaled to the
lesion counts of a 256-pixel image (``SEVERE_HEMORRHAGES`` per quadrant instead of 20):

    proliferative  any neovascularization
    severe         at least SEVERE_HEMORRHAGES hemorrhages in each of the four quadrants
    moderate       any hemorrhage or hard exudate (more than microaneurysms only), short of severe
    mild           microaneurysms only
    no_dr          no lesion

``grade`` is the rule itself (ground truth for repo-made images, and the check a rationale is written against);
the served decision comes from the reasoner model, which learns the rules from repo-made findings text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tessera.triage.fundus import KINDS, QUADRANTS

TASK = "dr_grading"
CLASSES = ("no_dr", "mild", "moderate", "severe", "proliferative")
SEVERE_HEMORRHAGES = 3
RULES = (
    "proliferative: any neovascularization; "
    f"severe: at least {SEVERE_HEMORRHAGES} hemorrhages in each of the four quadrants; "
    "moderate: any hemorrhage or hard exudate, short of severe; "
    "mild: microaneurysms only; no_dr: no lesion"
)
Counts = Mapping[tuple[str, str], int]  # (kind, quadrant) -> lesions


def total(counts: Counts, kind: str) -> int:
    return sum(counts.get((kind, q), 0) for q in QUADRANTS)


def grade(counts: Counts) -> str:
    """The class the rules give for exact lesion counts."""
    if total(counts, "neovascularization") > 0:
        return "proliferative"
    if all(counts.get(("hemorrhage", q), 0) >= SEVERE_HEMORRHAGES for q in QUADRANTS):
        return "severe"
    if total(counts, "hemorrhage") + total(counts, "hard_exudate") > 0:
        return "moderate"
    if total(counts, "microaneurysm") > 0:
        return "mild"
    return "no_dr"


@dataclass(frozen=True)
class CitedFinding:
    id: str
    kind: str
    location: str
    count: int
    faint: int = 0  # of ``count``, lesions the captioner barely saw
    possible: int = 0  # lesions it nearly saw, not in ``count``


def grade_range(findings: Sequence[CitedFinding]) -> tuple[str, str]:
    """The grades the rules give without the faint lesions and with the possible ones: the decision is stable
    under the captioner's uncertainty when both are the same (the rules are monotone in the counts)."""
    fewest = {(f.kind, f.location): f.count - f.faint for f in findings}
    most = {(f.kind, f.location): f.count + f.possible for f in findings}
    return grade(fewest), grade(most)


def rationale(decided: str, findings: Sequence[CitedFinding]) -> tuple[str, list[str]]:
    """Words and cited finding ids explaining ``decided`` from the findings; says so when the rules disagree."""
    by_kind: dict[str, list[CitedFinding]] = {kind: [] for kind in KINDS}
    for finding in findings:
        if finding.kind in by_kind and finding.count > 0:
            by_kind[finding.kind].append(finding)
    counts = {(f.kind, f.location): f.count for f in findings}
    ruled = grade(counts)

    def listed(items: list[CitedFinding]) -> str:
        return ", ".join(f"{f.count} {f.kind.replace('_', ' ')} {f.location.replace('_', ' ')} ({f.id})" for f in items)

    if decided == "proliferative":
        cited = by_kind["neovascularization"]
        text = f"neovascularization: {listed(cited)}" if cited else "no neovascularization was found"
    elif decided == "severe":
        cited = by_kind["hemorrhage"]
        quadrants = {f.location for f in cited if f.count >= SEVERE_HEMORRHAGES}
        text = f"hemorrhages in {len(quadrants)} of 4 quadrants at {SEVERE_HEMORRHAGES} or more: {listed(cited)}"
    elif decided == "moderate":
        cited = by_kind["hemorrhage"] + by_kind["hard_exudate"]
        text = f"hemorrhages or hard exudates: {listed(cited)}" if cited else "no hemorrhage or exudate was found"
    elif decided == "mild":
        cited = by_kind["microaneurysm"]
        text = f"microaneurysms only: {listed(cited)}" if cited else "no microaneurysm was found"
    else:
        cited = []
        text = "no lesion findings"
    if ruled != decided:
        text += f"; the grading rules applied to these findings give {ruled}"
    return f"{decided}: {text}", [f.id for f in cited]
