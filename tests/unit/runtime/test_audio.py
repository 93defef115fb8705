from __future__ import annotations

import numpy as np
import pytest

from tessera.runtime import audio


def test_decode_pcm16_float32_and_downmix() -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    assert np.allclose(audio.decode_pcm(pcm, "pcm16", 16000, 1), [0, 0.5, -1, 32767 / 32768])
    stereo = np.array([0.5, -0.5, 1.0, 0.0], dtype="<f4").tobytes()
    assert np.allclose(audio.decode_pcm(stereo, "float32", 48000, 2), [0.0, 0.5])


@pytest.mark.parametrize(
    ("data", "encoding", "rate", "channels", "field"),
    [
        (b"\0\0", "pcm16", 4000, 1, "sample_rate_hz"),
        (b"\0\0", "pcm16", 16000, 9, "channels"),
        (b"\0\0\0", "pcm16", 16000, 1, "data"),
        (b"\0\0\0\0", "pcm16", 16000, 2 + 1, "data"),
        (b"\0\0", "mp3", 16000, 1, "encoding"),
        (np.array([np.nan], dtype="<f4").tobytes(), "float32", 16000, 1, "data"),
    ],
)
def test_decode_errors_name_the_field(data: bytes, encoding: str, rate: int, channels: int, field: str) -> None:
    with pytest.raises(audio.AudioError) as error:
        audio.decode_pcm(data, encoding, rate, channels)
    assert error.value.field == field


def test_windows_every_hop_whatever_the_chunking() -> None:
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(16000 * 3).astype(np.float32)
    whole = audio.AudioWindower(16000, 200).push(signal, 0)
    assert [w.end_ms for w in whole] == list(range(982, 3001, 200))
    assert all(w.end_ms - w.start_ms == 982 and len(w.samples) == audio.WINDOW_SAMPLES for w in whole)
    chunked = audio.AudioWindower(16000, 200)
    pieces = []
    for start in range(0, len(signal), 1600):  # 100 ms chunks
        pieces += chunked.push(signal[start : start + 1600], start // 16)
    assert [w.end_ms for w in pieces] == [w.end_ms for w in whole]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(whole, pieces, strict=True))
    assert chunked.accepted_ms == pytest.approx(3000)


def test_a_gap_restarts_the_windows_at_the_new_time() -> None:
    windower = audio.AudioWindower(8000, 250)
    first = windower.push(np.zeros(8000, np.float32), 0)
    assert [w.end_ms for w in first] == [982]
    later = windower.push(np.zeros(8000, np.float32), 5000)  # a camera that reconnected
    assert [w.end_ms for w in later] == [5982]
    assert len(later[0].samples) == round(audio.WINDOW_SAMPLES * 8000 / 16000)


def test_log_mel_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(1)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(audio.WINDOW_SAMPLES) / 16000)).astype(np.float32)
    x += 0.05 * rng.standard_normal(len(x)).astype(np.float32)
    spectrum = np.abs(librosa.stft(x, n_fft=512, hop_length=160, win_length=400, window="hann", center=False))
    mel = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125, fmax=7500, htk=True, norm=None)
    expected = np.log(mel @ spectrum + 1e-6).T
    ours = audio.patch(x)
    assert ours.shape == (96, 64) and expected.shape == (96, 64)
    assert np.allclose(ours, expected, atol=1e-3)


def test_resample_loudness_and_centroid() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    down = audio.resample(tone, 48000)
    assert len(down) == 16000
    assert audio.loudness_dbfs(down) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert audio.spectral_centroid(down) == pytest.approx(1000, rel=0.02)
    assert audio.loudness_dbfs(np.zeros(100, np.float32)) == pytest.approx(-100)
    assert audio.spectral_centroid(np.zeros(100, np.float32)) == 0.0
