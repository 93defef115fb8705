"""The triage Triton models' tensors, spelled once: the captioner and the reasoner (config.pbtxt is the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tessera.runtime.inference import TritonClient

CAPTIONER = "triage_captioner"
REASONER = "triage_reasoner"
MODELS = (CAPTIONER, REASONER)


@dataclass(frozen=True)
class Caption:
    findings_text: str
    in_distribution: float


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TriageModels:
    def __init__(self, triton: TritonClient) -> None:
        self.triton = triton
        self.info: dict[str, dict[str, Any]] = {}  # model -> its MODEL_INFO, from the latest call

    async def caption(self, frames: NDArray[np.uint8]) -> list[Caption]:
        """Frames [N, 256, 256, 3] in the normalised frame -> one caption each."""
        out = await self.triton.infer(CAPTIONER, {"IMAGE": frames})
        self.info[CAPTIONER] = json.loads(_text(out["MODEL_INFO"].reshape(-1)[0]))
        texts = out["FINDINGS"].reshape(-1)
        scores = out["IN_DISTRIBUTION"].reshape(-1)
        return [Caption(_text(t), float(s)) for t, s in zip(texts, scores, strict=True)]

    async def reason(self, findings_text: str, clinical_text: str) -> NDArray[np.float32]:
        """Findings text (+ clinical text) -> class probabilities, in the reasoner's class order."""
        inputs = {
            "FINDINGS": np.array([[findings_text.encode()]], dtype=np.object_),
            "CLINICAL": np.array([[clinical_text.encode()]], dtype=np.object_),
        }
        out = await self.triton.infer(REASONER, inputs)
        self.info[REASONER] = json.loads(_text(out["MODEL_INFO"].reshape(-1)[0]))
        return np.asarray(out["PROBS"].reshape(-1), np.float32)
