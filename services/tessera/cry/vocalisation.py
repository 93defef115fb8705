"""Synthetic infant-cry vocalisations whose acoustics follow the published descriptions of each reason (pure numpy).

No infant-cry corpus ships offline, so the reason labels of this capability are synthetic. Each reason has an
acoustic signature taken from the cry-acoustics literature (Dunstan's sound reflexes; pain-cry studies):

- hunger: rhythmic, regular units of about 1 s with short inhalations, mid f0 (380-480 Hz), rise-fall contour;
- pain: abrupt onset, long first unit then breath-holding pauses, high f0 (520-750 Hz) falling from a peak, more
  phonation noise and jitter (hyperphonation), bright spectrum;
- discomfort: whiny and nearly continuous, flat contour with a slow tremor, f0 330-430 Hz;
- tiredness: soft, breathy, yawn-like falling contour, low f0 (280-380 Hz), long pauses, dark spectrum;
- burping: short grunts (0.15-0.4 s), low f0 (220-320 Hz), noisy voicing.

A unit is a harmonic source (jittered f0 contour, spectral tilt) mixed with aspiration noise, shaped by two vowel
formants and an attack/release envelope. Speaker (family) traits scale f0 and shift the formants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

RATE = 16_000
REASONS = ("hunger", "pain", "discomfort", "tiredness", "burping")


@dataclass(frozen=True)
class Signature:
    f0_hz: tuple[float, float]  # mean fundamental of a unit
    contour: str  # rise_fall | peak_fall | flat_tremor | falling | grunt
    unit_s: tuple[float, float]
    pause_s: tuple[float, float]
    voicing: tuple[float, float]  # harmonic share of the source, [0, 1]
    jitter: float  # relative f0 perturbation (slow, band-limited)
    tilt_db_per_octave: float
    attack_s: float
    level_db: tuple[float, float]  # unit level relative to full scale
    formants_hz: tuple[float, float]  # F1, F2 of the vowel
    inhalation: bool  # audible in-breaths between units


SIGNATURES: dict[str, Signature] = {
    "hunger": Signature((340, 520), "rise_fall", (0.6, 1.3), (0.2, 0.5), (0.78, 0.92), 0.015, -7.0, 0.06,
                        (-15, -7), (850, 2300), True),
    "pain": Signature((440, 780), "peak_fall", (1.1, 2.8), (0.45, 1.3), (0.6, 0.82), 0.04, -4.0, 0.015,
                      (-11, -4), (1050, 2800), True),
    "discomfort": Signature((310, 480), "flat_tremor", (0.8, 1.8), (0.08, 0.3), (0.72, 0.88), 0.02, -8.0, 0.12,
                            (-18, -10), (780, 2150), False),
    "tiredness": Signature((260, 420), "falling", (0.9, 2.0), (0.4, 1.1), (0.55, 0.78), 0.012, -11.0, 0.25,
                           (-24, -14), (680, 1600), False),
    "burping": Signature((210, 380), "grunt", (0.15, 0.45), (0.2, 0.7), (0.35, 0.6), 0.035, -10.0, 0.03,
                         (-21, -11), (560, 1350), False),
}  # fmt: skip
CONTOURS = ("rise_fall", "peak_fall", "flat_tremor", "falling", "grunt")
CONTOUR_SWAP = 0.25  # share of units with another reason's contour: real cries mix their sound reflexes


@dataclass(frozen=True)
class Voice:
    """A baby's own traits: f0 scale and vowel-tract scale (shifts formants)."""

    pitch_scale: float = 1.0
    formant_scale: float = 1.0


