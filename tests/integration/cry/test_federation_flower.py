"""The cry federation on Flower's real engine (ServerApp, ClientApps, SecAggPlusWorkflow) in one process: the server
only ever holds masked vectors and their sum, rounds survive drop-outs and hostile devices, accepted rounds are
published as model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tessera.cry import federation
from tessera.cry.fl import coordinator, simulation, wire
from tessera.cry.fl.client_app import Behaviour
from tessera.cry.fl.server_app import FederationRun
from tessera.cry.fl.settings import FederationSettings
from tessera.runtime import config
from tessera.runtime.model_repository import build


class Recorded:
    def __init__(self) -> None:
        self.client_deltas: list[tuple[list[np.ndarray], int]] = []  # (delta, examples) as each device computed it
        self.received: list[list[np.ndarray]] = []  # every masked vector the server got, unpacked
        self.means: list[list[np.ndarray]] = []  # what the coordinator was handed


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederationRun, Recorded, FederationSettings, Path]:
    repo = tmp_path_factory.mktemp("cry-fl-repo")
    build(repo, only=["cry_classifier"])
    settings = config.load(FederationSettings, rounds=2, families=4, fraction_fit=1.0, model_repository=repo)
    seen = Recorded()
    with pytest.MonkeyPatch.context() as patch:
        local_update = federation.local_update

        def recording_update(net: Any, mel: np.ndarray, labels: np.ndarray, **kw: Any) -> Any:
            delta, loss = local_update(net, mel, labels, **kw)
            seen.client_deltas.append(([delta[n] for n in delta], len(labels)))
            return delta, loss

        accept = wire.WireGrid._accept

        def recording_accept(self: wire.WireGrid, reply: Any, sent: Any) -> Any:
            out = accept(self, reply, sent)
            configs = None if out.has_error() else out.content.config_records.get("secaggplus_configs")
            if configs is not None and "masked_params" in configs:
                from flwr.common import bytes_to_ndarray

                seen.received.append([bytes_to_ndarray(b) for b in configs["masked_params"]])
            return out

        apply = coordinator.Coordinator.apply

        def recording_apply(self: coordinator.Coordinator, round_number: int, mean: Any, *a: Any) -> Any:
            seen.means.append([np.array(m) for m in mean])
            return apply(self, round_number, mean, *a)

        patch.setattr(federation, "local_update", recording_update)
        patch.setattr(wire.WireGrid, "_accept", recording_accept)
        patch.setattr(coordinator.Coordinator, "apply", recording_apply)
        record = simulation.run(settings)
    return record, seen, settings, repo


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def test_the_server_holds_masked_vectors_and_the_sum_never_a_clients_delta(honest_run: Any) -> None:
    _, seen, settings, _ = honest_run
    assert len(seen.client_deltas) == 8 and len(seen.received) == 8 and len(seen.means) == 2
    for masked in seen.received:
        values = _flat(masked[1:])
        # uniform over Z_m: nothing like an 8-bit code centred on 127 is visible
        assert values.min() >= 0 and values.max() < settings.modulus_range
        assert abs(values.mean() / settings.modulus_range - 0.5) < 0.05 and values.std() > settings.modulus_range / 4
        for delta, _ in seen.client_deltas:
            assert abs(np.corrcoef(values, _flat(delta))[0, 1]) < 0.1
    # ... and what they sum to is the examples-weighted mean of the deltas, to within 8-bit quantisation
    first_round = seen.client_deltas[:4]
    weights = np.array([n for _, n in first_round], np.float64)
    expected = sum(w * _flat(d) for (d, _), w in zip(first_round, weights, strict=True)) / weights.sum()
    got = _flat(seen.means[0])
    step = 2 * settings.clipping_range / settings.quantization_range / (weights.min() / settings.max_weight)
    assert np.max(np.abs(got - expected)) < step and np.corrcoef(got, expected)[0, 1] > 0.99


def test_uploads_are_small_on_the_wire_and_accepted_rounds_become_versions(honest_run: Any) -> None:
    record, _, _, repo = honest_run
    history = record.coordinator.history
    assert [(o.round, o.accepted, o.clients_aggregated, o.version) for o in history] == [
        (1, True, 4, 2),
        (2, True, 4, 3),
    ]
    assert history[1].figures["macro_f1"] > 0.3  # from reset adapters, two rounds already learn the reasons
    adapters = sum(a.size for a in record.coordinator.global_list())
    for sizes in record.wire.sent.values():
        assert len(sizes) == 4
        # all four SecAgg+ stages: two bytes per adapter value plus keys and shares, against four for fp32
        assert all(2 * adapters < b < 2.6 * adapters for b in sizes.values())
    published = repo / "cry_classifier" / "3" / "cry.json"
    import json

    info = json.loads(published.read_text())
    assert info["model_version"] == "cry-r2" and info["round"] == 2 and info["clients_aggregated"] == 4


def test_a_round_completes_with_secure_aggregation_when_30_percent_of_its_clients_drop_out() -> None:
    settings = config.load(FederationSettings, rounds=1, families=7, fraction_fit=1.0, inject_dropout=0.3)
    record = simulation.run(settings)
    (outcome,) = record.coordinator.history
    assert outcome.accepted and (outcome.clients_aggregated, outcome.clients_dropped) == (5, 2)


def test_malformed_oversized_and_poisoned_devices_never_reach_the_global_model() -> None:
    settings = config.load(FederationSettings, rounds=1, families=6, fraction_fit=1.0, reset_adapters=False)
    hostile = {0: Behaviour.MALFORMED, 1: Behaviour.OVERSIZED, 2: Behaviour.POISONED}
    record = simulation.run(settings, hostile)
    reasons = {node: why for _, node, why in record.wire.rejected}
    assert len(reasons) == 2
    assert any("value bytes" in why for why in reasons.values()) and any(
        "bytes, at most" in why for why in reasons.values()
    )
    (outcome,) = record.coordinator.history
    assert outcome.clients_dropped == 2
    before = coordinator.Coordinator(settings).figures["macro_f1"]
    # the poisoned delta is clipped by SecAgg+; the round is either refused or costs at most max_f1_drop
    assert record.coordinator.figures["macro_f1"] >= before - settings.max_f1_drop
    assert outcome.accepted or "refused" in outcome.reason or "below" in outcome.reason
