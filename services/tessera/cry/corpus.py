"""Simulated families and their recordings: synthetic cries in real rooms' sounds (non-IID by construction).

Each family has its own baby (f0 and vocal-tract scale), room (reverberation time, direct-to-reverberant ratio),
microphone (band limits, gain) and class mix (Dirichlet, so some families hear mostly hunger, others pain). Cries
are mixed with real background sounds from Debian packages at 0-20 dB SNR. Three disjoint pools of real sounds:

- ``train`` backgrounds: ALSA's spoken channel names, household notification sounds, ALSA's noise;
- ``eval`` backgrounds: freedesktop's spoken channel names and the same noise (new voices for held-out families);
- ``ood``: sounds the model must abstain on and never trains with: read speech from the moonshine-voice wheel,
  alarms, phones, error and warning tones, a trash-can crash, a camera shutter, a test signal.

No music ships offline, so the OOD set has none; the README says so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, fftconvolve, sosfilt

from tessera.cry.vocalisation import RATE, REASONS, Voice, vocalisation
from tessera.runtime.audio import decode_file, resample

SOUND_ROOT = Path("/usr/share/sounds")
_FD = "freedesktop/stereo"
TRAIN_BACKGROUNDS = (
    *(f"alsa/{s}.wav" for s in ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left",
                                "Rear_Right", "Side_Left", "Side_Right")),
    *(f"{_FD}/{s}.oga" for s in ("bell", "message", "complete", "device-added", "device-removed", "service-login",
                                 "service-logout", "dialog-information", "audio-volume-change", "window-question",
                                 "power-plug", "network-connectivity-established")),
)  # fmt: skip
EVAL_BACKGROUNDS = tuple(
    f"{_FD}/audio-channel-{s}.oga"
    for s in ("front-center", "front-left", "front-right", "rear-center", "rear-left", "rear-right", "side-left",
              "side-right")
)  # fmt: skip
OOD_SOUNDS = tuple(
    f"{_FD}/{s}.oga"
    for s in ("alarm-clock-elapsed", "phone-incoming-call", "phone-outgoing-calling", "phone-outgoing-busy",
              "trash-empty", "camera-shutter", "dialog-warning", "dialog-error", "suspend-error", "window-attention",
              "screen-capture", "message-new-instant", "audio-test-signal", "power-unplug",
              "network-connectivity-lost")
)  # fmt: skip
OOD_SPEECH = ("beckett.wav", "two_cities.wav", "endgame_nagg_nell.wav", "clone-test.wav")  # moonshine-voice assets
NOISE = "alsa/Noise.wav"
NOT_CRY = -1  # label of a recording with no cry in it


class SoundsMissing(FileNotFoundError):
    """The packaged sounds are not installed (apt sound-theme-freedesktop alsa-utils; pip moonshine-voice)."""


@lru_cache(maxsize=64)
def sound(name: str) -> NDArray[np.float32]:
    """A packaged sound at 16 kHz mono, peak-normalised; ``name`` relative to /usr/share/sounds or a moonshine asset."""
    if name in OOD_SPEECH:
        spec = importlib.util.find_spec("moonshine_voice")
        if spec is None or not spec.submodule_search_locations:
            raise SoundsMissing("moonshine-voice is not installed (make install)")
        path = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
    else:
        path = SOUND_ROOT / name
    if not path.exists():
        raise SoundsMissing(f"{path} missing: apt-get install sound-theme-freedesktop alsa-utils")
    samples = decode_file(path)
    return np.asarray(samples / (np.max(np.abs(samples)) + 1e-9), np.float32)


@dataclass(frozen=True)
class Family:
    family_id: int
    voice: Voice
    rt60_s: float
    direct_db: float  # direct-to-reverberant ratio
    band_hz: tuple[float, float]  # microphone pass band
    gain_db: float
    class_mix: tuple[float, ...]  # probability of each reason in this family's cries
    backgrounds: tuple[str, ...] = field(default=TRAIN_BACKGROUNDS)
    capture_rate_hz: int = RATE  # 8000: a baby monitor or a phone


def make_family(family_id: int, seed: int, backgrounds: tuple[str, ...] = TRAIN_BACKGROUNDS) -> Family:
    rng = np.random.default_rng([seed, family_id])
    mix = rng.dirichlet(np.full(len(REASONS), 0.7))
    return Family(
        family_id=family_id,
        voice=Voice(pitch_scale=float(rng.uniform(0.85, 1.18)), formant_scale=float(rng.uniform(0.9, 1.12))),
        rt60_s=float(rng.uniform(0.12, 0.6)),
        direct_db=float(rng.uniform(0.0, 12.0)),
        band_hz=(float(rng.uniform(60, 300)), float(rng.uniform(4000, 7600))),
        gain_db=float(rng.uniform(-6, 3)),
        class_mix=tuple(float(p) for p in mix),
        backgrounds=backgrounds,
        capture_rate_hz=8000 if rng.random() < 0.3 else RATE,
    )


def room_response(family: Family, rng: np.random.Generator) -> NDArray[np.float32]:
    """An impulse response: the direct path and exponentially decaying diffuse noise with the family's RT60."""
    n = int(family.rt60_s * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / family.rt60_s)  # -60 dB at rt60
    tail /= np.sqrt(np.sum(tail**2)) + 1e-9
    ir = tail * 10 ** (-family.direct_db / 20)
    ir[0] += 1.0
    return np.asarray(ir, np.float32)


