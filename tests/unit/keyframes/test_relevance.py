from __future__ import annotations

import numpy as np
import pytest

from tessera.keyframes.relevance import class_confidence, class_weights, frame_scores


def test_weights_concentrate_on_the_named_class() -> None:
    sims = np.array([0.8, 0.5, 0.2], dtype=np.float32)
    w = class_weights(sims, temperature=0.05)
    assert w.sum() == pytest.approx(1.0)
    # exp((0.8 - 0.5) / 0.05) = e^6 ~ 403: the named class dominates.
    assert w[0] / w[1] == pytest.approx(np.exp(6.0), rel=1e-3)
    with pytest.raises(ValueError):
        class_weights(sims, temperature=0)


def test_scores_follow_the_weighted_class() -> None:
    conf = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    w = np.array([0.98, 0.02, 0.0], dtype=np.float32)
    scores = frame_scores(conf, w)
    assert scores[0] > scores[1] > scores[2] == 0.0
    with pytest.raises(ValueError):
        frame_scores(conf, w[:2])


def test_class_confidence_takes_best_box_per_class() -> None:
    rows = np.array([[0, 0, 1, 1, 0.9, 0.2, 0.7], [0, 0, 1, 1, 0.5, 0.6, 0.1]], dtype=np.float32)
    assert class_confidence(rows, 2).tolist() == pytest.approx([0.6, 0.7])
    assert class_confidence(np.zeros((0, 7), np.float32), 2).tolist() == [0.0, 0.0]
