"""Train the triage models on fundus images the repo makes: ``python -m tessera.triage.training``.

Writes into ``<out>/triage/``: ``captioner.pt`` (lesion heatmaps + in-distribution head), ``reasoner.pt`` (findings
text -> grade) and ``triage.json`` (provenance: seed, data, temperature, thresholds chosen on validation data,
metrics), each with its ``.sha256``, which ``tessera models build`` checks. Seeded; skipped when up to date.

Data: ``tessera.triage.fundus.synthesise`` on skimage's retina photograph, classes balanced with many cases next to
the adjacent grade (``tessera.triage.cases``); negatives for the in-distribution head from skimage's other bundled
pictures (``TRAIN_NEGATIVES``; the benchmark tests on pictures never seen here) and from generated look-alikes
(flat colour, noise, gradients, an orange disc with a bright spot but no vessels). The functions below are also
what the benchmark's ablation and label-efficiency curve train with.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from tessera.runtime.model_repository import trained_up_to_date, write_trained
from tessera.triage import calibration, cases, findings, fundus, nets
from tessera.triage.grading import CLASSES, grade

TRAIN_NEGATIVES = (
    "astronaut", "brick", "camera", "cat", "clock", "coins", "colorwheel", "grass", "gravel", "horse",
    "logo", "moon", "page", "text", "cell", "binary_blobs", "checkerboard",
)  # fmt: skip
HELD_OUT_NEGATIVES = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    train_images: int = 1000
    validation_images: int = 300
    negatives: int = 500
    rotated_positives: int = 100  # rotated fundus photographs: in distribution (the service then names the rotation)
    batch: int = 32
    learning_rate: float = 4e-3
    steps: int = 600  # optimiser steps of each image network (the budget is the same for both pathways)
    crop: int = 128  # lesion heatmaps train on crops of this many pixels (the trunk is fully convolutional)
    reasoner_epochs: int = 400
    refer_coverage: float = 0.95  # the confidence threshold alone decides this fraction of validation cases
    threads: int = 2


@dataclass
class FundusSet:
    frames: NDArray[np.uint8]  # [N, SIZE, SIZE, 3], normalised (disc on the left)
    lesions: list[tuple[fundus.Lesion, ...]]
    labels: NDArray[np.int64]
    counts: list[dict[tuple[str, str], int]] = field(default_factory=list)


def fundus_set(n: int, seed: int) -> FundusSet:
    rng = np.random.default_rng(seed)
    frames, lesions, labels, counts = [], [], [], []
    for cls in cases.balanced_classes(n, rng):
        wanted = cases.sample_counts(cls, rng)
        sample = fundus.synthesise(wanted, rng)
        oriented = fundus.orient(sample.image)
        frame = oriented.frame
        if oriented.mirrored != sample.mirrored:  # disc found on the wrong side: keep the ground truth's frame
            frame = sample.image[:, ::-1] if sample.mirrored else sample.image
        frames.append(np.ascontiguousarray(frame))
        lesions.append(sample.lesions)
        labels.append(CLASSES.index(cls))
        counts.append(wanted)
    return FundusSet(np.stack(frames), lesions, np.asarray(labels, np.int64), counts)


def _colour(image: NDArray[Any]) -> NDArray[np.uint8]:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(1e-9, float(image.max())))).astype(np.uint8)
    return np.asarray(image, np.uint8)


def picture_sources(names: Sequence[str]) -> list[NDArray[np.uint8]]:
    from skimage import data

    return [_colour(getattr(data, name)()) for name in names]


def _lookalike(rng: np.random.Generator) -> NDArray[np.float32]:
    kind = int(rng.integers(4))
    size = fundus.SIZE
    if kind == 0:  # flat colour
        return np.ones((size, size, 3), np.float32) * rng.uniform(0, 255, 3).astype(np.float32)
    if kind == 1:  # noise
        return rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    if kind == 2:  # gradient
        ramp = np.linspace(0, 1, size, dtype=np.float32)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        return np.asarray(a + (b - a) * ramp[None, :, None] * np.ones((size, 1, 1), np.float32), np.float32)
    # an orange disc on black with a bright spot: a fundus's colours and layout without its anatomy
    out = np.zeros((size, size, 3), np.float32)
    centre = (size // 2 + int(rng.integers(-10, 10)), size // 2 + int(rng.integers(-10, 10)))
    colour = (float(rng.uniform(170, 250)), float(rng.uniform(60, 120)), float(rng.uniform(20, 70)))
    cv2.circle(out, centre, int(size * rng.uniform(0.38, 0.48)), colour, -1)
    spot = (int(size * rng.uniform(0.15, 0.3)), int(size * rng.uniform(0.4, 0.6)))
    cv2.circle(out, spot, int(rng.integers(8, 18)), (250.0, 240.0, 180.0), -1)
    out += rng.normal(0, rng.uniform(2, 20), out.shape).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 3))), np.float32)


def negatives(n: int, seed: int, sources: list[NDArray[np.uint8]], lookalikes: float = 0.3) -> NDArray[np.uint8]:
    """Non-fundus frames: random crops of ``sources`` (colour cast, mirror), and generated look-alikes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if not sources or rng.random() < lookalikes:
            image = _lookalike(rng)
        else:
            picture = sources[int(rng.integers(len(sources)))]
            h, w = picture.shape[:2]
            side = int(min(h, w) * rng.uniform(0.5, 1.0))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = picture[y : y + side, x : x + side].astype(np.float32)
            resized = cv2.resize(crop, (fundus.SIZE, fundus.SIZE), interpolation=cv2.INTER_AREA)
            image = np.asarray(resized * rng.uniform(0.7, 1.3, 3), np.float32)
            if rng.random() < 0.5:
                image = image[:, ::-1]
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(out)


