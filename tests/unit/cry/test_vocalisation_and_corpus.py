"""The synthetic cries follow their signatures; families differ; the three pools of real sounds never overlap."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.cry import corpus
from tessera.cry.vocalisation import RATE, REASONS, SIGNATURES, Voice, unit, vocalisation


def _f0(samples: np.ndarray) -> float:
    """Median autocorrelation pitch (150-1000 Hz) over 40 ms frames of a unit."""
    frame = int(0.04 * RATE)
    found = []
    for start in range(0, len(samples) - frame, frame):
        x = samples[start : start + frame] - samples[start : start + frame].mean()
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = RATE // 1000, RATE // 150
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(RATE / lag)
    return float(np.median(found)) if found else 0.0


def test_each_reason_sounds_in_its_pitch_range_and_the_ranges_are_ordered() -> None:
    pitch = {}
    for reason in REASONS:
        rng = np.random.default_rng(3)
        estimates = [_f0(unit(SIGNATURES[reason], Voice(), 0.5, rng)) for _ in range(6)]
        low, high = SIGNATURES[reason].f0_hz
        pitch[reason] = float(np.median(estimates))
        assert 0.75 * low <= pitch[reason] <= 1.3 * high, (reason, estimates)
    assert pitch["pain"] > pitch["hunger"] > pitch["tiredness"] > pitch["burping"]


def test_bouts_have_the_rhythm_of_their_reason_and_are_deterministic() -> None:
    def active_share(reason: str) -> float:
        audio = vocalisation(reason, Voice(), 4.0, np.random.default_rng(1))
        envelope = np.abs(audio).reshape(-1, 160).max(axis=1)
        return float(np.mean(envelope > 0.05 * envelope.max()))

    assert active_share("discomfort") > active_share("burping")  # nearly continuous vs short grunts
    a = vocalisation("pain", Voice(1.1, 0.95), 2.0, np.random.default_rng(5))
    b = vocalisation("pain", Voice(1.1, 0.95), 2.0, np.random.default_rng(5))
    assert np.array_equal(a, b) and len(a) == 2 * RATE and np.all(np.isfinite(a))


def test_mixing_reaches_the_asked_snr() -> None:
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    noise = rng.standard_normal(RATE).astype(np.float32)
    mixed = corpus.mix_at_snr(tone, noise, 10.0)
    residual = mixed - tone
    snr = 10 * np.log10(np.mean(tone**2) / np.mean(residual**2))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_families_are_non_iid_and_the_sound_pools_are_disjoint() -> None:
    mixes = np.array([corpus.make_family(i, 1).class_mix for i in range(20)])
    assert np.allclose(mixes.sum(axis=1), 1.0)
    assert mixes.argmax(axis=1).tolist().count(int(np.bincount(mixes.argmax(axis=1)).argmax())) < 20
    assert mixes.std(axis=0).mean() > 0.1  # families hear different reasons
    assert corpus.make_family(3, 1) == corpus.make_family(3, 1) != corpus.make_family(4, 1)
    pools = [set(corpus.TRAIN_BACKGROUNDS), set(corpus.EVAL_BACKGROUNDS), set(corpus.OOD_SOUNDS + corpus.OOD_SPEECH)]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])


def test_recordings_are_labelled_bounded_and_carry_the_dry_cry() -> None:
    family = corpus.make_family(0, 1)
    recordings = corpus.family_recordings(family, 3, 2, seed=1, duration_s=2.0)
    assert [r.label >= 0 for r in recordings] == [True, True, True, False, False]
    for r in recordings:
        assert len(r.audio) == 2 * RATE and float(np.abs(r.audio).max()) <= 1.0
        assert (r.clean is not None) == (r.label >= 0)
    unknown = corpus.unknown_sound(np.random.default_rng(2), 2.0)
    assert unknown.label == corpus.NOT_CRY and np.abs(unknown.audio).max() > 0.01
