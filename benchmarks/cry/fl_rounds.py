"""The federation's figures for ``make bench-cry``: Flower rounds (SecAgg+, 8-bit adapter deltas) against
centralised training of the same adapters on the same families' pooled recordings, with 0% and 30% of each round's
sampled families dropping out mid-round, and each client's upload per round measured as Flower serialises it.

Both start from the central backbone with fresh adapters (``reset_adapters``) and train with the same losses,
optimiser, learning rate and batch; the centralised run gets as many passes over each family's recordings as the
federation gives it on average (rounds x local epochs x fraction sampled). Both are calibrated on the
coordinator's validation families and scored on the held-out test families. One run of either moves test macro-F1
by a few points (fresh adapters, sampling, non-IID families), so the gap is the mean over ``SEEDS``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.serde import recorddict_to_proto
from flwr.compat.common import recorddict_compat

from tessera.cry import federation, nets, training
from tessera.cry.fl import coordinator, data, simulation
from tessera.cry.fl.settings import FederationSettings
from tessera.runtime import config


def fedavg_reply_bytes(arrays: list[np.ndarray]) -> int:
    """What a plain (no SecAgg+) Flower client's fit reply carrying ``arrays`` weighs, serialised."""
    fit = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 38, {})
    return recorddict_to_proto(recorddict_compat.fitres_to_recorddict(fit, keep_input=True)).ByteSize()


def test_figures(net: nets.CryNet) -> dict[str, float]:
    point = training.operating_point(net, data.validation_batch())
    return training.figures(net, data.test_batch(), data.ood_batch(), point)


SEEDS = (2512, 2513, 2514)


def rounds_to_converge(curve: list[float], within: float = 0.01) -> int:
    """First round whose validation macro-F1 is within ``within`` of the best the run reached."""
    best = max(curve)
    return next(i + 1 for i, f in enumerate(curve) if f >= best - within)


def federated(settings: FederationSettings) -> dict[str, Any]:
    began = time.perf_counter()
    record = simulation.run(settings)
    assert record.coordinator is not None
    history = record.coordinator.history
    curve = [o.figures.get("macro_f1", 0.0) for o in history]
    uploads = [b for r in record.wire.sent for b in record.wire.per_client(r)]
    return {
        "seed": settings.seed,
        "rounds": settings.rounds,
        # SecAgg+ finished and the mean reached the coordinator (a halted round never does)
        "rounds_aggregated": sum(o.clients_aggregated > 0 for o in history),
        "rounds_accepted": sum(o.accepted for o in history),  # passed the coordinator's checks and gate
        "clients_aggregated": [o.clients_aggregated for o in history],
        "clients_dropped": [o.clients_dropped for o in history],
        "validation_macro_f1_by_round": [round(f, 4) for f in curve],
        "rounds_to_converge": rounds_to_converge(curve),
        "test": test_figures(record.coordinator.net),
        "upload_bytes_per_client_round": {"median": statistics.median(uploads), "max": max(uploads)},
        "seconds": round(time.perf_counter() - began, 1),
    }


def centralised(settings: FederationSettings) -> dict[str, Any]:
    began = time.perf_counter()
    net, _ = coordinator.load_base(settings)
    batches = [data.device_batch(p) for p in range(settings.families)]
    epochs = max(1, round(settings.rounds * settings.local_epochs * settings.fraction_fit))
    federation.local_update(
        net,
        np.concatenate([b.mel for b in batches]),
        np.concatenate([b.labels for b in batches]),
        epochs=epochs,
        mu=0.0,
        lr=settings.lr,
        batch=settings.batch,
        seed=settings.seed,
    )
    return {
        "seed": settings.seed,
        "epochs": epochs,
        "test": test_figures(net),
        "seconds": round(time.perf_counter() - began, 1),
    }


def mean_test(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.fmean(r["test"][k] for r in runs) for k in runs[0]["test"]}


def run(rounds: int, families: int) -> dict[str, Any]:
    def settings(seed: int, dropout: float = 0.0) -> FederationSettings:
        return config.load(FederationSettings, rounds=rounds, families=families, seed=seed, inject_dropout=dropout)

    fl_runs = [federated(settings(seed)) for seed in SEEDS]
    central_runs = [centralised(settings(seed)) for seed in SEEDS]
    fl_dropout = federated(settings(SEEDS[0], dropout=0.3))
    fl, central = mean_test(fl_runs), mean_test(central_runs)
    gaps = [c["test"]["macro_f1"] - f["test"]["macro_f1"] for c, f in zip(central_runs, fl_runs, strict=True)]
    net, _ = coordinator.load_base(settings(SEEDS[0]))
    adapters = [v for v in federation.adapters(net).values()]
    full = [p.detach().numpy() for p in net.state_dict().values()]
    wire = {
        "full_fp32": fedavg_reply_bytes(full),
        "adapters_fp32": fedavg_reply_bytes(adapters),
        "adapters_8bit_secagg": statistics.median(r["upload_bytes_per_client_round"]["median"] for r in fl_runs),
    }
    chosen = settings(SEEDS[0])
    return {
        "settings": chosen.model_dump(mode="json") | {"clipping_range": chosen.clipping_range, "seeds": SEEDS},
        "federated_mean": fl,
        "centralised_mean": central,
        "federated_runs": fl_runs,
        "centralised_runs": central_runs,
        "federated_30pct_dropout": fl_dropout,
        "macro_f1_gap": statistics.fmean(gaps),
        "macro_f1_gap_by_seed": gaps,
        "upload_wire_bytes": wire,
        "upload_reduction_x": wire["full_fp32"] / wire["adapters_8bit_secagg"],
    }
