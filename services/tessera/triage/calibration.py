"""Calibration and abstention: temperature scaling, expected calibration error, accuracy-coverage, macro-F1.

Pure numpy; ``probabilities`` are rows that sum to 1, ``labels`` class indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64] | NDArray[np.float32]


def softmax(logits: Floats, temperature: float = 1.0) -> NDArray[np.float64]:
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), np.float64)


def nll(logits: Floats, labels: NDArray[np.int64], temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: Floats, labels: NDArray[np.int64]) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood (golden-section on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    for _ in range(60):
        if nll(logits, labels, float(np.exp(a))) < nll(logits, labels, float(np.exp(b))):
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
    return float(np.exp((lo + hi) / 2))


def ece(probabilities: Floats, labels: NDArray[np.int64], bins: int = 15) -> float:
    """Expected calibration error: confidence vs accuracy over ``bins`` equal-width confidence bins, weighted."""
    p = np.asarray(probabilities, np.float64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for i in range(bins):
        inside = (confidence > edges[i]) & (confidence <= edges[i + 1])
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def normalised_entropy(probabilities: Floats) -> NDArray[np.float64]:
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    return np.asarray(-(p * np.log(p)).sum(axis=-1) / np.log(p.shape[-1]), np.float64)


@dataclass(frozen=True)
class CoveragePoint:
    threshold: float  # confidence below which a case is referred
    coverage: float  # fraction decided
    accuracy: float  # accuracy on the decided cases


def accuracy_coverage(probabilities: Floats, labels: NDArray[np.int64]) -> list[CoveragePoint]:
    """Refer the least confident first: one point per distinct coverage, from full coverage down."""
    p = np.asarray(probabilities, np.float64)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    points = []
    n = len(labels)
    for kept in range(n, 0, -1):
        chosen = order[:kept]
        threshold = float(confidence[order[kept - 1]])
        points.append(CoveragePoint(threshold, kept / n, float(correct[chosen].mean())))
    return points


def at_coverage(points: list[CoveragePoint], coverage: float) -> CoveragePoint:
    """The point with the smallest coverage still at or above ``coverage``."""
    eligible = [p for p in points if p.coverage >= coverage - 1e-9]
    return min(eligible, key=lambda p: p.coverage)


def threshold_for_coverage(probabilities: Floats, coverage: float) -> float:
    """The confidence threshold that decides ``coverage`` of these cases (the rest referred)."""
    confidence = np.sort(np.asarray(probabilities, np.float64).max(axis=1))
    index = int(np.floor((1.0 - coverage) * len(confidence)))
    return float(confidence[min(index, len(confidence) - 1)])


def macro_f1(predicted: NDArray[np.int64], labels: NDArray[np.int64], classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = float(np.sum((predicted == c) & (labels == c)))
        fp = float(np.sum((predicted == c) & (labels != c)))
        fn = float(np.sum((predicted != c) & (labels == c)))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0
