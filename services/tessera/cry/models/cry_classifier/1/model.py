"""Triton python-backend model: the cry classifier (one 16 kHz segment -> cry probability, reasons, energy).

Weights (cry.pt) and provenance (cry.json: temperature, energy threshold, version, figures) come from
`python -m tessera.cry.training`, or from a federation round that published this version.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tessera.cry.classifier import SegmentClassifier
from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, model_threads, text_output

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "cry_classifier"

    def initialize(self, args: dict) -> None:
        torch.set_num_threads(model_threads(1))
        self.classifier = SegmentClassifier(HERE)
        reasons = ModelParameters.from_args(args).items("reasons")
        if reasons != self.classifier.reasons:
            raise ValueError(f"config reasons {reasons} != trained reasons {self.classifier.reasons}")
        self.info = json.dumps(self.classifier.info())

    def infer(self, request: object) -> dict[str, np.ndarray]:
        audio = input_array(request, "AUDIO").astype(np.float32).reshape(-1)
        scored = self.classifier(audio)
        return {
            "CRY_PROB": np.array([scored.cry_probability], np.float32),
            "PROBS": scored.probabilities.astype(np.float32),
            "ENERGY": np.array([scored.energy], np.float32),
            "MODEL_INFO": text_output(self.info).reshape(1),
        }
