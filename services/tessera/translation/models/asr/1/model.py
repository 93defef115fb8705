"""Triton python-backend ASR: faster-whisper tiny.en on CPU (int8), weights placed beside this file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from faster_whisper import WhisperModel

HERE = Path(__file__).parent


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.languages = {x.strip() for x in params.get("languages", "en").split(",") if x.strip()}
        self.beam_size = int(params.get("beam_size", "1"))
        self.model = WhisperModel(
            str(HERE / "whisper"), device="cpu", compute_type="int8", cpu_threads=int(params.get("cpu_threads", "2"))
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy().astype(np.float32).reshape(-1)
                language = pb_utils.get_input_tensor_by_name(request, "LANGUAGE").as_numpy().reshape(-1)[0]
                language = language.decode() if isinstance(language, bytes) else str(language)
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
                text = " ".join(s.text.strip() for s in segments).strip()
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor("TEXT", np.array([text.encode()], dtype=np.object_))])
                )
            except ValueError as exc:
                error = pb_utils.TritonError(f"asr: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:  # keep serving other requests
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"asr: {exc}")))
        return responses
