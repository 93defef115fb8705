"""A decision from calibrated probabilities: the class, its confidence, the entropy, the words, and abstention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tessera.triage.calibration import normalised_entropy


@dataclass(frozen=True)
class Decided:
    class_name: str
    probabilities: dict[str, float]
    confidence: float
    entropy: float  # normalised, in [0, 1]
    uncertainty: str
    refer: bool


def decide(probabilities: NDArray[np.float32], classes: Sequence[str], refer_threshold: float) -> Decided:
    p = np.asarray(probabilities, np.float64)
    if p.shape != (len(classes),) or not np.all(np.isfinite(p)) or abs(p.sum() - 1.0) > 1e-3:
        raise ValueError(f"probabilities must be {len(classes)} finite values summing to 1")
    order = np.argsort(-p, kind="stable")
    best, second = int(order[0]), int(order[1])
    confidence = float(p[best])
    entropy = float(normalised_entropy(p))
    refer = confidence < refer_threshold
    words = (
        f"calibrated confidence {confidence:.2f} in {classes[best]}; next {classes[second]} at {p[second]:.2f}; "
        f"normalised entropy {entropy:.2f}"
    )
    if refer:
        words += f". Below the task's threshold {refer_threshold:.2f}: refer to a human reader, do not act on it"
    return Decided(
        classes[best], {c: float(v) for c, v in zip(classes, p, strict=True)}, confidence, entropy, words, refer
    )
