"""From a segment's scores to what the service says of it (pure): cry or not, reason, confidence, abstention."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class SegmentCall:
    cry_detected: bool
    ranked: tuple[tuple[int, float], ...]  # (reason index, probability), most probable first; empty: no cry
    reason: int | None  # None: no cry, or abstained
    confidence: float
    abstained: bool


def call(
    cry_probability: float,
    probabilities: NDArray[np.float32],
    energy: float,
    *,
    cry_threshold: float,
    energy_threshold: float,
) -> SegmentCall:
    """A cry is detected at ``cry_threshold``; a detected cry whose energy is above ``energy_threshold`` is a sound
    the model does not know, so it abstains and names no reason (nor ranks any)."""
    if cry_probability < cry_threshold:
        return SegmentCall(False, (), None, 0.0, False)
    if energy > energy_threshold:
        return SegmentCall(True, (), None, 0.0, True)
    order = np.argsort(-probabilities, kind="stable")
    ranked = tuple((int(i), float(probabilities[i])) for i in order)
    return SegmentCall(True, ranked, ranked[0][0], ranked[0][1], False)
