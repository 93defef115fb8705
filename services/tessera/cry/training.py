"""``python -m tessera.cry.training --out build/trained``: the central cry model (seeded, CPU, about a minute).

It pre-trains the whole network (denoiser, tokenizer, Transformer, adapters, heads) on simulated families, then
fits the temperature and the energy threshold on held-out validation families and reports figures on held-out test
families with new voices, rooms, microphones and background voices, and on real non-cry sounds (OOD). This is the
model version ``cry-central``; federation rounds (``tessera.cry.federation``) fine-tune its adapters from there.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from tessera.cry import calibration, corpus, nets
from tessera.cry.vocalisation import RATE, REASONS
from tessera.runtime.audio import log_mel
from tessera.runtime.model_repository import trained_up_to_date, write_trained

SEED = 2512
CLIP_S = 3.0
FOLDER = "cry"
WEIGHTS = "cry.pt"
PROVENANCE = "cry.json"


@dataclass(frozen=True)
class Recipe:
    train_families: int = 24
    cries_per_family: int = 30
    quiet_per_family: int = 4
    distractors_per_family: int = 6  # outlier exposure: loud non-cry sounds of the training pool or made
    val_families: int = 6
    test_families: int = 8
    eval_cries_per_family: int = 24
    eval_quiet_per_family: int = 4
    ood: int = 120
    epochs: int = 10
    batch: int = 32
    lr: float = 2e-3
    denoise_weight: float = 0.3
    energy_weight: float = 0.05
    energy_margins: tuple[float, float] = (-7.0, -2.0)  # (in, out): Liu et al. 2020 energy-bounded training

    def key(self) -> str:
        """Changes with the recipe, the network, or any code that makes the data or the features."""
        here = Path(__file__).parent
        source = b"".join((here / f"{m}.py").read_bytes() for m in ("training", "corpus", "vocalisation", "nets"))
        source += (here.parent / "runtime" / "audio.py").read_bytes()
        payload = json.dumps([SEED, CLIP_S, self.__dict__, nets.Architecture().to_json()]).encode()
        return hashlib.sha256(payload + source).hexdigest()[:16]


@dataclass
class Batch:
    mel: NDArray[np.float32]  # [N, T, 64]
    clean: NDArray[np.float32]  # [N, T, 64] log-mel of the dry cry (the denoiser's target)
    labels: NDArray[np.int64]  # reason index or corpus.NOT_CRY


def features(audio: NDArray[np.float32]) -> NDArray[np.float32]:
    return log_mel(audio)


def to_batch(recordings: Sequence[corpus.Recording]) -> Batch:
    mel = np.stack([features(r.audio) for r in recordings])
    silent = np.zeros(int(CLIP_S * RATE), np.float32)
    clean = np.stack([features(r.clean if r.clean is not None else silent) for r in recordings])
    return Batch(mel, clean, np.array([r.label for r in recordings], np.int64))


def families(start: int, count: int, backgrounds: tuple[str, ...]) -> list[corpus.Family]:
    return [corpus.make_family(start + i, SEED, backgrounds) for i in range(count)]


def recordings(group: list[corpus.Family], cries: int, quiet: int, distractors: int = 0) -> list[corpus.Recording]:
    return [r for f in group for r in corpus.family_recordings(f, cries, quiet, SEED, CLIP_S, distractors)]


def ood_recordings(count: int) -> list[corpus.Recording]:
    rng = np.random.default_rng([SEED, 99])
    return [corpus.unknown_sound(rng, CLIP_S) for _ in range(count)]


def losses(
    net: nets.CryNet, mel: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor, recipe: Recipe
) -> torch.Tensor:
    """Cry detection (BCE), reason (CE on cries), denoising (MSE to the dry cry's log-mel) and the energy hinge:
    cries pulled below ``m_in``, non-cry sounds pushed above ``m_out``."""
    frames = torch.full((len(mel),), mel.shape[1], dtype=torch.long)
    cry_logit, reason_logits = net(mel, frames)
    is_cry = labels >= 0
    loss = F.binary_cross_entropy_with_logits(cry_logit, is_cry.float())
    if is_cry.any():
        loss = loss + F.cross_entropy(reason_logits[is_cry], labels[is_cry])
    if recipe.denoise_weight:
        loss = loss + recipe.denoise_weight * F.mse_loss(net.denoiser(mel), clean) / 16.0
    if recipe.energy_weight:
        loss = loss + recipe.energy_weight * energy_hinge(reason_logits, is_cry, recipe.energy_margins)
    return loss


def energy_hinge(reason_logits: torch.Tensor, is_cry: torch.Tensor, margins: tuple[float, float]) -> torch.Tensor:
    """Energy-bounded outlier exposure: cries pulled below ``m_in``, non-cry sounds pushed above ``m_out``."""
    energy = -torch.logsumexp(reason_logits, dim=1)
    m_in, m_out = margins
    return torch.where(is_cry, F.relu(energy - m_in) ** 2, F.relu(m_out - energy) ** 2).mean()


def crop(mel: NDArray[np.float32], rng: np.random.Generator, min_frames: int = 140) -> NDArray[np.float32]:
    """A random 1.4-3 s window (the same length for the whole batch), so the model meets segments of any length."""
    length = int(rng.integers(min_frames, mel.shape[1] + 1))
    start = int(rng.integers(0, mel.shape[1] - length + 1))
    return mel[:, start : start + length]


def train(net: nets.CryNet, data: Batch, recipe: Recipe, params: list[torch.nn.Parameter] | None = None) -> list[float]:
    """Adam over ``params`` (all parameters by default), cosine schedule; returns the loss per epoch."""
    rng = np.random.default_rng(SEED)
    chosen = params if params is not None else list(net.parameters())
    optimizer = torch.optim.AdamW(chosen, lr=recipe.lr, weight_decay=1e-4)
    steps = recipe.epochs * max(1, len(data.labels) // recipe.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps)
    history = []
    net.train()
    for _ in range(recipe.epochs):
        order = rng.permutation(len(data.labels))
        total = 0.0
        for i in range(0, len(order) - recipe.batch + 1, recipe.batch):
            index = order[i : i + recipe.batch]
            window = crop(np.concatenate([data.mel[index], data.clean[index]], axis=2), rng)
            mel, clean = torch.from_numpy(window[..., :64]), torch.from_numpy(window[..., 64:])
            loss = losses(net, mel, clean, torch.from_numpy(data.labels[index]), recipe)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        history.append(total / max(1, len(order) // recipe.batch))
    net.eval()
    return history


@torch.no_grad()
def outputs(net: nets.CryNet, mel: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Cry probability [N] and reason logits [N, 5]."""
    net.eval()
    frames = torch.full((len(mel),), mel.shape[1], dtype=torch.long)
    cry_logit, reason_logits = net(torch.from_numpy(mel), frames)
    return torch.sigmoid(cry_logit).numpy(), reason_logits.numpy()


@dataclass(frozen=True)
class Operating:
    temperature: float
    energy_threshold: float


def operating_point(net: nets.CryNet, val: Batch) -> Operating:
    _, logits = outputs(net, val.mel)
    cries = val.labels >= 0
    temperature = calibration.fit_temperature(logits[cries], val.labels[cries])
    threshold = calibration.energy_threshold(calibration.energy(logits[cries], temperature))
    return Operating(temperature, threshold)


def figures(net: nets.CryNet, test: Batch, ood: Batch, point: Operating) -> dict[str, float]:
    cry_p, logits = outputs(net, test.mel)
    cries = test.labels >= 0
    probs = calibration.probabilities(logits[cries], point.temperature)
    raw = calibration.probabilities(logits[cries], 1.0)
    predicted = probs.argmax(axis=1)
    test_energy = calibration.energy(logits[cries], point.temperature)
    ood_cry_p, ood_logits = outputs(net, ood.mel)
    ood_energy = calibration.energy(ood_logits, point.temperature)
    ood_flagged = (ood_cry_p < 0.5) | (ood_energy > point.energy_threshold)
    return {
        "macro_f1": calibration.macro_f1(predicted, test.labels[cries], len(REASONS)),
        "accuracy": float(np.mean(predicted == test.labels[cries])),
        "ece": calibration.ece(probs, test.labels[cries]),
        "ece_uncalibrated": calibration.ece(raw, test.labels[cries]),
        "cry_f1": calibration.binary_f1(cry_p >= 0.5, cries),
        "ood_auroc": calibration.auroc(ood_energy, test_energy),
        "ood_abstained_or_rejected": float(np.mean(ood_flagged)),
        "cries_abstained": float(np.mean(test_energy > point.energy_threshold)),
    }


def state_bytes(net: nets.CryNet) -> bytes:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/trained"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    recipe = Recipe()
    key = recipe.key()
    folder = args.out / FOLDER
    if not args.force and trained_up_to_date([folder / WEIGHTS], folder / PROVENANCE, key):
        print(f"cry: up to date ({folder})")
        return 0
    began = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_set = to_batch(recordings(families(0, recipe.train_families, corpus.TRAIN_BACKGROUNDS),
                                    recipe.cries_per_family, recipe.quiet_per_family,
                                    recipe.distractors_per_family))  # fmt: skip
    val = to_batch(recordings(families(1000, recipe.val_families, corpus.EVAL_BACKGROUNDS),
                              recipe.eval_cries_per_family, recipe.eval_quiet_per_family))  # fmt: skip
    test = to_batch(recordings(families(2000, recipe.test_families, corpus.EVAL_BACKGROUNDS),
                               recipe.eval_cries_per_family, recipe.eval_quiet_per_family))  # fmt: skip
    ood = to_batch(ood_recordings(recipe.ood))
    data_s = time.perf_counter() - began
    net = nets.CryNet(nets.Architecture())
    history = train(net, train_set, recipe)
    point = operating_point(net, val)
    metrics = figures(net, test, ood, point)
    write_trained(folder / WEIGHTS, state_bytes(net))
    provenance = {
        "key": key,
        "model_version": "cry-central",
        "round": 0,
        "published_unix_ms": int(time.time() * 1000),
        "architecture": nets.Architecture().to_json(),
        "reasons": list(REASONS),
        "temperature": point.temperature,
        "energy_threshold": point.energy_threshold,
        "figures": metrics,
        "loss": [round(x, 4) for x in history],
        "recipe": recipe.__dict__,
        "seed": SEED,
        "data": {
            "cries": "synthetic vocalisations (tessera.cry.vocalisation): the reason labels are synthetic",
            "train_backgrounds": list(corpus.TRAIN_BACKGROUNDS),
            "eval_backgrounds": list(corpus.EVAL_BACKGROUNDS),
            "ood": [*corpus.OOD_SOUNDS, *corpus.OOD_SPEECH],
        },
        "digest": hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest(),
        "seconds": {"data": round(data_s, 1), "total": round(time.perf_counter() - began, 1)},
        "torch": torch.__version__,
    }
    write_trained(folder / PROVENANCE, json.dumps(provenance, indent=1).encode())
    print(f"cry: trained in {time.perf_counter() - began:.0f} s; test {metrics} -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
