"""Client audio -> what the ASR needs: mono float32 at 16 kHz, with the bounds checked before any work."""

from __future__ import annotations

from math import gcd

import numpy as np
from numpy.typing import NDArray
from scipy.signal import resample_poly

ASR_RATE = 16000
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHUNK_S = 5.0


class AudioError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def decode_chunk(data: bytes, encoding: str, sample_rate_hz: int, channels: int) -> NDArray[np.float32]:
    """PCM16/FLOAT32 little-endian, interleaved -> mono float32 at 16 kHz."""
    channels = channels or 1
    if not MIN_RATE <= sample_rate_hz <= MAX_RATE:
        raise AudioError(f"must be {MIN_RATE}-{MAX_RATE} Hz, got {sample_rate_hz}", "audio.sample_rate_hz")
    if not 1 <= channels <= 8:
        raise AudioError("must be 1-8", "audio.channels")
    width = {"pcm16": 2, "float32": 4}.get(encoding)
    if width is None:
        raise AudioError("must be AUDIO_ENCODING_PCM16 or AUDIO_ENCODING_FLOAT32", "audio.encoding")
    if not data or len(data) % (width * channels):
        raise AudioError(f"length must be a positive multiple of {width * channels} bytes", "audio.data")
    frames = len(data) // (width * channels)
    if frames > MAX_CHUNK_S * sample_rate_hz:
        raise AudioError(f"at most {MAX_CHUNK_S:g} s per chunk", "audio.data")
    if encoding == "pcm16":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            raise AudioError("holds NaN or infinity", "audio.data")
        samples = np.clip(samples, -1.0, 1.0)
    mono = samples.reshape(frames, channels).mean(axis=1) if channels > 1 else samples
    if sample_rate_hz == ASR_RATE:
        return mono.astype(np.float32)
    divisor = gcd(ASR_RATE, sample_rate_hz)
    out: NDArray[np.float32] = resample_poly(mono, ASR_RATE // divisor, sample_rate_hz // divisor).astype(np.float32)
    return out
