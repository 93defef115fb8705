"""The federation's wire codec (masked vectors in the modulus' width), its settings arithmetic, the adapters'
reset, and the Triton version publisher (on a real folder)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.cry import nets
from tessera.cry.fl import codec, publish
from tessera.cry.fl.settings import FederationSettings
from tessera.runtime import config


def test_values_of_z_2_16_travel_in_two_bytes_and_come_back_exactly() -> None:
    rng = np.random.default_rng(1)
    arrays = [np.array([37]), rng.integers(0, 2**16, (192, 4)), rng.integers(0, 2**16, (5,))]
    blobs = codec.pack(arrays, 2**16)
    assert sum(len(b) for b in blobs) == 2 * (1 + 192 * 4 + 5) + sum(1 + 4 * a.ndim for a in arrays)
    back = codec.unpack(blobs, 2**16, [(1,), (192, 4), (5,)])
    assert all(np.array_equal(a, b) and b.dtype == np.int64 for a, b in zip(arrays, back, strict=True))


@pytest.mark.parametrize(("modulus", "width"), [(2**8, 1), (2**12, 2), (2**16, 2), (2**32, 4), (2**33, 8)])
def test_the_word_is_the_narrowest_that_holds_the_modulus(modulus: int, width: int) -> None:
    assert codec.word_dtype(modulus).itemsize == width


def test_pack_refuses_values_outside_the_modulus() -> None:
    with pytest.raises(ValueError, match="outside"):
        codec.pack([np.array([70000])], 2**16)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: [b[0], b[1][:-3]], "value bytes"),
        (lambda b: [b[0], b[1] + b"\x00\x00"], "value bytes"),
        (lambda b: [b[0]], "expects 2"),
        (lambda b: [b[0], b[1], b[1]], "expects 2"),
        (lambda b: [b[0], b""], "empty"),
        (lambda b: [b[0], bytes([9]) + b[1][1:]], "header"),
        (lambda b: [b[0], struct.pack("<B2I", 2, 4, 2) + bytes(16)], "shape"),
    ],
)
def test_a_malformed_upload_is_named(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    blobs = codec.pack([np.array([3]), np.arange(8).reshape(2, 4)], 2**16)
    with pytest.raises(codec.MalformedUpdate, match=message):
        codec.unpack(mangle(blobs), 2**16, [(1,), (2, 4)])


def test_values_beyond_a_modulus_that_is_not_a_power_of_two_are_refused() -> None:
    blob = struct.pack("<BI", 1, 1) + np.array([1500], "<u2").tobytes()
    with pytest.raises(codec.MalformedUpdate, match="outside"):
        codec.unpack([blob], 1000)


def test_clipping_range_follows_adam_steps_and_the_modulus_bounds_clients_per_round() -> None:
    s = config.load(FederationSettings, lr=0.005, local_epochs=2, max_weight=64, batch=16)
    assert s.clipping_range == pytest.approx(0.005 * 2 * 4)
    assert s.max_clients_per_round == (2**16 - 1) // 255
    with pytest.raises(config.ConfigError, match="too few clients"):
        config.load(FederationSettings, modulus_range=2**10, quantization_range=255, families=10)


def test_run_config_keys_are_kebab_case() -> None:
    s = FederationSettings.from_run_config({"rounds": 3, "local-epochs": 4, "inject-dropout": 0.3, "other": 1})
    assert (s.rounds, s.local_epochs, s.inject_dropout) == (3, 4, 0.3)


def test_reset_adapters_leaves_the_backbone_and_zeroes_lora_b() -> None:
    net = nets.CryNet(nets.Architecture())
    with torch.no_grad():
        for p in nets.adapter_parameters(net):
            p.add_(1.0)
    backbone = {n: p.clone() for n, p in net.named_parameters() if n not in set(nets.adapter_names(net))}
    nets.reset_adapters(net, seed=3)
    named = dict(net.named_parameters())
    assert all(torch.equal(named[n], v) for n, v in backbone.items())
    assert all(float(named[n].detach().abs().max()) == 0 for n in named if n.endswith("lora_b"))
    assert all(float(named[n].detach().abs().max()) < 1 for n in named if n.startswith("reason_head"))
    again = nets.CryNet(nets.Architecture())
    nets.reset_adapters(again, seed=3)
    assert torch.equal(dict(again.named_parameters())["reason_head.weight"], named["reason_head.weight"])


def _model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "cry_classifier"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "cry_classifier"\n')
    (model / "1" / "cry.pt").write_bytes(b"central")
    (model / "1" / "model.py").write_text("# version 1's model code\n")
    return model


def test_each_published_round_is_a_new_whole_version_and_version_1_is_kept(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    numbers = [publish.write_version(model, f"w{i}".encode(), {"round": i}, keep=2) for i in range(1, 5)]
    assert numbers == [2, 3, 4, 5]
    assert publish.versions(model) == [1, 4, 5]  # the newest two, and the central version
    assert (model / "1" / "cry.pt").read_bytes() == b"central"
    assert (model / "5" / "cry.pt").read_bytes() == b"w4" and json.loads((model / "5" / "cry.json").read_text())[
        "round"
    ] == 4
    assert (model / "5" / "model.py").read_text() == "# version 1's model code\n"  # the code version 1 serves
    assert not list(model.glob(".staging-*"))


def test_publishing_outside_a_model_folder_and_to_an_absent_triton_is_named(tmp_path: Path) -> None:
    with pytest.raises(publish.PublishError, match="not a Triton model folder"):
        publish.write_version(tmp_path, b"w", {})
    with pytest.raises(publish.PublishError, match="unreachable"):
        publish.load("http://127.0.0.1:9", "cry_classifier", timeout_s=2)
