from __future__ import annotations

import numpy as np
import pytest

from tessera.cry import calibration


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5)).astype(np.float32)
    labels = np.array([rng.choice(5, p=p) for p in calibration.probabilities(logits, 2.5)])
    assert calibration.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.12)
    before = calibration.ece(calibration.probabilities(logits, 1.0), labels)
    after = calibration.ece(calibration.probabilities(logits, 2.5), labels)
    assert after < 0.03 < before


def test_ece_auroc_and_f1_on_known_cases() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 1])
    # bins: 0.9 -> accuracy 1 (gap 0.1, share 0.5); 0.6 -> accuracy 0.5 (gap 0.1, share 0.5)
    assert calibration.ece(probs, labels) == pytest.approx(0.1)
    assert calibration.auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert calibration.auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert calibration.macro_f1(np.array([0, 1, 1]), np.array([0, 1, 0]), 2) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert calibration.binary_f1(np.array([True, False]), np.array([True, True])) == pytest.approx(2 / 3)


def test_energy_is_lower_for_confident_inputs_and_the_threshold_keeps_the_asked_share() -> None:
    confident = np.array([[10.0, 0, 0, 0, 0]], np.float32)
    flat = np.zeros((1, 5), np.float32)
    assert calibration.energy(confident)[0] < calibration.energy(flat)[0]
    values = np.arange(100, dtype=np.float64)
    threshold = calibration.energy_threshold(values, keep=0.95)
    assert np.mean(values <= threshold) == pytest.approx(0.95, abs=0.011)
