"""Image sizes read from JPEG/PNG headers without decoding, and the pixel bound applied before any decode."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tessera.monitoring import vision
from tessera.monitoring.vision import ImageError, TooManyPixels, check_image, decode_image, image_size


def _jpeg(width: int, height: int, *params: int) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3)).astype(np.uint8)
    ok, buffer = cv2.imencode(".jpg", rgb, list(params))
    assert ok
    return bytes(buffer.tobytes())


def _png(width: int, height: int) -> bytes:
    ok, buffer = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return bytes(buffer.tobytes())


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOFn) is rewritten to declare ``width`` x ``height``: the data stays tiny."""
    at = 2
    while True:
        assert jpeg[at] == 0xFF
        marker, length = jpeg[at + 1], int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            out = bytearray(jpeg)
            out[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
            return bytes(out)
        at += 2 + length


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    return png[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:]


def _pil_jpeg(width: int, height: int, mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "JPEG", **options)
    return out.getvalue()


VARIANTS = {
    "baseline": _jpeg(37, 21),
    "progressive": _jpeg(640, 480, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "optimized": _jpeg(33, 65, cv2.IMWRITE_JPEG_OPTIMIZE, 1),
    "restart markers": _jpeg(200, 120, cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
    "grayscale": bytes(cv2.imencode(".jpg", np.zeros((50, 70), np.uint8))[1].tobytes()),
    "exif and a 60 KiB ICC profile": _pil_jpeg(300, 200, exif=Image.Exif(), icc_profile=b"\0" * 60_000),
    "CMYK": _pil_jpeg(40, 30, "CMYK"),
    "fill bytes before a marker": b"\xff\xd8\xff\xff\xff" + _jpeg(12, 34)[3:],
    # after APP0 (OpenCV writes 16 bytes of JFIF): libjpeg skips such bytes with a warning, and decodes
    "extraneous bytes before a marker": _jpeg(13, 35)[:20] + b"junk\xff\x00" + _jpeg(13, 35)[20:],
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_jpeg_size_is_what_pil_reads_from_the_header(name: str) -> None:
    data = VARIANTS[name]
    assert image_size(data) == Image.open(io.BytesIO(data)).size


def test_png_size_comes_from_ihdr() -> None:
    assert image_size(_png(123, 45)) == (123, 45)
    assert image_size(with_png_size(_png(1, 1), 70000, 3)) == (70000, 3)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL only reads the header here
def test_a_rewritten_frame_header_declares_12000_by_12000() -> None:
    huge = with_jpeg_size(_jpeg(16, 16), 12000, 12000)
    assert len(huge) < 2000
    assert image_size(huge) == (12000, 12000) == Image.open(io.BytesIO(huge)).size


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a", "not JPEG or PNG"),
        (b"\xff\xd8\xff", "truncated"),
        (_jpeg(8, 8)[:12], "truncated"),
        (b"\xff\xd8\xff\xda\x00\x02", "no frame header before the image data"),  # the scan before SOFn
        (b"\xff\xd8\xff\xd9", "no frame header"),
        (b"\xff\xd8\xff\xe0\x00\x01", "segment length 1"),
        (b"\xff\xd8\xff\xe0\x00\x02garbage", "truncated"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03", "16x0 pixels"),
        (b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x10", "frame header of 5 bytes"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX" + b"\0" * 8, "IHDR"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "IHDR"),
    ],
)
def test_unreadable_headers_are_image_errors_on_data(data: bytes, message: str) -> None:
    with pytest.raises(ImageError) as error:
        image_size(data)
    assert error.value.field == "data" and message in str(error.value)
    assert not isinstance(error.value, TooManyPixels)


def test_hostile_headers_are_read_in_bounded_time() -> None:
    began = time.perf_counter()
    for data in (
        b"\xff\xd8" + b"\xff" * 16_000_000,  # fill bytes to the end
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1_000_000,  # empty comment segments, no frame header
        b"\xff\xd8" + b"\xff\xd0" * 1_000_000,  # restart markers (no length)
        b"\xff\xd8" + bytes(16_000_000),  # no marker at all
    ):
        with pytest.raises(ImageError):
            image_size(data)
    assert time.perf_counter() - began < 1.0


def test_too_many_pixels_is_refused_from_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    huge_jpeg = with_jpeg_size(_jpeg(16, 16), 12000, 12000)
    huge_png = with_png_size(_png(16, 16), 5000, 4000)

    def no_decoding(*_: object) -> None:
        raise AssertionError("decoded an image over MAX_PIXELS")

    monkeypatch.setattr(vision.cv2, "imdecode", no_decoding)
    for data, encoding in ((huge_jpeg, "jpeg"), (huge_png, "png")):
        with pytest.raises(TooManyPixels) as error:
            check_image(data, encoding, 0, 0)
        assert error.value.field == "data" and "at most 16777216" in str(error.value)
        with pytest.raises(TooManyPixels):
            decode_image(data, 256)
    # The bound itself: 4096 x 4096 is allowed, one pixel row more is not.
    check_image(with_jpeg_size(_jpeg(16, 16), 4096, 4096), "jpeg", 0, 0)
    with pytest.raises(TooManyPixels):
        check_image(with_jpeg_size(_jpeg(16, 16), 4096, 4097), "jpeg", 0, 0)


def test_decode_uses_the_header_size_for_reduced_decoding() -> None:
    assert decode_image(_jpeg(640, 480)).shape == (480, 640, 3)
    assert decode_image(_jpeg(640, 480), 256).shape == (240, 320, 3)  # 640 / 2 >= 256 > 640 / 4
    assert decode_image(_jpeg(1280, 960), 256).shape == (240, 320, 3)  # 1280 / 4 >= 256
    assert decode_image(_png(64, 32)).shape == (32, 64, 3)
