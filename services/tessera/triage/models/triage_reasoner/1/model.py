"""Triton python-backend model: the triage reasoner (findings text -> temperature-scaled class probabilities).

It reads the findings text only (tessera.triage.findings.parse, then its count features); CLINICAL is accepted for
the contract an LLM fills and is not read by this reference model. Weights (reasoner.pt) and provenance
(triage.json, with the temperature fitted on validation data) come from `python -m tessera.triage.training`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tessera.runtime.triton_python import ModelParameters, TritonModel, input_texts, model_threads
from tessera.triage import findings, nets
from tessera.triage.calibration import softmax

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "triage_reasoner"

    def initialize(self, args: dict) -> None:
        torch.set_num_threads(model_threads(1))
        provenance = json.loads((HERE / "triage.json").read_text())
        classes = ModelParameters.from_args(args).items("classes")
        if classes != provenance["classes"]:
            raise ValueError(f"config classes {classes} != trained classes {provenance['classes']}")
        self.net = nets.Reasoner()
        self.net.load_state_dict(torch.load(HERE / "reasoner.pt", map_location="cpu", weights_only=True))
        self.net.eval()
        self.temperature = float(provenance["temperature"])
        info = {
            "model": self.name,
            "version": provenance["digests"]["reasoner"][:16],
            "temperature": self.temperature,
            "refer_threshold": provenance["refer_threshold"],
        }
        self.info = json.dumps(info).encode()

    def infer(self, request: object) -> dict[str, np.ndarray]:
        texts = input_texts(request, "FINDINGS")
        input_texts(request, "CLINICAL")  # must be present and UTF-8, like FINDINGS
        rows = np.stack([findings.features(findings.parse(text)[0]) for text in texts])
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(rows)).numpy()
        probs = softmax(logits, self.temperature).astype(np.float32)
        n = len(texts)
        return {"PROBS": probs, "MODEL_INFO": np.array([self.info] * n, dtype=np.object_).reshape(n, 1)}
