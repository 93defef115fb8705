"""The federation's arithmetic: only adapters move, 8-bit deltas stay close, bad updates are refused, FedProx pulls
a local update back towards the global model, and the weighted mean of deltas is FedAvg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tessera.cry import corpus, federation, nets, training


def _family_batch(family_id: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    family = corpus.make_family(family_id, 3)
    records = corpus.family_recordings(family, n, 2, seed=3, duration_s=1.6)
    mel = np.stack([training.features(r.audio) for r in records])
    return mel, np.array([r.label for r in records], np.int64)


def test_8_bit_deltas_are_close_and_a_quarter_of_fp32() -> None:
    rng = np.random.default_rng(0)
    delta = {"a": rng.normal(0, 0.01, (64, 4)).astype(np.float32), "b": np.zeros(5, np.float32)}
    q = federation.quantise(delta)
    back = federation.dequantise(q)
    assert all(c.dtype == np.int8 for c in q.codes.values())
    assert np.max(np.abs(back["a"] - delta["a"])) <= q.scales["a"] / 2 + 1e-9 and np.all(back["b"] == 0)
    assert q.nbytes() < sum(v.nbytes for v in delta.values()) / 3.5


def test_bad_updates_are_refused_with_the_reason() -> None:
    reference = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)}
    federation.check_update({"a": np.ones((2, 3), np.float32) * 0.1, "b": np.zeros(4, np.float32)}, reference, 1.0)
    cases = [
        ({"a": np.zeros((2, 3), np.float32)}, "missing"),
        ({"a": np.zeros((3, 2), np.float32), "b": np.zeros(4, np.float32)}, "shape"),
        ({"a": np.full((2, 3), np.nan, np.float32), "b": np.zeros(4, np.float32)}, "not finite"),
        ({"a": np.full((2, 3), 10, np.float32), "b": np.zeros(4, np.float32)}, "norm"),
    ]
    for delta, reason in cases:
        with pytest.raises(federation.UpdateRejected, match=reason):
            federation.check_update(delta, reference, 1.0)


def test_aggregate_is_the_examples_weighted_mean_of_deltas() -> None:
    base = {"w": np.zeros(3, np.float32)}
    out = federation.aggregate(base, [{"w": np.ones(3, np.float32)}, {"w": -np.ones(3, np.float32)}], [3, 1])
    assert np.allclose(out["w"], 0.5)
    with pytest.raises(ValueError):
        federation.aggregate(base, [], [])


def test_a_local_update_moves_only_adapters_and_the_proximal_term_holds_it_back() -> None:
    torch.manual_seed(0)
    mel, labels = _family_batch(11, 6)
    reference = nets.CryNet(nets.Architecture())
    backbone = {
        n: p.detach().clone() for n, p in reference.named_parameters() if n not in nets.adapter_names(reference)
    }
    sizes = {}
    for mu in (0.0, 50.0):
        net = nets.CryNet(nets.Architecture())
        net.load_state_dict(reference.state_dict())
        delta, loss = federation.local_update(net, mel, labels, epochs=2, mu=mu, seed=1)
        assert set(delta) == set(nets.adapter_names(net)) and np.isfinite(loss)
        after = dict(net.named_parameters())
        assert all(torch.equal(after[n], v) for n, v in backbone.items()), "the backbone never moves"
        sizes[mu] = float(np.sqrt(sum(np.sum(d**2) for d in delta.values())))
    assert 0 < sizes[50.0] < sizes[0.0]
