from __future__ import annotations

import numpy as np
import pytest

from tessera.translation.audio import AudioError, decode_chunk


def test_pcm16_at_48k_stereo_becomes_16k_mono() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    out = decode_chunk(stereo.tobytes(), "pcm16", 48000, 2)
    assert out.dtype == np.float32 and len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1  # the same tone after resampling


@pytest.mark.parametrize(
    ("data", "encoding", "rate", "channels", "field"),
    [
        (b"\x00\x00" * 100, "pcm16", 4000, 1, "audio.sample_rate_hz"),
        (b"\x00\x00" * 100, "pcm16", 96000, 1, "audio.sample_rate_hz"),
        (b"\x00\x00\x00", "pcm16", 16000, 1, "audio.data"),
        (b"", "pcm16", 16000, 1, "audio.data"),
        (b"\x00\x00" * 100, "mp3", 16000, 1, "audio.encoding"),
        (b"\x00\x00" * 16000 * 6, "pcm16", 16000, 1, "audio.data"),
        (np.array([np.nan], dtype="<f4").tobytes(), "float32", 16000, 1, "audio.data"),
        (b"\x00\x00" * 100, "pcm16", 16000, 9, "audio.channels"),
    ],
)
def test_bad_chunks_name_their_field(data: bytes, encoding: str, rate: int, channels: int, field: str) -> None:
    with pytest.raises(AudioError) as caught:
        decode_chunk(data, encoding, rate, channels)
    assert caught.value.field == field
