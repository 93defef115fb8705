"""Fundus images: geometry of the normalised frame, and repo-made training images with exact lesion ground truth.

The normalised frame is ``SIZE`` x ``SIZE`` RGB with the optic disc on the left, so the left half is nasal and the
right half temporal; the top half is superior. ``orient`` brings a client image into that frame (resize, mirror a
disc-on-the-right eye) and reports one whose disc sits above or below the centre (a rotated photograph).

``synthesise`` draws lesions at known places and counts on skimage's real retina photograph, after a random pose
(mirror, rotation, scale, shift) and before photometric jitter (gain, gamma, colour cast, blur, noise), so every
finding's ground truth is exact. The images are synthetic: they train and test the pipeline, they are not clinical
data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

SIZE = 256  # pixels per side of the normalised frame
HEATMAP_STRIDE = 4  # the captioner's heatmaps are SIZE / 4 per side
KINDS = ("microaneurysm", "hemorrhage", "hard_exudate", "neovascularization")
QUADRANTS = ("superior_nasal", "superior_temporal", "inferior_nasal", "inferior_temporal")
FIELD_RADIUS = 0.46  # fundus field radius as a fraction of SIZE (the retina photograph's circle)
DISC_RADIUS = 14.0  # pixels in the normalised frame
_SPLIT_MARGIN = 7.0  # lesions keep this far (px) from the quadrant split lines: their quadrant is unambiguous
_MIN_SPACING = 8.0  # px between lesion centres: each is a separate, countable lesion


@dataclass(frozen=True)
class Lesion:
    kind: str
    x: float  # pixels in the normalised frame (disc on the left)
    y: float
    radius: float

    @property
    def quadrant(self) -> str:
        return quadrant_of(self.x, self.y)


@dataclass(frozen=True)
class Sample:
    image: NDArray[np.uint8]  # SIZE x SIZE x 3 RGB, as a client would send it (disc on either side)
    lesions: tuple[Lesion, ...]  # in the normalised frame
    mirrored: bool  # the disc is on the right in ``image``


def quadrant_of(x: float, y: float) -> str:
    """Quadrant of a point of the normalised frame (disc on the left: left is nasal)."""
    centre = SIZE / 2
    vertical = "superior" if y < centre else "inferior"
    side = "nasal" if x < centre else "temporal"
    return f"{vertical}_{side}"


@lru_cache(maxsize=1)
def base_retina() -> NDArray[np.uint8]:
    """skimage's retina photograph (a real fundus, disc on the left) at SIZE, RGB."""
    from skimage import data

    image = data.retina()  # type: ignore[no-untyped-call]
    return np.asarray(cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def find_disc(rgb: NDArray[np.uint8]) -> tuple[float, float]:
    """Centre (x, y) of the optic disc: the brightest disc-sized region of the red-free (green) channel."""
    green = rgb[..., 1].astype(np.float32)
    smooth = cv2.GaussianBlur(green, (0, 0), sigmaX=rgb.shape[0] / 40)
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return float(x), float(y)


def square(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Pad the short side with black, centred: a 4:3 fundus camera frame keeps its round field round."""
    height, width = rgb.shape[:2]
    if height == width:
        return rgb
    side = max(height, width)
    out = np.zeros((side, side, 3), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    out[top : top + height, left : left + width] = rgb
    return out


@dataclass(frozen=True)
class Oriented:
    frame: NDArray[np.uint8]  # SIZE x SIZE RGB, disc on the left
    mirrored: bool  # the disc was on the right (the frame is the mirror image of the input)
    rotated: str  # why the image looks rotated by about 90 degrees, or "" when it is upright


def orient(rgb: NDArray[np.uint8]) -> Oriented:
    """RGB of any size -> the normalised frame. A disc above or below the centre is reported, not corrected:
    superior and inferior cannot be told apart then."""
    frame = square(rgb)
    if frame.shape[0] != SIZE:
        frame = np.asarray(cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    x, y = find_disc(frame)
    dx, dy = x - SIZE / 2, y - SIZE / 2
    rotated = ""
    if abs(dy) > 1.5 * abs(dx) and abs(dy) > SIZE * 0.18:
        rotated = (
            f"the optic disc is {'above' if dy < 0 else 'below'} the centre: the image looks rotated by 90 degrees"
        )
    if dx > 0:
        return Oriented(np.ascontiguousarray(frame[:, ::-1]), True, rotated)
    return Oriented(frame, False, rotated)


def is_grayscale(rgb: NDArray[np.uint8], tolerance: float = 4.0) -> bool:
    """True when the three channels carry the same picture (a monochrome or red-free photograph)."""
    small = rgb[:: max(1, rgb.shape[0] // 128), :: max(1, rgb.shape[1] // 128)].astype(np.float32)
    spread = np.abs(small[..., 0] - small[..., 1]) + np.abs(small[..., 1] - small[..., 2])
    return float(spread.mean()) < tolerance


# --- synthesis --------------------------------------------------------------------------------------------------


def _in_field(x: float, y: float, margin: float) -> bool:
    centre = SIZE / 2
    return math.hypot(x - centre, y - centre) < SIZE * FIELD_RADIUS - margin


def _place(
    rng: np.random.Generator, quadrant: str, taken: list[Lesion], disc: tuple[float, float]
) -> tuple[float, float]:
    """A free spot inside ``quadrant`` of the field, away from the disc, the split lines and the other lesions."""
    centre = SIZE / 2
    for _ in range(400):
        x = rng.uniform(SIZE * 0.06, SIZE * 0.94)
        y = rng.uniform(SIZE * 0.06, SIZE * 0.94)
        if quadrant_of(x, y) != quadrant or min(abs(x - centre), abs(y - centre)) < _SPLIT_MARGIN:
            continue
        if not _in_field(x, y, 10.0) or math.hypot(x - disc[0], y - disc[1]) < DISC_RADIUS + 8:
            continue
        if any(math.hypot(x - o.x, y - o.y) < _MIN_SPACING + o.radius for o in taken):
            continue
        return x, y
    raise RuntimeError(f"no free spot in {quadrant}")


def _window(x: float, y: float, reach: float) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1) of the square of half-side ``reach`` around (x, y), clipped to the frame."""
    r = math.ceil(reach) + 3
    return max(0, int(x) - r), max(0, int(y) - r), min(SIZE, int(x) + r + 1), min(SIZE, int(y) + r + 1)


def _supersampled(
    bounds: tuple[int, int, int, int], draw: Callable[[NDArray[np.float32], int, int], None]
) -> NDArray[np.float32]:
    """A coverage mask over ``bounds``, drawn at 4x by ``draw(canvas, x0, y0)`` for sub-pixel shapes, then reduced."""
    x0, y0, x1, y1 = bounds
    canvas = np.zeros(((y1 - y0) * 4, (x1 - x0) * 4), np.float32)
    draw(canvas, x0, y0)
    return np.asarray(cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA), np.float32)


def _draw(image: NDArray[np.float32], lesion: Lesion, rng: np.random.Generator) -> None:
    local = image[int(lesion.y), int(lesion.x)].copy()
    strength = rng.uniform(0.55, 0.95)  # some lesions are faint
    bounds = _window(lesion.x, lesion.y, lesion.radius + 3)
    x0, y0, x1, y1 = bounds
    if lesion.kind == "neovascularization":  # a tangle of fine new vessels
        strands = []
        for _ in range(int(rng.integers(3, 6))):
            angle = rng.uniform(0, 2 * math.pi)
            bend = rng.uniform(1.5, 3.0)
            strands.append(
                [
                    (
                        lesion.x + lesion.radius * t * math.cos(angle + 0.5 * math.sin(t * math.pi * bend)),
                        lesion.y + lesion.radius * t * math.sin(angle + 0.5 * math.sin(t * math.pi * bend)),
                    )
                    for t in np.linspace(0, 1, 8)
                ]
            )

        def vessels(canvas: NDArray[np.float32], ox: int, oy: int) -> None:
            for strand in strands:
                points = np.array([(round((px - ox) * 4), round((py - oy) * 4)) for px, py in strand], np.int32)
                cv2.polylines(canvas, [points], False, (1.0,), 3, cv2.LINE_AA)

        mask = _supersampled(bounds, vessels)
        colour = np.array([local[0] * 0.6, local[1] * 0.12, local[2] * 0.15], np.float32)
    else:
        ratio, angle, softness = 1.0, 0.0, 0.5
        if lesion.kind == "microaneurysm":
            colour = np.array([local[0] * 0.55, local[1] * 0.2, local[2] * 0.2], np.float32)
        elif lesion.kind == "hemorrhage":
            ratio, angle, softness = rng.uniform(0.55, 1.0), rng.uniform(0, 180), 0.9
            colour = np.array([local[0] * 0.45, local[1] * 0.15, local[2] * 0.15], np.float32)
        else:  # hard exudate
            ratio, softness = rng.uniform(0.7, 1.0), 0.6
            colour = np.array([255.0, 236.0, 140.0], np.float32)
            strength = rng.uniform(0.5, 0.85)

        def blob(canvas: NDArray[np.float32], ox: int, oy: int) -> None:
            centre = (round((lesion.x - ox) * 4), round((lesion.y - oy) * 4))
            axes = (max(1, round(lesion.radius * 4)), max(1, round(lesion.radius * ratio * 4)))
            cv2.ellipse(canvas, centre, axes, angle, 0, 360, (1.0,), -1, cv2.LINE_AA)

        mask = np.asarray(cv2.GaussianBlur(_supersampled(bounds, blob), (0, 0), softness), np.float32)
    alpha = np.clip(mask * strength, 0, 1)[..., None]
    patch = image[y0:y1, x0:x1]
    patch *= 1 - alpha
    patch += alpha * colour


_RADIUS = {
    "microaneurysm": (1.3, 2.0),
    "hemorrhage": (3.5, 6.5),
    "hard_exudate": (1.6, 3.0),
    "neovascularization": (9.0, 14.0),
}


def synthesise(counts: dict[tuple[str, str], int], rng: np.random.Generator) -> Sample:
    """A fundus with exactly ``counts[(kind, quadrant)]`` lesions of each kind in each quadrant."""
    base = base_retina().astype(np.float32)
    # Pose: the lesions are placed in the posed, normalised frame; mirroring is applied last.
    angle = rng.uniform(-8, 8)
    scale = rng.uniform(0.94, 1.06)
    shift = rng.uniform(-5, 5, size=2)
    matrix = np.asarray(cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale), np.float64)
    matrix[:, 2] = matrix[:, 2] + shift
    posed = cv2.warpAffine(base, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    image: NDArray[np.float32] = np.asarray(posed, np.float32)
    disc = find_disc(np.clip(image, 0, 255).astype(np.uint8))
    lesions: list[Lesion] = []
    for (kind, quadrant), count in sorted(counts.items()):
        for _ in range(count):
            low, high = _RADIUS[kind]
            x, y = _place(rng, quadrant, lesions, disc)
            lesions.append(Lesion(kind, x, y, float(rng.uniform(low, high))))
    for lesion in lesions:
        _draw(image, lesion, rng)
    # Photometric jitter: exposure, gamma, colour cast, focus, sensor noise.
    gain = rng.uniform(0.78, 1.2) * rng.uniform(0.92, 1.08, size=3)
    exposed = np.asarray(255.0 * np.power(np.clip(image * gain / 255.0, 0, 1), rng.uniform(0.8, 1.25)), np.float32)
    sigma = rng.uniform(0.0, 0.7)
    if sigma > 0.2:
        exposed = np.asarray(cv2.GaussianBlur(exposed, (0, 0), sigma), np.float32)
    noisy = exposed + rng.normal(0, rng.uniform(0.5, 3.5), size=exposed.shape)
    out = np.clip(noisy, 0, 255).astype(np.uint8)
    mirrored = bool(rng.random() < 0.5)
    if mirrored:
        out = np.ascontiguousarray(out[:, ::-1])
    return Sample(out, tuple(lesions), mirrored)


def heatmap_targets(lesions: tuple[Lesion, ...]) -> NDArray[np.float32]:
    """The captioner's training target: per kind, exactly 1 at each lesion's heatmap cell and a Gaussian around it
    (the penalty-reduced focal loss of CenterNet counts only the 1s as positives)."""
    side = SIZE // HEATMAP_STRIDE
    out = np.zeros((len(KINDS), side, side), np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    for lesion in lesions:
        k = KINDS.index(lesion.kind)
        cx = min(side - 1, max(0, int(lesion.x // HEATMAP_STRIDE)))
        cy = min(side - 1, max(0, int(lesion.y // HEATMAP_STRIDE)))
        sigma = 0.8 if lesion.kind != "neovascularization" else 1.5
        out[k] = np.maximum(out[k], np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))
    return out
