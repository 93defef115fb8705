"""Triton python-backend MT over warm Apertium pipelines (see tessera.translation.apertium)."""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from tessera.translation.apertium import PipelinePool


def _text(request: object, name: str) -> str:
    value = pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        pairs = [tuple(p.strip().split("-", 1)) for p in params.get("pairs", "").split(",") if p.strip()]
        self.pool = PipelinePool(pairs)  # fails to load if a declared pair is not installed
        self.pool.warm()

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                text, source, target = _text(request, "TEXT"), _text(request, "SOURCE"), _text(request, "TARGET")
                if (source, target) not in self.pool.modes:
                    raise ValueError(f"pair {source}-{target} not served; serves {sorted(self.pool.modes)}")
                if len(text) > 5000:
                    raise ValueError("TEXT longer than 5000 characters")
                out = self.pool.translate(source, target, text)
                responses.append(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("TEXT_OUT", np.array([out.encode()], dtype=np.object_))]
                    )
                )
            except (ValueError, UnicodeDecodeError) as exc:
                error = pb_utils.TritonError(f"mt: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"mt: {exc}")))
        return responses

    def finalize(self) -> None:
        self.pool.close()
