"""The federation's arithmetic, apart from the engine that carries it (pure torch/numpy; Flower comes on top).

Only the adapters travel (``nets.adapter_names``: LoRA factors and the heads). A family's device:

1. loads the global adapters into its copy of the network (the frozen backbone ships with the device package);
2. trains the adapters on its own recordings with a FedProx proximal term, mu/2 ||w - w_global||^2, which keeps a
   family with an unusual class mix from pulling the shared model too far;
3. sends the delta (local - global), 8-bit quantised per tensor with a scale (``quantise``).

The server checks each update it can see before it counts (``check_update``: names, shapes, finite values, a norm
bound) and adds the examples-weighted mean delta to the global adapters (``aggregate``). Under secure aggregation
it sees only the sum, so the same checks apply to the sum and, on the devices, to each delta before it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from tessera.cry import nets, training

Arrays = dict[str, NDArray[np.float32]]


def adapters(net: nets.CryNet) -> Arrays:
    """The adapters' current values, by parameter name (copies)."""
    named = dict(net.named_parameters())
    return {name: named[name].detach().cpu().numpy().astype(np.float32).copy() for name in nets.adapter_names(net)}


def load_adapters(net: nets.CryNet, values: Mapping[str, NDArray[np.float32]]) -> None:
    named = dict(net.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            named[name].copy_(torch.from_numpy(np.asarray(value, np.float32)))


@dataclass(frozen=True)
class Quantised:
    codes: dict[str, NDArray[np.int8]]
    scales: dict[str, float]  # value = code x scale

    def nbytes(self) -> int:
        """Payload bytes: one byte per value and four per scale."""
        return sum(c.nbytes for c in self.codes.values()) + 4 * len(self.scales)


def quantise(delta: Mapping[str, NDArray[np.float32]]) -> Quantised:
    """Symmetric 8-bit per tensor: scale = max |x| / 127, codes = round(x / scale) in [-127, 127]."""
    codes: dict[str, NDArray[np.int8]] = {}
    scales: dict[str, float] = {}
    for name, value in delta.items():
        peak = float(np.max(np.abs(value))) if value.size else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        codes[name] = np.clip(np.round(value / scale), -127, 127).astype(np.int8)
        scales[name] = scale
    return Quantised(codes, scales)


def dequantise(update: Quantised) -> Arrays:
    return {name: code.astype(np.float32) * np.float32(update.scales[name]) for name, code in update.codes.items()}


class UpdateRejected(ValueError):
    """An update that must not count: the reason is logged, the global model is left as it was."""


def check_update(
    delta: Mapping[str, NDArray[np.float32]], reference: Mapping[str, NDArray[np.float32]], max_norm: float
) -> None:
    """Raises ``UpdateRejected`` for a delta with other tensors or shapes than the adapters, non-finite values, or
    an L2 norm above ``max_norm`` (a poisoned or diverged update)."""
    if set(delta) != set(reference):
        missing, extra = sorted(set(reference) - set(delta)), sorted(set(delta) - set(reference))
        raise UpdateRejected(f"tensors differ from the adapters (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, value in delta.items():
        if value.shape != reference[name].shape:
            raise UpdateRejected(f"{name}: shape {list(value.shape)}, the adapter's is {list(reference[name].shape)}")
        if not np.all(np.isfinite(value)):
            raise UpdateRejected(f"{name}: values that are not finite")
    norm = float(np.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in delta.values())))
    if norm > max_norm:
        raise UpdateRejected(f"norm {norm:.3g} is above the bound {max_norm:.3g}")


def aggregate(
    global_adapters: Mapping[str, NDArray[np.float32]], deltas: Sequence[Arrays], examples: Sequence[int]
) -> Arrays:
    """The global adapters plus the examples-weighted mean of the deltas (FedAvg of deltas)."""
    if not deltas or len(deltas) != len(examples) or sum(examples) <= 0:
        raise ValueError("aggregate needs at least one delta and a positive number of examples")
    weights = np.asarray(examples, np.float64) / float(sum(examples))
    return {
        name: (value + sum(w * d[name] for w, d in zip(weights, deltas, strict=True))).astype(np.float32)
        for name, value in global_adapters.items()
    }


def local_update(
    net: nets.CryNet,
    mel: NDArray[np.float32],
    labels: NDArray[np.int64],
    *,
    epochs: int,
    mu: float,
    lr: float = 2e-3,
    batch: int = 16,
    seed: int = 0,
    energy_weight: float = training.Recipe.energy_weight,
    energy_margins: tuple[float, float] = training.Recipe.energy_margins,
) -> tuple[Arrays, float]:
    """Train the adapters of ``net`` (holding the global adapters) on one family's log-mel [N, T, 64] and labels
    (reason index, or -1 for no cry) with the central recipe's losses (cry, reason, energy hinge) and the FedProx
    term; returns (delta, mean loss of the last epoch). ``net`` keeps the trained adapters."""
    nets.freeze_backbone(net)
    start = {name: torch.from_numpy(v) for name, v in adapters(net).items()}
    named = dict(net.named_parameters())
    params = [named[n] for n in start]
    optimizer = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    last = 0.0
    net.train()
    for _ in range(max(1, epochs)):
        order = rng.permutation(len(labels))
        total, steps = 0.0, 0
        for i in range(0, len(order), batch):
            index = order[i : i + batch]
            x = torch.from_numpy(mel[index])
            y = torch.from_numpy(labels[index])
            cry_logit, reason_logits = net(x, torch.full((len(index),), x.shape[1], dtype=torch.long))
            is_cry = y >= 0
            loss = F.binary_cross_entropy_with_logits(cry_logit, is_cry.float())
            if is_cry.any():
                loss = loss + F.cross_entropy(reason_logits[is_cry], y[is_cry])
            if energy_weight:
                loss = loss + energy_weight * training.energy_hinge(reason_logits, is_cry, energy_margins)
            proximal = sum(torch.sum((named[n] - start[n]) ** 2) for n in start)
            loss = loss + mu / 2 * proximal
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach())
            steps += 1
        last = total / max(1, steps)
    net.eval()
    trained = adapters(net)
    return {n: trained[n] - start[n].numpy() for n in start}, last
