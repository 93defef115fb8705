"""The model repository's trained-weights entries (the av_fusion weights come from the training script)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tessera.runtime import model_repository as repo

CONFIG = """
name: "tiny"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def _model(root: Path, weights: list[dict[str, str]]) -> None:
    folder = root / "cap" / "models" / "tiny"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(CONFIG)
    (folder / "1" / "model.py").write_text("class TritonPythonModel: ...\n")
    (folder / "weights.json").write_text(json.dumps(weights))


ENTRY = {"trained": "tessera.monitoring.training", "path": "tiny/w.pt", "dest": "w.pt"}


def test_trained_weights_are_checked_against_their_digest(tmp_path: Path) -> None:
    _model(tmp_path / "src", [ENTRY])
    trained = tmp_path / "trained" / "tiny"
    trained.mkdir(parents=True)
    (trained / "w.pt").write_bytes(b"weights")
    (trained / "w.pt.sha256").write_text(hashlib.sha256(b"weights").hexdigest() + "  w.pt\n")
    built = repo.build(tmp_path / "out", services_root=tmp_path / "src", trained_root=tmp_path / "trained")
    assert (built["tiny"] / "1" / "w.pt").read_bytes() == b"weights"
    (trained / "w.pt").write_bytes(b"tampered")
    with pytest.raises(repo.ModelRepositoryError, match="sha256 mismatch"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src", trained_root=tmp_path / "trained")


def test_missing_trained_weights_name_the_module_that_makes_them(tmp_path: Path) -> None:
    _model(tmp_path / "src", [ENTRY])
    with pytest.raises(repo.ModelRepositoryError, match=r"python -m tessera\.monitoring\.training"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src", trained_root=tmp_path / "none")


def test_an_entry_is_a_package_file_or_a_trained_file(tmp_path: Path) -> None:
    _model(tmp_path / "src", [{"path": "w.pt", "dest": "w.pt"}])
    with pytest.raises(repo.ModelRepositoryError, match="exactly one of package or trained"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src")
    with pytest.raises(repo.ModelRepositoryError, match="needs its sha256"):
        repo.WeightFile(path="a", dest="b", package="tessera")


def test_the_av_fusion_manifest_names_trained_files() -> None:
    folder = repo.discover()["av_fusion"]
    weights = repo.read_weights(folder)
    assert {w.dest for w in weights} == {"av_fusion.pt", "av_fusion.json"}
    assert all(w.trained == "tessera.monitoring.training" and not w.package for w in weights)
