"""Monitoring's inference seam: the three Triton models' tensor contracts, spelled once for gateway and workers.

``object_detector``  IMAGES uint8 [N, S, S, 3] (S = its ``input_px`` parameter) -> BOXES f32 [N, 100, 4] (normalised
                     corners), SCORES f32 [N, 100], CLASSES i32 [N, 100], COUNT i32 [N, 1]; ``classes`` names them.
``audio_events``     WAVEFORM f32 [N, 15712] (16 kHz) -> SCORES f32 [N, 521], EMBEDDINGS f32 [N, 1024]; ``classes``.
``av_fusion``        VISUAL f32 [N, 5, 17], AUDIO f32 [N, 4, 1027] (``evidence.tokens``) -> SCORE f32 [N, 1].
A bigger model swaps in on a GPU pool by keeping these names, dtypes and shapes (see each ``config.pbtxt``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tessera.monitoring.analysis import boxes_from_rows
from tessera.monitoring.evidence import Box
from tessera.monitoring.vision import fit
from tessera.runtime.inference import TritonClient

DETECTOR = "object_detector"
SOUNDS = "audio_events"
FUSION = "av_fusion"
MODELS = (DETECTOR, SOUNDS, FUSION)
_DEFAULT_INPUT_PX = 320


class MonitoringModels:
    """The three models behind ``analysis.Models``; labels and input size come from the served configs (``load``)."""

    def __init__(self, triton: TritonClient) -> None:
        self.triton = triton
        self.object_labels: list[str] = []
        self.sound_labels: list[str] = []
        self.input_px = _DEFAULT_INPUT_PX

    @property
    def loaded(self) -> bool:
        return bool(self.object_labels and self.sound_labels)

    async def load(self) -> None:
        """Read the labels and the detector's input size from the served model configs."""
        detector = await self.triton.contract(DETECTOR)
        sounds = await self.triton.contract(SOUNDS)
        self.object_labels = detector.parameters.get("classes", "").split("|")
        self.sound_labels = sounds.parameters.get("classes", "").split("|")
        self.input_px = int(detector.parameters.get("input_px", str(_DEFAULT_INPUT_PX)))

    async def ensure_loaded(self) -> None:
        if not self.loaded:
            await self.load()

    async def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[tuple[Box, ...]]:
        if not images:
            return []
        batch = np.stack([fit(image, self.input_px) for image in images])
        out = await self.triton.infer(DETECTOR, {"IMAGES": batch})
        return [
            boxes_from_rows(
                out["BOXES"][i], out["SCORES"][i], out["CLASSES"][i], int(out["COUNT"][i][0]), self.object_labels
            )
            for i in range(len(images))
        ]

    async def sounds(self, windows: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Per window: the 521 class scores and the 1024-d embedding."""
        out = await self.triton.infer(SOUNDS, {"WAVEFORM": windows.astype(np.float32)})
        return out["SCORES"], out["EMBEDDINGS"]

    async def fuse(self, visual: NDArray[np.float32], audio: NDArray[np.float32]) -> NDArray[np.float32]:
        """One anomaly score in [0, 1] per context."""
        out = await self.triton.infer(FUSION, {"VISUAL": visual, "AUDIO": audio})
        scores: NDArray[np.float32] = out["SCORE"].reshape(-1).astype(np.float32)
        return scores
