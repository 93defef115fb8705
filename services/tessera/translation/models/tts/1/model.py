"""Triton python-backend TTS: Piper (neural) for English, espeak-ng voices for the other languages."""

from __future__ import annotations

import io
import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).parent


def _text(request: object, name: str) -> str:
    value = pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.languages = {x.strip() for x in params.get("languages", "").split(",") if x.strip()}
        self.piper_languages = {x.strip() for x in params.get("piper_languages", "").split(",") if x.strip()}
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

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                text, language = _text(request, "TEXT").strip(), _text(request, "LANGUAGE")
                if language not in self.languages:
                    raise ValueError(f"language {language!r} not served; serves {sorted(self.languages)}")
                if not text or len(text) > 5000:
                    raise ValueError("TEXT must hold 1 to 5000 characters")
                if language in self.piper_languages and self.piper is not None:
                    audio, rate = self._piper(text)
                else:
                    audio, rate = self._espeak(text, language)
                responses.append(
                    pb_utils.InferenceResponse(
                        [
                            pb_utils.Tensor("AUDIO", audio),
                            pb_utils.Tensor("SAMPLE_RATE", np.array([rate], dtype=np.int32)),
                        ]
                    )
                )
            except ValueError as exc:
                error = pb_utils.TritonError(f"tts: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"tts: {exc}")))
        return responses
