"""Triton python-backend model: the av_fusion anomaly score (bidirectional cross-modal attention, torch, CPU).

The state_dict and its provenance (av_fusion.json: architecture, seed, data, metrics) are written by
`python -m tessera.monitoring.training` and placed beside this file by `tessera models build` (sha256-checked).
Loaded with torch.load(weights_only=True): no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tessera.monitoring import fusion_net
from tessera.runtime.triton_python import TritonModel, input_array, model_threads

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "av_fusion"

    def initialize(self, args: dict) -> None:
        torch.set_num_threads(model_threads(1))
        provenance = json.loads((HERE / "av_fusion.json").read_text())
        self.net = fusion_net.load(str(HERE / "av_fusion.pt"), provenance["config"])

    def infer(self, request: object) -> dict[str, np.ndarray]:
        visual = input_array(request, "VISUAL")
        audio = input_array(request, "AUDIO")
        if len(visual) != len(audio):
            raise ValueError("VISUAL and AUDIO must have the same batch size")
        if not (np.all(np.isfinite(visual)) and np.all(np.isfinite(audio))):
            raise ValueError("tokens must be finite")
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(visual.copy()), torch.from_numpy(audio.copy()))
        return {"SCORE": torch.sigmoid(logits).numpy().astype(np.float32).reshape(-1, 1)}
