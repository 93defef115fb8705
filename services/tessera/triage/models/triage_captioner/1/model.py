"""Triton python-backend model: the triage captioner (lesion heatmaps -> findings text, in-distribution score).

Weights (captioner.pt) and their provenance (triage.json) are written by `python -m tessera.triage.training` and
placed beside this file by `tessera models build` (sha256-checked). Loaded with torch.load(weights_only=True).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tessera.runtime.triton_python import TritonModel, input_array, model_threads
from tessera.triage import findings, nets
from tessera.triage.fundus import SIZE

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "triage_captioner"

    def initialize(self, args: dict) -> None:
        torch.set_num_threads(model_threads(1))
        provenance = json.loads((HERE / "triage.json").read_text())
        self.net = nets.Captioner()
        self.net.load_state_dict(torch.load(HERE / "captioner.pt", map_location="cpu", weights_only=True))
        # A KIND_GPU instance uses its card when this torch has CUDA; the CPU build runs it on CPU.
        on_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args.get('model_instance_device_id', '0')}" if on_gpu else "cpu")
        self.net.to(self.device).eval()
        info = {
            "model": self.name,
            "version": provenance["digests"]["captioner"][:16],
            "ood_threshold": provenance["ood_threshold"],
        }
        self.info = json.dumps(info).encode()

    def infer(self, request: object) -> dict[str, np.ndarray]:
        images = input_array(request, "IMAGE")
        if images.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"IMAGE must be [N, {SIZE}, {SIZE}, 3], got {list(images.shape)}")
        with torch.inference_mode():
            logits, id_logit = self.net(nets.to_tensor(torch.from_numpy(images.copy()).to(self.device)))
            heat = torch.sigmoid(logits).cpu().numpy()
            in_dist = torch.sigmoid(id_logit).cpu().numpy().astype(np.float32)
        texts = [findings.to_text(findings.from_peaks(findings.peaks(h))).encode() for h in heat]
        n = len(images)
        return {
            "FINDINGS": np.array(texts, dtype=np.object_).reshape(n, 1),
            "IN_DISTRIBUTION": in_dist.reshape(n, 1),
            "MODEL_INFO": np.array([self.info] * n, dtype=np.object_).reshape(n, 1),
        }
