"""Audio for the audio models (monitoring's events, cry): PCM and file decoding, analysis windows, resampling and
the YAMNet log-mel recipe.

The recipe (YAMNet's, as ENVIRONMENT.md states it): 16 kHz mono, STFT magnitude with a 400-sample Hann window
(25 ms) centred in a 512-point frame, hop 160 (10 ms), no centring of the signal; 64 HTK mel bands over 125-7500 Hz
without area normalisation; log(mel + 1e-6); 96-frame patches. One 0.982 s window (15712 samples) gives exactly one
patch.
Pure numpy/scipy; the unit tests check it against librosa.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.signal import resample_poly

MODEL_RATE = 16_000
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 64
F_MIN = 125.0
F_MAX = 7500.0
PATCH_FRAMES = 96
WINDOW_SAMPLES = N_FFT + (PATCH_FRAMES - 1) * HOP_LENGTH  # 15712: one patch
WINDOW_MS = WINDOW_SAMPLES * 1000 // MODEL_RATE  # 982
DEFAULT_HOP_MS = 200  # av_fusion is trained on this hop: its audio tokens are consecutive windows
MIN_RATE, MAX_RATE, MAX_CHANNELS = 8000, 48000, 8


class AudioError(ValueError):
    """Audio that cannot be decoded as stated; ``field`` names the chunk field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def decode_pcm(data: bytes, encoding: str, sample_rate_hz: int, channels: int) -> NDArray[np.float32]:
    """PCM16 or FLOAT32 little-endian, interleaved channels -> mono float32 in [-1, 1]."""
    channels = channels or 1
    if not MIN_RATE <= sample_rate_hz <= MAX_RATE:
        raise AudioError(f"must be {MIN_RATE}-{MAX_RATE} Hz", "sample_rate_hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"must be 1-{MAX_CHANNELS}", "channels")
    dtype: np.dtype[Any]
    if encoding == "pcm16":
        width, dtype = 2, np.dtype("<i2")
    elif encoding == "float32":
        width, dtype = 4, np.dtype("<f4")
    else:
        raise AudioError("must be AUDIO_ENCODING_PCM16 or AUDIO_ENCODING_FLOAT32", "encoding")
    if len(data) % (width * channels):
        raise AudioError(f"length {len(data)} is not a whole number of {channels}-channel samples", "data")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if encoding == "pcm16":
        samples /= 32768.0
    elif not np.all(np.isfinite(samples)):
        raise AudioError("float samples must be finite", "data")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples


class AudioTooLong(AudioError):
    """More audio than the caller allows."""


def decode_file(source: Path | bytes, max_s: float | None = None, rate: int = MODEL_RATE) -> NDArray[np.float32]:
    """Any audio file PyAV reads (WAV, FLAC, OGG, MP3...), as a path or its bytes -> mono float32 at ``rate``.

    Unreadable data is an ``AudioError`` (field "data"), more than ``max_s`` seconds an ``AudioTooLong``: decoding
    stops there, so a huge file costs no more than the limit."""
    import av  # PyAV: only file decoding needs it

    limit = None if max_s is None else int(max_s * rate)
    chunks: list[NDArray[np.float32]] = []
    total = 0
    try:
        with av.open(str(source) if isinstance(source, Path) else io.BytesIO(source), mode="r") as container:
            if not container.streams.audio:
                raise AudioError("holds no audio stream", "data")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32)
                    chunks.append(chunk)
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise AudioTooLong(f"is longer than {max_s:g} s", "data")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        if isinstance(exc, AudioError):
            raise
        raise AudioError(f"is not a readable audio file ({type(exc).__name__})", "data") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not np.all(np.isfinite(samples)):
        raise AudioError("decodes to samples that are not finite", "data")
    return samples


