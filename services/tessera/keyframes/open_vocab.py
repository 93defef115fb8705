"""The open-vocabulary scorer's arithmetic: ImageNet-1k probabilities and COCO detections -> one relevance per frame.

Pure numpy, shared by the Triton model and the tests. No CLIP-class image-text network ships offline
(docs/keyframes-scorer.md), but an ImageNet-1k classifier does (MobileNetV2); its 1000 classes, bridged to the query
through MiniLM the way the detector path bridges COCO's 80, let a query name what COCO cannot see (a fish, a
monkey, a butterfly, a tripod, a space shuttle). A class is present in a frame with the larger of its whole-frame
probability and its best probability over the feature map's cells (a small object wins a cell, not the frame).
The frame's relevance is the query-weighted sum of those, fused by maximum with the detector path's score, so
people and COCO objects (no ImageNet class is a person) keep the detector's sight.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def softmax(logits: NDArray[np.float32], axis: int = -1) -> NDArray[np.float32]:
    shifted = logits.astype(np.float64) - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    out: NDArray[np.float32] = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)
    return out


def class_presence(whole_logits: NDArray[np.float32], cell_logits: NDArray[np.float32]) -> NDArray[np.float32]:
    """[N, C] whole-frame logits and [N, cells, C] per-cell logits -> [N, C] presence in [0, 1]."""
    if whole_logits.ndim != 2 or cell_logits.ndim != 3 or cell_logits.shape[::2] != whole_logits.shape:
        raise ValueError(f"logits {whole_logits.shape} and cell logits {cell_logits.shape} do not match")
    out: NDArray[np.float32] = np.maximum(softmax(whole_logits), softmax(cell_logits).max(axis=1))
    return out


def fuse(open_scores: NDArray[np.float32], detector_scores: NDArray[np.float32]) -> NDArray[np.float32]:
    """The higher of the two relevances: each path sees what the other cannot (a fish; a pedestrian)."""
    if open_scores.shape != detector_scores.shape:
        raise ValueError(f"scores {open_scores.shape} and {detector_scores.shape} differ")
    out: NDArray[np.float32] = np.clip(np.maximum(open_scores, detector_scores), 0.0, 1.0).astype(np.float32)
    return out