def _contour(kind: str, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Relative f0 over a unit (1.0 = the unit's mean)."""
    x = np.linspace(0.0, 1.0, n)
    if kind == "rise_fall":
        peak = rng.uniform(0.35, 0.6)
        shape = 0.88 + 0.2 * np.exp(-(((x - peak) / 0.28) ** 2))
    elif kind == "peak_fall":
        shape = 1.2 - 0.35 * x**0.7 + 0.05 * np.exp(-((x / 0.05) ** 2))
    elif kind == "flat_tremor":
        rate = rng.uniform(4.0, 7.0)
        shape = 1.0 + 0.03 * np.sin(2 * np.pi * rate * x * n / RATE)
    elif kind == "falling":
        shape = 1.1 - 0.25 * x
    elif kind == "grunt":
        shape = 1.0 - 0.1 * x
    else:
        raise ValueError(f"unknown contour {kind!r}")
    return np.asarray(shape, np.float64)


def _slow_noise(n: int, cutoff_hz: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Unit-variance noise low-passed at ``cutoff_hz`` (one-pole), for jitter and shimmer."""
    a = np.exp(-2 * np.pi * cutoff_hz / RATE)
    out = lfilter([1 - a], [1, -a], rng.standard_normal(n))
    return np.asarray(out / (np.std(out) + 1e-9))


def _resonator(signal: NDArray[np.float64], freq_hz: float, bandwidth_hz: float) -> NDArray[np.float64]:
    """Two-pole resonance (a formant), unit gain at its centre."""
    r = np.exp(-np.pi * bandwidth_hz / RATE)
    theta = 2 * np.pi * freq_hz / RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    gain = (1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)
    return np.asarray(lfilter([gain], a, signal))


def unit(signature: Signature, voice: Voice, duration_s: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """One cry unit (one exhalation)."""
    n = max(int(duration_s * RATE), 64)
    mean_f0 = rng.uniform(*signature.f0_hz) * voice.pitch_scale
    contour = signature.contour if rng.random() > CONTOUR_SWAP else CONTOURS[int(rng.integers(len(CONTOURS)))]
    f0 = mean_f0 * _contour(contour, n, rng) * (1 + signature.jitter * _slow_noise(n, 30.0, rng))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = np.zeros(n)
    for k in range(1, 40):
        if k * mean_f0 * 1.25 > 7600:
            break
        voiced += 10 ** (signature.tilt_db_per_octave * np.log2(k) / 20) * np.sin(k * phase + rng.uniform(0, 6.3))
    voiced /= np.max(np.abs(voiced)) + 1e-9
    noise = rng.standard_normal(n)
    noise /= np.max(np.abs(noise)) + 1e-9
    share = rng.uniform(*signature.voicing)
    source = share * voiced + (1 - share) * noise
    f1, f2 = (f * voice.formant_scale * rng.uniform(0.93, 1.07) for f in signature.formants_hz)
    shaped = source + 2.5 * _resonator(source, f1, 160) + 1.8 * _resonator(source, f2, 260)
    attack = max(int(signature.attack_s * RATE), 1)
    release = min(int(0.08 * RATE), n // 3)
    envelope = np.ones(n)
    envelope[:attack] = np.linspace(0, 1, min(attack, n))[: min(attack, n)] ** 1.5
    if release:
        envelope[-release:] *= np.linspace(1, 0, release)
    envelope *= 1 + 0.08 * _slow_noise(n, 8.0, rng)  # shimmer
    out = shaped * envelope
    level = 10 ** (rng.uniform(*signature.level_db) / 20)
    return np.asarray(out / (np.max(np.abs(out)) + 1e-9) * level, np.float32)


def inhalation(duration_s: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A short noisy in-breath, band-passed around 1-3 kHz, quiet."""
    n = max(int(duration_s * RATE), 32)
    breath = _resonator(rng.standard_normal(n), rng.uniform(1200, 2600), 900)
    breath *= np.hanning(n)
    return np.asarray(breath / (np.max(np.abs(breath)) + 1e-9) * 10 ** (-30 / 20), np.float32)


def vocalisation(reason: str, voice: Voice, duration_s: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A cry bout of about ``duration_s`` seconds for ``reason``: units and pauses (with in-breaths)."""
    signature = SIGNATURES[reason]
    total = int(duration_s * RATE)
    out = np.zeros(total, np.float32)
    at = int(rng.uniform(0.0, 0.15) * RATE)
    while at < total - int(0.1 * RATE):
        piece = unit(signature, voice, rng.uniform(*signature.unit_s), rng)
        end = min(total, at + len(piece))
        out[at:end] += piece[: end - at]
        pause = int(rng.uniform(*signature.pause_s) * RATE)
        if signature.inhalation and pause > 0.15 * RATE:
            breath = inhalation(min(0.2, pause / RATE * 0.6), rng)
            start = end + (pause - len(breath)) // 2
            stop = min(total, start + len(breath))
            if stop > start:
                out[start:stop] += breath[: stop - start]
        at = end + pause
    return out