def rotated_fundus(n: int, seed: int) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sample = fundus.synthesise(cases.sample_counts(CLASSES[i % len(CLASSES)], rng), rng)
        out.append(np.ascontiguousarray(np.rot90(sample.image, k=1 if rng.random() < 0.5 else 3)))
    return np.stack(out)


def _batches(n: int, batch: int, steps: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    order: list[NDArray[np.int64]] = []
    while len(order) < steps:
        perm = rng.permutation(n)
        order += [perm[i : i + batch] for i in range(0, n, batch) if len(perm[i : i + batch]) > 1]
    return order[:steps]


def _fit(
    net: nn.Module, n: int, loss_of: Callable[[NDArray[np.int64]], torch.Tensor], config: TrainConfig, seed: int
) -> None:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=config.steps)
    net.train()
    for index in _batches(n, config.batch, config.steps, rng):
        optimiser.zero_grad()
        loss = loss_of(index)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
    net.eval()


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss: positives are the cells at 1, their neighbours are penalised less."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.ge(0.999).float()
    pos = torch.log(p) * (1 - p) ** 2 * positive
    neg = torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - positive)
    loss: torch.Tensor = -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)
    return loss


def train_captioner(
    positives: FundusSet, negative: NDArray[np.uint8], rotated: NDArray[np.uint8], config: TrainConfig, seed: int
) -> nets.Captioner:
    """Lesion heatmaps on random crops of the fundus frames (the trunk is fully convolutional), and the gate on
    whole images: fundus (upright and rotated) against negatives."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = nets.Captioner()
    stride, crop = fundus.HEATMAP_STRIDE, config.crop
    heat = np.stack([fundus.heatmap_targets(lesions) for lesions in positives.lesions])
    gate_images = np.concatenate([positives.frames, rotated, negative])
    gate_labels = np.zeros(len(gate_images), np.float32)
    gate_labels[: len(positives.frames) + len(rotated)] = 1.0
    frames, targets = torch.from_numpy(positives.frames), torch.from_numpy(heat)
    gate_x, gate_y = torch.from_numpy(gate_images), torch.from_numpy(gate_labels)
    bce = nn.BCEWithLogitsLoss()

    def loss_of(index: NDArray[np.int64]) -> torch.Tensor:
        cells = crop // stride
        ys = rng.integers(0, (fundus.SIZE - crop) // stride + 1, size=len(index)) * stride
        xs = rng.integers(0, (fundus.SIZE - crop) // stride + 1, size=len(index)) * stride
        image = torch.stack([frames[i, y : y + crop, x : x + crop] for i, y, x in zip(index, ys, xs, strict=True)])
        target = torch.stack(
            [
                targets[i, :, y // stride : y // stride + cells, x // stride : x // stride + cells]
                for i, y, x in zip(index, ys, xs, strict=True)
            ]
        )
        lesion_loss = focal_loss(net.lesion_logits(nets.to_tensor(image)), target)
        pick = torch.from_numpy(rng.integers(0, len(gate_images), size=len(index)))
        gate_loss = bce(net.gate(nets.to_tensor(gate_x[pick])), gate_y[pick])
        loss: torch.Tensor = lesion_loss + gate_loss
        return loss

    _fit(net, len(positives.frames), loss_of, config, seed)
    return net


def train_vision_direct(positives: FundusSet, config: TrainConfig, seed: int) -> nets.VisionDirect:
    torch.manual_seed(seed)
    net = nets.VisionDirect()
    x_all, y_all = torch.from_numpy(positives.frames), torch.from_numpy(positives.labels)
    ce = nn.CrossEntropyLoss()

    def loss_of(index: NDArray[np.int64]) -> torch.Tensor:
        idx = torch.from_numpy(index)
        loss: torch.Tensor = ce(net(nets.to_tensor(x_all[idx])), y_all[idx])
        return loss

    _fit(net, len(positives.frames), loss_of, config, seed)
    return net


@torch.inference_mode()
def caption(
    net: nets.Captioner, frames: NDArray[np.uint8], batch: int = 32
) -> tuple[list[list[findings.Finding]], NDArray[np.float32]]:
    """Findings per frame and the in-distribution probability, as the Triton captioner computes them."""
    found: list[list[findings.Finding]] = []
    scores = []
    for i in range(0, len(frames), batch):
        logits, id_logit = net(nets.to_tensor(torch.from_numpy(frames[i : i + batch])))
        heat = torch.sigmoid(logits).numpy()
        scores.append(torch.sigmoid(id_logit).numpy())
        found += [findings.from_peaks(findings.peaks(h)) for h in heat]
    return found, np.concatenate(scores).astype(np.float32)


@torch.inference_mode()
def vision_logits(net: nets.VisionDirect, frames: NDArray[np.uint8], batch: int = 32) -> NDArray[np.float32]:
    out = [net(nets.to_tensor(torch.from_numpy(frames[i : i + batch]))).numpy() for i in range(0, len(frames), batch)]
    return np.asarray(np.concatenate(out), np.float32)


def exact_findings(counts: dict[tuple[str, str], int]) -> list[findings.Finding]:
    return findings.numbered({key: findings.Tally(n, 1.0) for key, n in counts.items()})


def _jitter(counts: dict[tuple[str, str], int], rng: np.random.Generator) -> dict[tuple[str, str], int]:
    """Counts as a fallible captioner might report them: now and then one lesion missed or one too many."""
    out = dict(counts)
    for key in list(out):
        if rng.random() < 0.08:
            out[key] = max(0, out[key] + (1 if rng.random() < 0.5 else -1))
    if rng.random() < 0.05:
        kind = fundus.KINDS[int(rng.integers(3))]  # a spurious small lesion, never new vessels
        key = (kind, fundus.QUADRANTS[int(rng.integers(4))])
        out[key] = out.get(key, 0) + 1
    return out


def train_reasoner(
    texts_features: NDArray[np.float32], labels: NDArray[np.int64], config: TrainConfig, seed: int
) -> nets.Reasoner:
    torch.manual_seed(seed)
    net = nets.Reasoner()
    x, y = torch.from_numpy(texts_features), torch.from_numpy(labels)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    ce = nn.CrossEntropyLoss()
    net.train()
    for _ in range(config.reasoner_epochs):
        optimiser.zero_grad()
        loss = ce(net(x), y)
        loss.backward()
        optimiser.step()
    net.eval()
    return net


def reasoner_data(
    data: FundusSet, captioned: list[list[findings.Finding]], seed: int, copies: int = 3
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Features with labels: what the captioner said about each training image, the exact findings, and jittered
    copies of the exact findings whose label is the rules' grade of what they say."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for found, counts, label in zip(captioned, data.counts, data.labels, strict=True):
        rows.append(findings.features(found))
        labels.append(int(label))
        rows.append(findings.features(exact_findings(counts)))
        labels.append(int(label))
        for _ in range(copies):
            jittered = _jitter(counts, rng)
            rows.append(findings.features(exact_findings(jittered)))
            labels.append(CLASSES.index(grade(jittered)))
    return np.stack(rows), np.asarray(labels, np.int64)


@torch.inference_mode()
def reason(net: nets.Reasoner, found: list[list[findings.Finding]]) -> NDArray[np.float32]:
    rows = np.stack([findings.features(f) for f in found])
    return np.asarray(net(torch.from_numpy(rows)).numpy(), np.float32)


def state_bytes(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


def load_state(net: nn.Module, path: Path) -> None:
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()


def up_to_date_key(config: TrainConfig) -> str:
    here = Path(__file__).parent
    source = b"".join(
        (here / f"{name}.py").read_bytes() for name in ("training", "nets", "fundus", "cases", "findings")
    )
    return hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode() + source).hexdigest()[:20]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TESSERA_TRAINED_DIR") or "build/trained"))
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--force", action="store_true", help="train even when the weights are up to date")
    args = parser.parse_args(argv)
    config = TrainConfig(seed=args.seed)
    folder = args.out / "triage"
    key = up_to_date_key(config)
    files = [folder / "captioner.pt", folder / "reasoner.pt"]
    if not args.force and trained_up_to_date(files, folder / "triage.json", key):
        print(f"triage: up to date in {folder}")
        return 0
    torch.set_num_threads(config.threads)
    began = time.perf_counter()
    train = fundus_set(config.train_images, config.seed)
    validation = fundus_set(config.validation_images, config.seed + 1)
    sources = picture_sources(TRAIN_NEGATIVES)
    negative = negatives(config.negatives, config.seed + 2, sources)
    rotated = rotated_fundus(config.rotated_positives, config.seed + 3)
    data_s = time.perf_counter() - began
    captioner = train_captioner(train, negative, rotated, config, config.seed)
    train_found, _ = caption(captioner, train.frames)
    rows, labels = reasoner_data(train, train_found, config.seed)
    reasoner = train_reasoner(rows, labels, config, config.seed)
    # Operating points on validation data the networks never saw.
    val_found, val_id = caption(captioner, validation.frames)
    val_logits = reason(reasoner, val_found)
    temperature = calibration.fit_temperature(val_logits, validation.labels)
    probs = calibration.softmax(val_logits, temperature)
    refer_threshold = calibration.threshold_for_coverage(probs, config.refer_coverage)
    val_negative = negatives(200, config.seed + 4, sources)
    _, neg_id = caption(captioner, val_negative)
    metrics = {
        "validation_accuracy": round(float((probs.argmax(1) == validation.labels).mean()), 4),
        "validation_macro_f1": round(calibration.macro_f1(probs.argmax(1), validation.labels, len(CLASSES)), 4),
        "validation_ece": round(calibration.ece(probs, validation.labels), 4),
        "validation_fundus_in_distribution_min": round(float(val_id.min()), 4),
        "validation_negatives_referred": round(float((neg_id < 0.5).mean()), 4),
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_trained(files[0], state_bytes(captioner))
    write_trained(files[1], state_bytes(reasoner))
    provenance = {
        "key": key,
        "task": "dr_grading",
        "classes": list(CLASSES),
        "temperature": round(temperature, 4),
        # Rounded down: a rounded-up threshold would refer the cases sitting exactly on it (ties are common).
        "refer_threshold": math.floor(refer_threshold * 1e4) / 1e4,
        "ood_threshold": 0.5,
        "training": asdict(config),
        "parameters": {"captioner": nets.parameters(captioner), "reasoner": nets.parameters(reasoner)},
        "data": {
            "fundus": "skimage retina photograph, posed and jittered, lesions drawn at known places (synthetic)",
            "negatives": [*TRAIN_NEGATIVES, "generated look-alikes"],
        },
        "digests": {
            "captioner": hashlib.sha256(files[0].read_bytes()).hexdigest(),
            "reasoner": hashlib.sha256(files[1].read_bytes()).hexdigest(),
        },
        "metrics": metrics,
        "seconds": {"data": round(data_s, 1), "total": round(time.perf_counter() - began, 1)},
        "torch": torch.__version__,
    }
    write_trained(folder / "triage.json", json.dumps(provenance, indent=1).encode())
    print(f"triage: trained in {time.perf_counter() - began:.0f} s; validation {metrics} -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
