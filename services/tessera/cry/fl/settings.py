"""``TESSERA_CRY_FL_*``: the federation's settings (the ServerApp also reads them from Flower's run config)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CLASSIFIER = "cry_classifier"


class FederationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_CRY_FL_", extra="ignore")

    rounds: int = Field(12, ge=1, le=10_000)
    # Simulated devices (make run, the benchmark); deployed, the devices a round waits for (fraction_fit of them).
    families: int = Field(10, ge=2, le=255)
    fraction_fit: float = Field(0.6, gt=0, le=1)  # sampled per round
    min_fit_clients: int = Field(3, ge=2, le=255)  # SecAgg+ needs at least 3 for a threshold below all
    local_epochs: int = Field(2, ge=1, le=50)
    lr: float = Field(5e-3, gt=0, le=1)
    batch: int = Field(16, ge=1, le=1024)
    proximal_mu: float = Field(0.01, ge=0)  # FedProx: mu/2 ||w - w_global||^2
    # SecAgg+: 8-bit stochastic quantisation of the weighted delta, masked in Z_(2^16): sums of up to 255 clients.
    quantization_range: int = Field(255, ge=15, le=2**22)
    modulus_range: int = Field(2**16, ge=2**8, le=2**32)
    reconstruction_threshold: float = Field(0.6, gt=0, le=1)  # of the sampled clients, to unmask
    max_weight: float = Field(64.0, ge=1)  # recordings a device trains on per round (and SecAgg+'s weight scale)
    stage_timeout_s: float = Field(120.0, gt=0)  # a client silent this long in a SecAgg+ stage has dropped
    max_update_norm: float = Field(5.0, gt=0)  # of the aggregated delta; above it the round is rejected
    max_f1_drop: float = Field(0.05, ge=0, le=1)  # validation macro-F1 a round may lose before it is rejected
    reset_adapters: bool = True  # start the adapters from scratch on the central backbone (the FL experiment)
    seed: int = 2512
    # Fault injection (benchmarks and tests): the fraction of each round's sampled clients told to fail mid-round.
    inject_dropout: float = Field(0.0, ge=0, lt=1)
    # Where finished rounds go: a Triton model repository (its cry_classifier gets a new version) and the Triton
    # that serves it (HTTP, e.g. http://127.0.0.1:8000); empty: not published.
    model_repository: Path | None = None
    triton_http_url: str = ""
    base_model: Path | None = None  # the central model's folder (cry.pt, cry.json); default: the repository's

    @property
    def clipping_range(self) -> float:
        """Adam moves a coordinate about ``lr`` per step, so a round's delta lies within +-lr x local steps."""
        return self.lr * self.local_epochs * math.ceil(self.max_weight / self.batch)

    @property
    def max_clients_per_round(self) -> int:
        """The most clients whose quantised values sum without wrapping around the modulus."""
        return (self.modulus_range - 1) // self.quantization_range

    @model_validator(mode="after")
    def _sums_fit(self) -> FederationSettings:
        if self.max_clients_per_round < max(self.min_fit_clients, round(self.fraction_fit * self.families)):
            raise ValueError("modulus_range / quantization_range leaves too few clients per round")
        return self

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> FederationSettings:
        """Flower's run config uses kebab-case keys (``num-rounds`` style); unknown keys are ignored."""
        return cls(**{str(k).replace("-", "_"): v for k, v in config.items()})  # type: ignore[arg-type]
