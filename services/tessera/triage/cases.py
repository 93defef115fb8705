"""Repo-made cases: lesion counts drawn per class, with many near the boundaries between adjacent grades.

Each class is sampled equally often. Within a class, about half the cases sit next to the adjacent grade (one
hemorrhage, two quadrants at the severe threshold minus one, a single microaneurysm), because those are the
distinctions the benchmark measures.
"""

from __future__ import annotations

import numpy as np

from tessera.triage.fundus import QUADRANTS
from tessera.triage.grading import CLASSES, SEVERE_HEMORRHAGES, grade

Counts = dict[tuple[str, str], int]


def _spread(rng: np.random.Generator, kind: str, total: int, counts: Counts) -> None:
    for _ in range(total):
        q = QUADRANTS[int(rng.integers(len(QUADRANTS)))]
        counts[(kind, q)] = counts.get((kind, q), 0) + 1


def sample_counts(cls: str, rng: np.random.Generator) -> Counts:
    """Lesion counts whose rule grade is ``cls``."""
    counts: Counts = {}
    hard = rng.random() < 0.5
    if cls == "mild":
        _spread(rng, "microaneurysm", 1 if hard else int(rng.integers(1, 7)), counts)
    elif cls == "moderate":
        if hard and rng.random() < 0.5:  # next to mild: microaneurysms and a single hemorrhage or exudate
            _spread(rng, "microaneurysm", int(rng.integers(1, 5)), counts)
            _spread(rng, "hemorrhage" if rng.random() < 0.5 else "hard_exudate", 1, counts)
        elif hard:  # next to severe: the threshold reached in three quadrants, one short in the fourth
            short = QUADRANTS[int(rng.integers(4))]
            for q in QUADRANTS:
                counts[("hemorrhage", q)] = SEVERE_HEMORRHAGES - 1 if q == short else SEVERE_HEMORRHAGES
            _spread(rng, "microaneurysm", int(rng.integers(0, 4)), counts)
        else:
            _spread(rng, "microaneurysm", int(rng.integers(0, 5)), counts)
            _spread(rng, "hemorrhage", int(rng.integers(0, 6)), counts)
            _spread(rng, "hard_exudate", int(rng.integers(1, 5)), counts)
    elif cls == "severe":
        for q in QUADRANTS:
            counts[("hemorrhage", q)] = SEVERE_HEMORRHAGES if hard else int(rng.integers(SEVERE_HEMORRHAGES, 5))
        _spread(rng, "microaneurysm", int(rng.integers(0, 4)), counts)
        _spread(rng, "hard_exudate", int(rng.integers(0, 3)), counts)
    elif cls == "proliferative":
        _spread(rng, "neovascularization", 1, counts)
        if not hard:  # next to no_dr/mild when hard: new vessels and little else
            _spread(rng, "hemorrhage", int(rng.integers(0, 8)), counts)
            _spread(rng, "microaneurysm", int(rng.integers(0, 4)), counts)
            _spread(rng, "hard_exudate", int(rng.integers(0, 3)), counts)
    counts = {key: n for key, n in counts.items() if n > 0}
    assert grade(counts) == cls, (cls, counts)
    return counts


def balanced_classes(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` class names, as equal in number as ``n`` allows, in random order."""
    names = [CLASSES[i % len(CLASSES)] for i in range(n)]
    rng.shuffle(names)
    return names
