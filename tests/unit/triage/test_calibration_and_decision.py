"""Calibration, abstention and the decision's words: hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.triage import calibration
from tessera.triage.decision import decide
from tessera.triage.grading import CLASSES


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model() -> None:
    labels = np.array([0, 0, 0, 1])
    calibrated = np.array([[0.75, 0.25]] * 4)  # 75% confident, 75% right
    assert calibration.ece(calibrated, labels) == pytest.approx(0.0)
    overconfident = np.array([[0.99, 0.01]] * 4)
    assert calibration.ece(overconfident, labels) == pytest.approx(0.24)


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in calibration.softmax(true_logits)])
    fitted = calibration.fit_temperature(true_logits * 3.0, labels)  # a model 3x overconfident
    assert fitted == pytest.approx(3.0, rel=0.1)
    assert calibration.ece(calibration.softmax(true_logits * 3.0, fitted), labels) < 0.03


def test_accuracy_coverage_refers_the_least_confident_first() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    labels = np.array([0, 0, 1, 0])
    points = calibration.accuracy_coverage(probs, labels)
    assert [(p.coverage, p.accuracy) for p in points] == [
        (1.0, 0.75),
        (0.75, pytest.approx(2 / 3)),
        (0.5, 1.0),
        (0.25, 1.0),
    ]
    assert calibration.at_coverage(points, 0.6).coverage == 0.75
    assert calibration.threshold_for_coverage(probs, 0.5) == 0.8


def test_macro_f1() -> None:
    labels = np.array([0, 0, 1, 1])
    assert calibration.macro_f1(labels, labels, 2) == 1.0
    assert calibration.macro_f1(np.array([0, 0, 0, 1]), labels, 2) == pytest.approx((0.8 + 2 / 3) / 2)


def test_decision_states_its_uncertainty_and_refers_below_the_threshold() -> None:
    probs = np.array([0.05, 0.1, 0.6, 0.2, 0.05], np.float32)
    sure = decide(probs, CLASSES, refer_threshold=0.5)
    assert sure.class_name == "moderate" and not sure.refer
    assert "0.60" in sure.uncertainty and "severe" in sure.uncertainty  # names the runner-up
    assert 0 < sure.entropy < 1
    unsure = decide(probs, CLASSES, refer_threshold=0.7)
    assert unsure.refer and "refer" in unsure.uncertainty
    with pytest.raises(ValueError):
        decide(np.array([0.5, 0.5], np.float32), CLASSES, 0.5)
