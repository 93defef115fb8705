"""Client photographs -> RGB arrays, with the size read from the header before anything is decoded.

Pillow reads the header lazily, so a 100-megapixel image is refused from its declared size without allocating it.
EXIF orientation is applied (a phone photographs sideways and says so). A photograph whose channels all carry the
same picture is refused: the captioner tells lesions apart by colour.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from tessera.triage.fundus import is_grayscale

Encoding = Literal["jpeg", "png", "raw_rgb8"]
_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class PhotoError(ValueError):
    """``field`` is the image sub-field at fault ("data", "width_px", ...); ``too_large`` marks a size refusal."""

    def __init__(self, message: str, field: str, reason: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.too_large = too_large


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    min_side_px: int


def _check_size(width: int, height: int, limits: Limits, field: str) -> None:
    if width * height > limits.max_pixels:
        raise PhotoError(
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels, above the limit of "
            f"{limits.max_pixels / 1e6:.1f}",
            field,
            "IMAGE_TOO_LARGE",
            too_large=True,
        )
    if min(width, height) < limits.min_side_px:
        raise PhotoError(f"{width}x{height} is below {limits.min_side_px} pixels a side", field, "IMAGE_TOO_SMALL")


def decode(data: bytes, encoding: Encoding, width: int, height: int, limits: Limits) -> NDArray[np.uint8]:
    if not data:
        raise PhotoError("must not be empty", "data", "IMAGE_EMPTY")
    if len(data) > limits.max_bytes:
        raise PhotoError(f"{len(data)} bytes, above the limit of {limits.max_bytes}", "data", "IMAGE_TOO_LARGE", True)
    if encoding == "raw_rgb8":
        if width <= 0 or height <= 0:
            raise PhotoError("RAW_RGB8 needs width_px and height_px", "width_px", "IMAGE_SIZE_MISSING")
        _check_size(width, height, limits, "width_px")
        if len(data) != width * height * 3:
            raise PhotoError(f"RAW_RGB8 needs {width * height * 3} bytes, got {len(data)}", "data", "IMAGE_UNREADABLE")
        rgb = np.frombuffer(data, np.uint8).reshape(height, width, 3)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
                picture = Image.open(io.BytesIO(data))
                if picture.format != _FORMATS[encoding]:
                    raise PhotoError(
                        f"is {picture.format or 'not an image'}, not {_FORMATS[encoding]}", "data", "IMAGE_FORMAT"
                    )
                _check_size(picture.width, picture.height, limits, "data")
                upright = ImageOps.exif_transpose(picture)
                if upright.mode in ("1", "L", "LA", "I", "I;16", "F"):
                    raise PhotoError(
                        "is a grayscale image; a colour fundus photograph is needed", "data", "IMAGE_GRAYSCALE"
                    )
                rgb = np.asarray(upright.convert("RGB"), np.uint8)
        except Image.DecompressionBombError:
            raise PhotoError(
                f"far above the limit of {limits.max_pixels / 1e6:.1f} megapixels", "data", "IMAGE_TOO_LARGE", True
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, PhotoError):
                raise
            raise PhotoError(f"cannot be decoded as {_FORMATS[encoding]}", "data", "IMAGE_UNREADABLE") from None
    if is_grayscale(rgb):
        raise PhotoError("is a grayscale image; a colour fundus photograph is needed", "data", "IMAGE_GRAYSCALE")
    return rgb
