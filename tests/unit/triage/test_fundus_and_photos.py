"""Synthetic fundus ground truth, orientation, and the photograph checks (real encoders, real bytes)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tessera.triage import cases, fundus, grading, photos

LIMITS = photos.Limits(max_bytes=8 * 1024 * 1024, max_pixels=40_000_000, min_side_px=128)


def _encode(rgb: np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize("cls", grading.CLASSES)
def test_synthesised_cases_hold_exactly_the_counts_asked(cls: str) -> None:
    rng = np.random.default_rng(3)
    counts = cases.sample_counts(cls, rng)
    sample = fundus.synthesise(counts, rng)
    drawn: dict[tuple[str, str], int] = {}
    for lesion in sample.lesions:
        drawn[(lesion.kind, lesion.quadrant)] = drawn.get((lesion.kind, lesion.quadrant), 0) + 1
    assert drawn == counts and grading.grade(drawn) == cls
    assert sample.image.shape == (fundus.SIZE, fundus.SIZE, 3) and sample.image.dtype == np.uint8


def test_orient_mirrors_a_disc_on_the_right_and_reports_a_rotation() -> None:
    rng = np.random.default_rng(5)
    sample = fundus.synthesise({}, rng)
    left = sample.image[:, ::-1] if sample.mirrored else sample.image
    assert not fundus.orient(left).mirrored
    right = fundus.orient(np.ascontiguousarray(left[:, ::-1]))
    assert right.mirrored and np.array_equal(right.frame, left) and not right.rotated
    rotated = fundus.orient(np.ascontiguousarray(np.rot90(left)))
    assert "rotated" in rotated.rotated
    big = fundus.orient(np.asarray(Image.fromarray(left).resize((1024, 1024))))
    assert big.frame.shape == (fundus.SIZE, fundus.SIZE, 3)


def test_decode_applies_exif_orientation_and_accepts_each_encoding() -> None:
    rgb = fundus.base_retina()
    for fmt, enc in (("PNG", "png"), ("JPEG", "jpeg")):
        assert photos.decode(_encode(rgb, fmt), enc, 0, 0, LIMITS).shape == rgb.shape
    raw = photos.decode(rgb.tobytes(), "raw_rgb8", 256, 256, LIMITS)
    assert np.array_equal(raw, rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    sideways = np.ascontiguousarray(np.rot90(rgb, k=1))
    upright = photos.decode(_encode(sideways, "JPEG", exif=exif), "jpeg", 0, 0, LIMITS)
    assert abs(float(upright.astype(float).mean()) - float(rgb.mean())) < 3
    assert not fundus.orient(upright).rotated  # EXIF applied: the disc is back on the horizontal meridian


@pytest.mark.parametrize(
    ("data", "encoding", "width", "height", "reason", "too_large"),
    [
        (b"", "png", 0, 0, "IMAGE_EMPTY", False),
        (b"%PDF-1.4 not an image", "png", 0, 0, "IMAGE_UNREADABLE", False),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "png", 0, 0, "IMAGE_UNREADABLE", False),
        (bytes(30), "raw_rgb8", 0, 10, "IMAGE_SIZE_MISSING", False),
        (bytes(30), "raw_rgb8", 200, 200, "IMAGE_UNREADABLE", False),
        (bytes(3), "raw_rgb8", 10_000, 10_000, "IMAGE_TOO_LARGE", True),
    ],
)
def test_bad_photographs_are_named(
    data: bytes, encoding: photos.Encoding, width: int, height: int, reason: str, too_large: bool
) -> None:
    with pytest.raises(photos.PhotoError) as caught:
        photos.decode(data, encoding, width, height, LIMITS)
    assert caught.value.reason == reason and caught.value.too_large is too_large


def test_a_100_megapixel_png_is_refused_from_its_header() -> None:
    # A real 10000x10000 PNG of one colour compresses to ~100 kB; its pixels are never decoded.
    data = _encode(np.full((10_000, 10_000, 3), 120, np.uint8))
    assert len(data) < LIMITS.max_bytes
    with pytest.raises(photos.PhotoError) as caught:
        photos.decode(data, "png", 0, 0, LIMITS)
    assert caught.value.reason == "IMAGE_TOO_LARGE" and "100.0 megapixels" in str(caught.value)


def test_grayscale_wrong_format_and_tiny_images_are_refused() -> None:
    rgb = fundus.base_retina()
    gray = np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    for data, enc, reason in (
        (_encode(gray), "png", "IMAGE_GRAYSCALE"),
        (_encode(rgb[..., 1]), "png", "IMAGE_GRAYSCALE"),  # a true one-channel PNG
        (_encode(rgb, "JPEG"), "png", "IMAGE_FORMAT"),
        (_encode(rgb[:64, :64]), "png", "IMAGE_TOO_SMALL"),
    ):
        with pytest.raises(photos.PhotoError) as caught:
            photos.decode(data, enc, 0, 0, LIMITS)  # type: ignore[arg-type]
        assert caught.value.reason == reason


def test_a_wide_camera_frame_is_padded_not_stretched() -> None:
    rng = np.random.default_rng(9)
    sample = fundus.synthesise({}, rng)
    wide = np.zeros((256, 342, 3), np.uint8)  # a 4:3 frame with the round field in the middle
    wide[:, 43:299] = sample.image
    oriented = fundus.orient(wide)
    assert oriented.frame.shape == (256, 256, 3) and not oriented.rotated
    assert oriented.mirrored == sample.mirrored
    field = oriented.frame[128, :, 0] > 20  # the field's width along the middle row, in the normalised frame
    assert 0.6 < field.mean() < 0.85, field.mean()  # stretched, it would fill the row
