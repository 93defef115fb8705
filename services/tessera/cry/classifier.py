"""One segment of audio -> cry probability, calibrated reason probabilities and energy, from trained files.

What the Triton model (``models/cry_classifier``) runs, and what the benchmark runs in-process: the weights
(``cry.pt``) and their provenance (``cry.json``: architecture, temperature, energy threshold, version, figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tessera.cry import calibration, nets
from tessera.runtime.audio import MODEL_RATE, log_mel

MIN_SECONDS, MAX_SECONDS = 0.25, 30.0


@dataclass(frozen=True)
class Scored:
    cry_probability: float
    probabilities: NDArray[np.float64]  # [5], temperature-scaled
    energy: float
    logits: NDArray[np.float32]  # [5], before the temperature


class SegmentClassifier:
    def __init__(self, folder: Path, weights: str = "cry.pt", provenance: str = "cry.json") -> None:
        self.provenance: dict[str, Any] = json.loads((folder / provenance).read_text())
        arch = nets.Architecture(**self.provenance["architecture"])
        self.net = nets.CryNet(arch)
        self.net.load_state_dict(torch.load(folder / weights, map_location="cpu", weights_only=True))
        self.net.eval()
        self.temperature = float(self.provenance["temperature"])
        self.energy_threshold = float(self.provenance["energy_threshold"])
        self.reasons: list[str] = list(self.provenance["reasons"])

    def info(self) -> dict[str, Any]:
        keys = ("model_version", "round", "published_unix_ms", "temperature", "energy_threshold", "figures", "digest")
        extra = {k: self.provenance[k] for k in ("clients_aggregated", "clients_dropped") if k in self.provenance}
        return {k: self.provenance.get(k) for k in keys} | {"reasons": self.reasons} | extra

    def __call__(self, audio: NDArray[np.float32]) -> Scored:
        seconds = len(audio) / MODEL_RATE
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"AUDIO must be {MIN_SECONDS}-{MAX_SECONDS} s of 16 kHz samples, got {seconds:.2f} s")
        if not np.all(np.isfinite(audio)):
            raise ValueError("AUDIO must be finite")
        mel = log_mel(audio.astype(np.float32))[None]
        with torch.inference_mode():
            cry_logit, logits = self.net(torch.from_numpy(mel), torch.tensor([mel.shape[1]]))
        row = logits.numpy()
        return Scored(
            float(torch.sigmoid(cry_logit)[0]),
            calibration.probabilities(row, self.temperature)[0],
            float(calibration.energy(row, self.temperature)[0]),
            row[0],
        )