def to_pcm16(samples: NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> NDArray[np.float32]:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def resample(samples: NDArray[np.float32], rate: int, target: int = MODEL_RATE) -> NDArray[np.float32]:
    if rate == target:
        return samples.astype(np.float32, copy=False)
    g = math.gcd(rate, target)
    out: NDArray[np.float32] = resample_poly(samples, target // g, rate // g).astype(np.float32)
    return out


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int
    samples: NDArray[np.float32]  # at the windower's rate
    rate: int


@dataclass
class AudioWindower:
    """Cuts one room's audio into 0.982 s analysis windows every ``hop_ms`` of stream time.

    Chunks carry their start time; a gap or overlap of more than ``max_jitter_ms`` restarts the windows there
    (a camera that reconnected), smaller ones are treated as contiguous.
    """

    rate: int
    hop_ms: int = DEFAULT_HOP_MS
    max_jitter_ms: int = 200
    _buffer: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    _buffer_start_ms: float = 0.0  # stream time of _buffer[0]
    _next_end_ms: float = -1.0
    accepted_ms: float = 0.0

    @property
    def window_samples(self) -> int:
        return round(WINDOW_SAMPLES * self.rate / MODEL_RATE)

    def push(self, samples: NDArray[np.float32], start_ms: int) -> list[Window]:
        expected = self._buffer_start_ms + len(self._buffer) * 1000.0 / self.rate
        if self._next_end_ms < 0 or abs(start_ms - expected) > self.max_jitter_ms:
            self._buffer = np.zeros(0, np.float32)
            self._buffer_start_ms = float(start_ms)
            self._next_end_ms = start_ms + WINDOW_MS
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32)])
        self.accepted_ms += len(samples) * 1000.0 / self.rate
        out: list[Window] = []
        per_ms = self.rate / 1000.0
        while True:
            end_index = round((self._next_end_ms - self._buffer_start_ms) * per_ms)
            if end_index > len(self._buffer):
                break
            start_index = end_index - self.window_samples
            if start_index >= 0:
                out.append(
                    Window(
                        round(self._next_end_ms) - WINDOW_MS,
                        round(self._next_end_ms),
                        self._buffer[start_index:end_index].copy(),
                        self.rate,
                    )
                )
            self._next_end_ms += self.hop_ms
        # Keep only what the next window needs.
        keep_from = max(0, round((self._next_end_ms - self._buffer_start_ms) * per_ms) - self.window_samples)
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_start_ms += keep_from / per_ms
        return out


def clip_windows(samples: NDArray[np.float32], hop_ms: int = DEFAULT_HOP_MS) -> list[Window]:
    """A whole 16 kHz clip cut like a live stream would be (same windows, same times)."""
    windower = AudioWindower(MODEL_RATE, hop_ms)
    return windower.push(samples, 0)


@lru_cache(maxsize=4)
def mel_filterbank(
    rate: int = MODEL_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX
) -> NDArray[np.float64]:
    """[n_mels, n_fft // 2 + 1] triangular HTK-mel filters, peak 1, no area normalisation."""

    def hz_to_mel(f: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = 2595.0 * np.log10(1.0 + f / 700.0)
        return out

    def mel_to_hz(m: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
        return out

    fft_freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    fdiff = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights: NDArray[np.float64] = np.maximum(0.0, np.minimum(lower, upper))
    return weights


@lru_cache(maxsize=1)
def _hann() -> NDArray[np.float64]:
    # Periodic Hann (as librosa/scipy get_window), zero-padded to the FFT size, centred.
    n = np.arange(WIN_LENGTH)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
    padded = np.zeros(N_FFT)
    left = (N_FFT - WIN_LENGTH) // 2
    padded[left : left + WIN_LENGTH] = window
    return padded


def log_mel(samples: NDArray[np.float32]) -> NDArray[np.float32]:
    """[frames, 64] log-mel of 16 kHz samples (frames = 1 + (len - 512) // 160, no centring)."""
    if len(samples) < N_FFT:
        samples = np.pad(samples, (0, N_FFT - len(samples)))
    frames = 1 + (len(samples) - N_FFT) // HOP_LENGTH
    index = np.arange(N_FFT)[None, :] + HOP_LENGTH * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)[index] * _hann(), axis=1))
    mel = spectrum @ mel_filterbank().T
    out: NDArray[np.float32] = np.log(mel + 1e-6).astype(np.float32)
    return out


def patch(samples_16k: NDArray[np.float32]) -> NDArray[np.float32]:
    """One [96, 64] patch from a 0.982 s window (shorter input is zero-padded, longer is cut)."""
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    n = min(len(samples_16k), WINDOW_SAMPLES)
    window[:n] = samples_16k[:n]
    return log_mel(window)[:PATCH_FRAMES]


def loudness_dbfs(samples: NDArray[np.float32]) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20.0 * math.log10(max(rms, 1e-5))


def spectral_centroid(samples: NDArray[np.float32], rate: int = MODEL_RATE) -> float:
    if len(samples) == 0:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    total = float(spectrum.sum())
    if total <= 1e-9:
        return 0.0
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    return float((freqs * spectrum).sum() / total)
