"""Triton python-backend ASR: faster-whisper tiny.en on CPU (int8), weights placed beside this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, input_text, text_output

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "asr"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        self.languages = set(params.items("languages", default="en"))
        self.beam_size = params.integer("beam_size", 1)
        self.model = WhisperModel(
            str(HERE / "whisper"), device="cpu", compute_type="int8", cpu_threads=params.integer("cpu_threads", 2)
        )

    def infer(self, request: object) -> dict[str, np.ndarray]:
        audio = input_array(request, "AUDIO").astype(np.float32).reshape(-1)
        language = input_text(request, "LANGUAGE")
        if language not in self.languages:
            raise ValueError(f"language {language!r} not served; serves {sorted(self.languages)}")
        if audio.size == 0 or audio.size > 16000 * 60:
            raise ValueError("AUDIO must hold 1 sample to 60 s at 16000 Hz")
        if not np.isfinite(audio).all():
            raise ValueError("AUDIO holds NaN or infinity")
        segments, _ = self.model.transcribe(
            np.clip(audio, -1.0, 1.0),
            language=language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return {"TEXT": text_output(" ".join(s.text.strip() for s in segments).strip())}
