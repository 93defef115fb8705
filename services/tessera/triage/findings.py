"""Findings: from the captioner's heatmaps to lesions, the fixed text schema the reasoner reads, and back.

The text is the contract between captioner and reasoner (a medical VLM and an LLM replace them on GPU pools).
One line per finding, then nothing else::

    finding F1: hemorrhage | superior_nasal | count=3 | confidence=0.91
    finding F2: microaneurysm | inferior_temporal | count=1 | confidence=0.62

or the single line ``no lesion found``. ``parse`` is lenient: unknown kinds or locations and malformed lines are
skipped (and counted), so a generative captioner's stray words cannot crash the reasoner.
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
MAX_COUNT = 50  # per kind and quadrant; more is reported as this many
_LINE = re.compile(
    r"^finding\s+(?P<id>f\d+)\s*:\s*(?P<kind>[a-z_]+)\s*\|\s*(?P<loc>[a-z_]+)\s*\|\s*count\s*=\s*(?P<count>\d+)"
    r"\s*\|\s*confidence\s*=\s*(?P<conf>[0-9.]+)\s*$"
)


@dataclass(frozen=True)
class Finding:
    id: str
    kind: str
    location: str
    count: int
    confidence: float


@dataclass(frozen=True)
class Peak:
    kind: str
    x: float  # pixels of the normalised frame
    y: float
    score: float


def peaks(heatmaps: NDArray[np.float32], threshold: float = PEAK_THRESHOLD) -> list[Peak]:
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
    """One finding per (kind, quadrant) with lesions: their count and the mean peak score as confidence."""
    groups: dict[tuple[str, str], list[float]] = {}
    for peak in found:
        groups.setdefault((peak.kind, quadrant_of(peak.x, peak.y)), []).append(peak.score)
    return numbered({key: (len(scores), float(np.mean(scores))) for key, scores in groups.items()})


def numbered(groups: Mapping[tuple[str, str], tuple[int, float]]) -> list[Finding]:
    """Findings in schema order (kind, then quadrant), ids F1, F2, ..."""
    ordered = sorted(groups.items(), key=lambda item: (KINDS.index(item[0][0]), QUADRANTS.index(item[0][1])))
    return [
        Finding(f"F{i}", kind, loc, min(count, MAX_COUNT), round(conf, 2))
        for i, ((kind, loc), (count, conf)) in enumerate(ordered, start=1)
        if count > 0
    ]


def merge(per_image: Iterable[list[Finding]]) -> list[Finding]:
    """Several images of one eye: per (kind, quadrant) the largest count seen (lesions hide in some views)."""
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for findings in per_image:
        for f in findings:
            key = (f.kind, f.location)
            if key not in best or (f.count, f.confidence) > best[key]:
                best[key] = (f.count, f.confidence)
    return numbered(best)


def to_text(findings: list[Finding]) -> str:
    if not findings:
        return NO_LESION
    return "\n".join(
        f"finding {f.id}: {f.kind} | {f.location} | count={f.count} | confidence={f.confidence:.2f}" for f in findings
    )


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