def microphone(signal: NDArray[np.float32], family: Family) -> NDArray[np.float32]:
    low, high = family.band_hz
    sos = butter(2, [low, min(high, RATE / 2 - 100)], btype="bandpass", fs=RATE, output="sos")
    return np.asarray(sosfilt(sos, signal) * 10 ** (family.gain_db / 20), np.float32)


def capture(audio: NDArray[np.float32], family: Family) -> NDArray[np.float32]:
    """The whole recording at the family's capture rate, resampled to 16 kHz as the service does (at 8 kHz,
    nothing above 4 kHz survives: neither the cry nor the room)."""
    if family.capture_rate_hz == RATE:
        return audio
    return resample(resample(audio, RATE, family.capture_rate_hz), family.capture_rate_hz, RATE)[: len(audio)]


def background(names: tuple[str, ...], n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """``n`` samples of a room's sound: the noise floor plus real sounds from ``names`` at random places."""
    noise = sound(NOISE)
    start = int(rng.integers(0, max(1, len(noise) - 1)))
    bed = np.resize(np.roll(noise, -start), n) * 10 ** (rng.uniform(-30, -18) / 20)
    out = bed.astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        clip = sound(names[int(rng.integers(len(names)))])
        at = int(rng.integers(-len(clip) // 2, max(1, n - len(clip) // 2)))
        lo, hi = max(0, at), min(n, at + len(clip))
        if hi > lo:
            out[lo:hi] += clip[lo - at : hi - at] * 10 ** (rng.uniform(-12, 0) / 20)
    return out


def mix_at_snr(signal: NDArray[np.float32], noise: NDArray[np.float32], snr_db: float) -> NDArray[np.float32]:
    """``signal`` plus ``noise`` scaled so that the signal's active power is ``snr_db`` above the noise's power."""
    active = signal[np.abs(signal) > 0.02 * (np.max(np.abs(signal)) + 1e-9)]
    p_signal = float(np.mean(active**2)) if len(active) else 0.0
    p_noise = float(np.mean(noise**2)) + 1e-12
    scale = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10))) if p_signal > 0 else 1.0
    return np.asarray(signal + noise * scale, np.float32)


