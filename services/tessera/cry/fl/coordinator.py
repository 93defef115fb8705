"""The coordinator's model: the central backbone plus the global adapters, and what a round's aggregate must pass
before it becomes the served model.

A round's secure mean delta is refused (the reason logged, the global model left as it was) when it fails
``federation.check_update`` (tensors, shapes, finite, norm bound) or when it costs more than ``max_f1_drop`` of
validation macro-F1. An accepted round is calibrated on the coordinator's validation families (temperature, energy
threshold) and published as the next ``cry_classifier`` version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tessera.cry import federation, nets, training
from tessera.cry.fl import data, publish
from tessera.cry.fl.settings import CLASSIFIER, FederationSettings
from tessera.runtime.model_repository import trained_dir

log = logging.getLogger("tessera.cry.fl")


def base_model_dir(settings: FederationSettings) -> Path:
    return settings.base_model or trained_dir() / training.FOLDER


def load_base(settings: FederationSettings) -> tuple[nets.CryNet, dict[str, Any]]:
    """The central model (backbone and adapters); with ``reset_adapters``, its adapters back at their init."""
    folder = base_model_dir(settings)
    provenance: dict[str, Any] = json.loads((folder / training.PROVENANCE).read_text())
    net = nets.CryNet(nets.Architecture(**provenance["architecture"]))
    net.load_state_dict(torch.load(folder / training.WEIGHTS, map_location="cpu", weights_only=True))
    if settings.reset_adapters:
        nets.reset_adapters(net, settings.seed)
    net.eval()
    return net, provenance


@dataclass
class RoundOutcome:
    round: int
    accepted: bool
    reason: str = ""  # why it was refused
    figures: dict[str, float] = field(default_factory=dict)  # validation figures of the model served after it
    clients_aggregated: int = 0
    clients_dropped: int = 0
    version: int | None = None  # published Triton version


class Coordinator:
    def __init__(self, settings: FederationSettings) -> None:
        self.settings = settings
        self.net, self.base_provenance = load_base(settings)
        self.names = nets.adapter_names(self.net)
        self.global_adapters = federation.adapters(self.net)
        self.point, self.figures = self._evaluate()
        self.history: list[RoundOutcome] = []

    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(self.global_adapters[n].shape) for n in self.names]

    def global_list(self) -> list[NDArray[np.float32]]:
        return [self.global_adapters[n] for n in self.names]

    def _evaluate(self) -> tuple[training.Operating, dict[str, float]]:
        val = data.validation_batch()
        point = training.operating_point(self.net, val)
        return point, training.figures(self.net, val, data.ood_batch(), point)

    def apply(
        self, round_number: int, mean_delta: list[NDArray[np.float32]], aggregated: int, dropped: int
    ) -> RoundOutcome:
        outcome = RoundOutcome(round_number, False, clients_aggregated=aggregated, clients_dropped=dropped)
        try:
            if len(mean_delta) != len(self.names):
                raise federation.UpdateRejected(f"{len(mean_delta)} tensors, the adapters have {len(self.names)}")
            delta = dict(zip(self.names, (np.asarray(d, np.float32) for d in mean_delta), strict=True))
            federation.check_update(delta, self.global_adapters, self.settings.max_update_norm)
        except federation.UpdateRejected as exc:
            return self._refuse(outcome, f"aggregate refused: {exc}")
        candidate = {n: self.global_adapters[n] + delta[n] for n in self.names}
        federation.load_adapters(self.net, candidate)
        point, figures = self._evaluate()
        floor = self.figures["macro_f1"] - self.settings.max_f1_drop
        if figures["macro_f1"] < floor:
            federation.load_adapters(self.net, self.global_adapters)
            return self._refuse(outcome, f"validation macro-F1 {figures['macro_f1']:.3f} is below {floor:.3f}")
        self.global_adapters, self.point, self.figures = candidate, point, figures
        outcome.accepted, outcome.figures = True, figures
        outcome.version = self._publish(outcome)
        self.history.append(outcome)
        log.info("round %d accepted: validation %s", round_number, {k: round(v, 3) for k, v in figures.items()})
        return outcome

    def _refuse(self, outcome: RoundOutcome, reason: str) -> RoundOutcome:
        outcome.reason = reason
        outcome.figures = self.figures
        self.history.append(outcome)
        log.warning("round %d: %s; the global model stays as it was", outcome.round, reason)
        return outcome

    def provenance(self, outcome: RoundOutcome, digest: str) -> dict[str, Any]:
        return self.base_provenance | {
            "model_version": f"cry-r{outcome.round}",
            "round": outcome.round,
            "published_unix_ms": int(time.time() * 1000),
            "temperature": self.point.temperature,
            "energy_threshold": self.point.energy_threshold,
            "figures": self.figures,
            "figures_on": "coordinator validation families",
            "clients_aggregated": outcome.clients_aggregated,
            "clients_dropped": outcome.clients_dropped,
            "digest": digest,
            "federation": {"base": self.base_provenance.get("model_version"), "seed": self.settings.seed},
        }

    def _publish(self, outcome: RoundOutcome) -> int | None:
        repository = self.settings.model_repository
        if repository is None:
            return None
        weights = training.state_bytes(self.net)
        digest = hashlib.sha256(weights).hexdigest()
        version = publish.write_version(repository / CLASSIFIER, weights, self.provenance(outcome, digest))
        if self.settings.triton_http_url:
            try:
                publish.load(self.settings.triton_http_url, CLASSIFIER)
            except publish.PublishError as exc:  # the round stands; Triton picks the version up on its next load
                log.error("round %d: version %d written but not loaded: %s", outcome.round, version, exc)
        log.info("round %d published as %s version %d", outcome.round, CLASSIFIER, version)
        return version
