"""How the reference frame_relevance model turns detections and a query into one score per frame.

Pure numpy so it is unit-tested here and imported by the Triton model. The query is compared with every detector
class name (MiniLM cosine similarity); a sharp softmax over those similarities weights the per-frame class
confidences, so "a kitten on a sofa" is scored by the cat (and couch) detections and nearly nothing else.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def class_weights(similarities: NDArray[np.float32], temperature: float = 0.05) -> NDArray[np.float32]:
    """Softmax over query-class cosine similarities; a low temperature keeps only the classes the query names."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    logits = similarities.astype(np.float64) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    out: NDArray[np.float32] = (weights / weights.sum()).astype(np.float32)
    return out


def frame_scores(class_confidence: NDArray[np.float32], weights: NDArray[np.float32]) -> NDArray[np.float32]:
    """[N, C] per-frame max confidence per class, [C] weights -> [N] relevance in [0, 1]."""
    if class_confidence.ndim != 2 or class_confidence.shape[1] != weights.shape[0]:
        raise ValueError(f"confidence {class_confidence.shape} does not match weights {weights.shape}")
    scores = class_confidence.astype(np.float32) @ weights
    clipped: NDArray[np.float32] = np.clip(scores, 0.0, 1.0).astype(np.float32)
    return clipped


def class_confidence(detections: NDArray[np.float32], num_classes: int) -> NDArray[np.float32]:
    """YOLO rows [x, y, w, h, objectness, p_1..p_C] -> [C] best confidence per class over all boxes."""
    if detections.size == 0:
        return np.zeros(num_classes, dtype=np.float32)
    best: NDArray[np.float32] = detections[:, 5 : 5 + num_classes].max(axis=0).astype(np.float32)
    return best
