"""Findings: from the captioner's heatmaps to lesions, the fixed text schema the reasoner reads, and back.

The text is the contract between captioner and reasoner (a medical VLM and an LLM replace them on GPU pools).
One line per finding, then nothing else::

    finding F1: hemorrhage | superior_nasal | count=3 | confidence=0.91
    finding F2: microaneurysm | inferior_temporal | count=1 | confidence=0.42 | faint=1 | possible=1

or the single line ``no lesion found``. ``count`` lesions are seen (``confidence`` is their mean score); of them,
``faint`` are barely above the detection threshold, and ``possible`` more are just below it and not counted. A
finding may have ``count=0`` with possible lesions only. The grade's stability under those (``grading.grade_range``)
is what the service refers on when the captioner is unsure. ``parse`` is lenient: unknown kinds or locations and
malformed lines are skipped (and counted), so a generative captioner's stray words cannot crash the reasoner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tessera.triage.fundus import HEATMAP_STRIDE, KINDS, QUADRANTS, quadrant_of
from tessera.triage.grading import SEVERE_HEMORRHAGES

NO_LESION = "no lesion found"
PEAK_THRESHOLD = 0.35  # heatmap value above which a local maximum is a lesion
FAINT_BELOW = 0.5  # a counted lesion below this score is faint: it might not be there
POSSIBLE_FROM = 0.25  # an uncounted local maximum from this score up is a possible lesion
MAX_COUNT = 50  # per kind and quadrant; more is reported as this many
_LINE = re.compile(
    r"^finding\s+(?P<id>f\d+)\s*:\s*(?P<kind>[a-z_]+)\s*\|\s*(?P<loc>[a-z_]+)\s*\|\s*count\s*=\s*(?P<count>\d+)"
    r"\s*\|\s*confidence\s*=\s*(?P<conf>[0-9.]+)"
    r"(?:\s*\|\s*faint\s*=\s*(?P<faint>\d+))?(?:\s*\|\s*possible\s*=\s*(?P<possible>\d+))?\s*$"
)


@dataclass(frozen=True)
class Finding:
    id: str
    kind: str
    location: str
    count: int
    confidence: float
    faint: int = 0  # of ``count``, lesions barely above the detection threshold
    possible: int = 0  # lesions just below it, not in ``count``


@dataclass(frozen=True)
class Tally:
    count: int
    confidence: float
    faint: int = 0
    possible: int = 0


@dataclass(frozen=True)
class Peak:
    kind: str
    x: float  # pixels of the normalised frame
    y: float
    score: float


def peaks(heatmaps: NDArray[np.float32], threshold: float = POSSIBLE_FROM) -> list[Peak]:
    """Local maxima (3x3) above ``threshold`` of each kind's heatmap [kinds, h, w], in frame pixels."""
    out: list[Peak] = []
    for k, kind in enumerate(KINDS):
        h = heatmaps[k]
        padded = np.pad(h, 1, constant_values=-np.inf)
        neighbours = np.stack(
            [
                padded[1 + dy : 1 + dy + h.shape[0], 1 + dx : 1 + dx + h.shape[1]]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            ]
        )
        is_peak = (h >= neighbours.max(axis=0)) & (h > threshold)
        for y, x in zip(*np.nonzero(is_peak), strict=True):
            out.append(Peak(kind, (x + 0.5) * HEATMAP_STRIDE, (y + 0.5) * HEATMAP_STRIDE, float(h[y, x])))
    return out


def from_peaks(found: Iterable[Peak]) -> list[Finding]:
    """One finding per (kind, quadrant): the lesions counted (score above PEAK_THRESHOLD) with their mean score as
    confidence, how many of them are faint, and the possible ones below the threshold."""
    groups: dict[tuple[str, str], list[float]] = {}
    for peak in found:
        groups.setdefault((peak.kind, quadrant_of(peak.x, peak.y)), []).append(peak.score)
    tallies = {}
    for key, scores in groups.items():
        counted = [v for v in scores if v > PEAK_THRESHOLD]
        confidence = float(np.mean(counted)) if counted else float(np.mean(scores))
        faint = sum(1 for v in counted if v < FAINT_BELOW)
        tallies[key] = Tally(len(counted), confidence, faint, len(scores) - len(counted))
    return numbered(tallies)


def numbered(groups: Mapping[tuple[str, str], Tally]) -> list[Finding]:
    """Findings in schema order (kind, then quadrant), ids F1, F2, ..."""
    ordered = sorted(groups.items(), key=lambda item: (KINDS.index(item[0][0]), QUADRANTS.index(item[0][1])))
    kept = [(key, t) for key, t in ordered if t.count > 0 or t.possible > 0]
    return [
        Finding(f"F{i}", kind, loc, min(t.count, MAX_COUNT), round(t.confidence, 2), t.faint, t.possible)
        for i, ((kind, loc), t) in enumerate(kept, start=1)
    ]


def merge(per_image: Iterable[list[Finding]]) -> list[Finding]:
    """Several images of one eye: per (kind, quadrant) the view that counts most lesions (lesions hide in some)."""
    best: dict[tuple[str, str], Tally] = {}
    for findings in per_image:
        for f in findings:
            key = (f.kind, f.location)
            if key not in best or (f.count, f.confidence) > (best[key].count, best[key].confidence):
                best[key] = Tally(f.count, f.confidence, f.faint, f.possible)
    return numbered(best)


def to_text(findings: list[Finding]) -> str:
    if not findings:
        return NO_LESION
    lines = []
    for f in findings:
        line = f"finding {f.id}: {f.kind} | {f.location} | count={f.count} | confidence={f.confidence:.2f}"
        if f.faint or f.possible:
            line += f" | faint={f.faint} | possible={f.possible}"
        lines.append(line)
    return "\n".join(lines)


def parse(text: str) -> tuple[list[Finding], int]:
    """Findings of a text in the schema, and how many non-empty lines were skipped as not in it."""
    found: list[Finding] = []
    skipped = 0
    for raw in text.splitlines():
        line = raw.strip().lower()
        if not line or line == NO_LESION:
            continue
        match = _LINE.match(line)
        if match is None or match["kind"] not in KINDS or match["loc"] not in QUADRANTS:
            skipped += 1
            continue
        found.append(
            Finding(
                match["id"].upper(),
                match["kind"],
                match["loc"],
                min(int(match["count"]), MAX_COUNT),
                min(1.0, float(match["conf"])),
                min(int(match["faint"] or 0), int(match["count"])),
                min(int(match["possible"] or 0), MAX_COUNT),
            )
        )
    return found, skipped


FEATURES = len(KINDS) * (len(QUADRANTS) + 4)


def features(findings: Iterable[Finding]) -> NDArray[np.float32]:
    """The reasoner's input: per kind, its count in each quadrant, its total, and how many quadrants reach 1, 2 and
    the severe threshold. Counts are read from the text; nothing of the image is here."""
    counts = np.zeros((len(KINDS), len(QUADRANTS)), np.float32)
    for f in findings:
        counts[KINDS.index(f.kind), QUADRANTS.index(f.location)] += f.count
    counts = np.minimum(counts, 10.0)
    reached = [(counts >= n).sum(axis=1, keepdims=True) for n in (1, 2, SEVERE_HEMORRHAGES)]
    table = np.concatenate([counts / 4.0, counts.sum(axis=1, keepdims=True) / 10.0, *(r / 4.0 for r in reached)], 1)
    return np.asarray(table.reshape(-1), np.float32)
