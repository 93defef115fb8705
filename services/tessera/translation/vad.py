"""Silero VAD (the ONNX model faster-whisper ships) as a segmenter detector, cached per 32 ms window.

The segmenter re-examines its buffer every few hundred milliseconds; speech probabilities are computed once per
window on the stream's absolute window grid and reused, so a long utterance costs one pass over its audio.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

WINDOW = 512  # samples at 16 kHz: the model's native step
CONTEXT = 64


class SileroDetector:
    """One per audio stream. ``threshold``/``neg_threshold`` give hysteresis, as in Silero's own post-processing."""

    def __init__(self, threshold: float = 0.5, neg_threshold: float = 0.35) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )
        self.threshold, self.neg_threshold = threshold, neg_threshold
        self._probs: dict[int, float] = {}

    def probabilities(self, audio: NDArray[np.float32], offset: int) -> tuple[int, NDArray[np.float32]]:
        """(first absolute window index, speech probability per whole window inside ``audio``)."""
        first = -(-offset // WINDOW)
        last = (offset + len(audio)) // WINDOW
        todo = [w for w in range(first, last) if w not in self._probs]
        if todo:
            rows = []
            for w in todo:
                start = w * WINDOW - offset
                context = audio[max(0, start - CONTEXT) : start]
                context = np.pad(context, (CONTEXT - len(context), 0))
                rows.append(np.concatenate([context, audio[start : start + WINDOW]]))
            batch = np.stack(rows).astype(np.float32)
            zeros = np.zeros((1, 1, 128), dtype=np.float32)
            out = self._session.run(None, {"input": batch, "h": zeros, "c": zeros})[0].reshape(-1)
            self._probs.update(zip(todo, out.tolist(), strict=True))
        for w in [w for w in self._probs if w < first]:
            del self._probs[w]  # behind the buffer: never asked again
        return first, np.array([self._probs[w] for w in range(first, last)], dtype=np.float32)

    def __call__(self, audio: NDArray[np.float32], offset: int) -> list[tuple[int, int]]:
        first, probs = self.probabilities(audio, offset)
        spans: list[tuple[int, int]] = []
        start: int | None = None
        for i, p in enumerate(probs):
            if start is None and p >= self.threshold:
                start = i
            elif start is not None and p < self.neg_threshold:
                spans.append((start, i))
                start = None
        if start is not None:
            spans.append((start, len(probs)))
        base = first * WINDOW - offset
        return [(base + s * WINDOW, base + e * WINDOW) for s, e in spans]
