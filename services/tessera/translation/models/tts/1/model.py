"""Triton python-backend TTS: Piper (neural) for English, espeak-ng voices for the other languages."""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np

from tessera.runtime.triton_python import ModelParameters, TritonModel, input_text

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "tts"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        self.languages = set(params.items("languages"))
        self.piper_languages = set(params.items("piper_languages"))
        self.piper = None
        if self.piper_languages:
            from piper import PiperVoice

            voice = HERE / "piper" / "voice.onnx"
            self.piper = PiperVoice.load(str(voice), config_path=str(voice.with_suffix(".onnx.json")))
        listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, check=True).stdout
        voices = listing.decode("utf-8", "replace")
        known = {line.split()[1].split("-")[0] for line in voices.splitlines()[1:] if len(line.split()) > 1}
        missing = sorted(lang for lang in self.languages - self.piper_languages if lang not in known)
        if missing:
            raise RuntimeError(f"espeak-ng has no voice for {missing}")
        for language in sorted(self.languages):  # first-call costs (voice loading) are paid at load, not by a user
            if language in self.piper_languages and self.piper is not None:
                self._piper("Ready.")
            else:
                self._espeak("Ready.", language)

    def _espeak(self, text: str, language: str) -> tuple[np.ndarray, int]:
        # Text on stdin: no argument parsing surprises (a sentence starting with "-").
        wav = subprocess.run(
            ["espeak-ng", "-v", language, "--stdout", "-b", "1"],
            input=text.encode("utf-8"),
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        with wave.open(io.BytesIO(wav)) as reader:
            rate = reader.getframerate()
            frames = reader.readframes(reader.getnframes())
        return np.frombuffer(frames, dtype=np.int16).copy(), rate

    def _piper(self, text: str) -> tuple[np.ndarray, int]:
        chunks = list(self.piper.synthesize(text))
        rate = chunks[0].sample_rate if chunks else self.piper.config.sample_rate
        audio = np.concatenate([c.audio_int16_array for c in chunks]) if chunks else np.zeros(0, np.int16)
        return audio.astype(np.int16), rate

    def infer(self, request: object) -> dict[str, np.ndarray]:
        text, language = input_text(request, "TEXT").strip(), input_text(request, "LANGUAGE")
        if language not in self.languages:
            raise ValueError(f"language {language!r} not served; serves {sorted(self.languages)}")
        if not text or len(text) > 5000:
            raise ValueError("TEXT must hold 1 to 5000 characters")
        if language in self.piper_languages and self.piper is not None:
            audio, rate = self._piper(text)
        else:
            audio, rate = self._espeak(text, language)
        return {"AUDIO": audio, "SAMPLE_RATE": np.array([rate], dtype=np.int32)}
