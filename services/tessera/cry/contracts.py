"""The cry Triton model's tensors, spelled once (``models/cry_classifier/config.pbtxt`` is the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tessera.runtime.inference import TritonClient

CLASSIFIER = "cry_classifier"
MODELS = (CLASSIFIER,)


@dataclass(frozen=True)
class SegmentScores:
    cry_probability: float
    probabilities: NDArray[np.float32]  # [5], temperature-scaled, in the model's reason order
    energy: float


class CryModels:
    def __init__(self, triton: TritonClient) -> None:
        self.triton = triton
        self.info: dict[str, Any] = {}  # the classifier's MODEL_INFO, from the latest call

    async def classify(self, audio_16k: NDArray[np.float32]) -> SegmentScores:
        out = await self.triton.infer(CLASSIFIER, {"AUDIO": audio_16k.astype(np.float32)})
        raw = out["MODEL_INFO"].reshape(-1)[0]
        self.info = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        return SegmentScores(
            float(out["CRY_PROB"].reshape(-1)[0]),
            np.asarray(out["PROBS"].reshape(-1), np.float32),
            float(out["ENERGY"].reshape(-1)[0]),
        )