def _finish(audio: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    peak = float(np.max(np.abs(audio))) + 1e-9
    return np.asarray(audio / peak * 10 ** (rng.uniform(-12, -1) / 20), np.float32)


@dataclass(frozen=True)
class Recording:
    audio: NDArray[np.float32]
    label: int  # index into REASONS, or NOT_CRY
    family_id: int
    clean: NDArray[np.float32] | None = None  # the cry before room, microphone and background (for the denoiser)


def cry(family: Family, rng: np.random.Generator, duration_s: float = 3.0, reason: int | None = None) -> Recording:
    """One of ``family``'s cries (its reason drawn from the family's mix unless given), as its microphone hears it."""
    label = int(rng.choice(len(REASONS), p=family.class_mix)) if reason is None else reason
    clean = vocalisation(REASONS[label], family.voice, duration_s, rng)
    wet = fftconvolve(clean, room_response(family, rng))[: len(clean)].astype(np.float32)
    heard = microphone(wet, family)
    noisy = mix_at_snr(heard, background(family.backgrounds, len(heard), rng), float(rng.uniform(0, 20)))
    return Recording(_finish(capture(noisy, family), rng), label, family.family_id, clean)


def no_cry(family: Family, rng: np.random.Generator, duration_s: float = 3.0) -> Recording:
    """The family's room with no cry in it (the cry detector's negatives)."""
    n = int(duration_s * RATE)
    quiet = microphone(background(family.backgrounds, n, rng), family)
    return Recording(_finish(capture(quiet, family), rng), NOT_CRY, family.family_id)


def tonal_distractor(n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Made sounds that are tonal like a cry but are not one: beeps, sweeps, warbles, sequences of harmonic notes."""
    t = np.arange(n) / RATE
    kind = int(rng.integers(4))
    if kind == 0:  # beeps
        period = rng.uniform(0.2, 1.0)
        gate = (t % period) < period * rng.uniform(0.2, 0.7)
        wave = np.sin(2 * np.pi * rng.uniform(400, 3500) * t) * gate
    elif kind == 1:  # sweep
        f = np.geomspace(rng.uniform(200, 800), rng.uniform(1000, 5000), n)
        wave = np.sin(2 * np.pi * np.cumsum(f) / RATE)
    elif kind == 2:  # warble (siren-like)
        f = rng.uniform(500, 1500) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 8) * t))
        wave = np.sin(2 * np.pi * np.cumsum(f) / RATE)
    else:  # notes with harmonics (music-like)
        notes = 220 * 2 ** (rng.integers(0, 24, 16) / 12)
        f = np.repeat(notes, n // 16 + 1)[:n]
        phase = 2 * np.pi * np.cumsum(f) / RATE
        wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * np.exp(-((t * 4) % 1.0) * 3)
    return np.asarray(wave, np.float32)


def distractor(family: Family, rng: np.random.Generator, duration_s: float = 3.0) -> Recording:
    """A loud sound that is not a cry, from the training pool or made (outlier exposure for the detector and the
    energy score); never from the OOD pool."""
    n = int(duration_s * RATE)
    if rng.random() < 0.5:
        clip = sound(family.backgrounds[int(rng.integers(len(family.backgrounds)))])
        start = int(rng.integers(0, max(1, len(clip) - n)))
        fore = np.zeros(n, np.float32)
        take = clip[start : start + n]
        fore[: len(take)] = take
    else:
        fore = tonal_distractor(n, rng)
    heard = microphone(fftconvolve(fore, room_response(family, rng))[:n].astype(np.float32), family)
    noisy = mix_at_snr(heard, background(family.backgrounds, n, rng), float(rng.uniform(5, 25)))
    return Recording(_finish(capture(noisy, family), rng), NOT_CRY, family.family_id)


def unknown_sound(rng: np.random.Generator, duration_s: float = 3.0) -> Recording:
    """A sound the model never trained with (OOD): speech, alarm, phone, crash..."""
    names = OOD_SOUNDS + OOD_SPEECH
    clip = sound(names[int(rng.integers(len(names)))])
    n = int(duration_s * RATE)
    start = int(rng.integers(0, max(1, len(clip) - n)))
    piece = np.zeros(n, np.float32)
    take = clip[start : start + n]
    piece[: len(take)] = take
    floor = np.resize(sound(NOISE), n) * 10 ** (rng.uniform(-40, -28) / 20)
    return Recording(_finish(piece + floor.astype(np.float32), rng), NOT_CRY, -1)


def family_recordings(
    family: Family, n_cries: int, n_quiet: int, seed: int, duration_s: float = 3.0, n_distractors: int = 0
) -> list[Recording]:
    rng = np.random.default_rng([seed, family.family_id, 7])
    out = [cry(family, rng, duration_s) for _ in range(n_cries)]
    out += [no_cry(family, rng, duration_s) for _ in range(n_quiet)]
    out += [distractor(family, rng, duration_s) for _ in range(n_distractors)]
    return out
