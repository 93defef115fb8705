"""Triton python-backend MT over warm Apertium pipelines (see tessera.translation.apertium)."""

from __future__ import annotations

import numpy as np

from tessera.runtime.triton_python import ModelParameters, TritonModel, input_text, text_output
from tessera.translation.apertium import PipelinePool


class TritonPythonModel(TritonModel):
    name = "mt"

    def initialize(self, args: dict) -> None:
        pairs = [tuple(p.split("-", 1)) for p in ModelParameters.from_args(args).items("pairs")]
        self.pool = PipelinePool(pairs)  # fails to load if a declared pair is not installed
        self.pool.warm()

    def infer(self, request: object) -> dict[str, np.ndarray]:
        text, source, target = input_text(request, "TEXT"), input_text(request, "SOURCE"), input_text(request, "TARGET")
        if (source, target) not in self.pool.modes:
            raise ValueError(f"pair {source}-{target} not served; serves {sorted(self.pool.modes)}")
        if len(text) > 5000:
            raise ValueError("TEXT longer than 5000 characters")
        return {"TEXT_OUT": text_output(self.pool.translate(source, target, text))}

    def finalize(self) -> None:
        self.pool.close()
