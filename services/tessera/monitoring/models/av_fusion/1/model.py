"""Triton python-backend model: the av_fusion anomaly score (bidirectional cross-modal attention, torch, CPU).

The state_dict and its provenance (av_fusion.json: architecture, seed, data, metrics) are written by
`python -m tessera.monitoring.training` and placed beside this file by `tessera models build` (sha256-checked).
Loaded with torch.load(weights_only=True): no pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from tessera.monitoring import fusion_net

HERE = Path(__file__).parent


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        torch.set_num_threads(int(os.environ.get("TESSERA_MODEL_THREADS", "1")))
        provenance = json.loads((HERE / "av_fusion.json").read_text())
        self.net = fusion_net.load(str(HERE / "av_fusion.pt"), provenance["config"])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                visual = pb_utils.get_input_tensor_by_name(request, "VISUAL").as_numpy()
                audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
                if len(visual) != len(audio):
                    raise ValueError("VISUAL and AUDIO must have the same batch size")
                if not (np.all(np.isfinite(visual)) and np.all(np.isfinite(audio))):
                    raise ValueError("tokens must be finite")
                with torch.inference_mode():
                    logits = self.net(torch.from_numpy(visual.copy()), torch.from_numpy(audio.copy()))
                scores = torch.sigmoid(logits).numpy().astype(np.float32).reshape(-1, 1)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORE", scores)]))
            except (ValueError, TypeError) as exc:
                error = pb_utils.TritonError(f"av_fusion: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:
                error = pb_utils.TritonError(f"av_fusion: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses
