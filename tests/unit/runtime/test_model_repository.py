from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import tessera
from tessera.runtime import model_repository as repo

CONFIG = """
name: "tiny"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def _model(root: Path, config: str = CONFIG, weights: list[dict[str, str]] | None = None) -> Path:
    folder = root / "cap" / "models" / "tiny"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    (folder / "1" / "model.py").write_text("class TritonPythonModel: ...\n")
    if weights is not None:
        (folder / "weights.json").write_text(json.dumps(weights))
    return folder


def test_every_shipped_config_parses() -> None:
    found = repo.discover()
    assert "frame_relevance" in found
    for folder in found.values():
        config = repo.parse_config(folder / "config.pbtxt")
        assert config.input and config.output


def test_builds_with_checked_weights(tmp_path: Path) -> None:
    source = Path(tessera.__file__).parent / "runtime" / "errors.py"  # any file inside an installed package
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    _model(
        tmp_path / "src",
        weights=[{"package": "tessera", "path": "runtime/errors.py", "sha256": digest, "dest": "w/errors.py"}],
    )
    built = repo.build(tmp_path / "out", services_root=tmp_path / "src")
    assert (built["tiny"] / "1" / "w" / "errors.py").read_bytes() == source.read_bytes()
    assert not (built["tiny"] / "weights.json").exists()


def test_sha_mismatch_fails(tmp_path: Path) -> None:
    _model(
        tmp_path / "src", weights=[{"package": "tessera", "path": "runtime/errors.py", "sha256": "0" * 64, "dest": "w"}]
    )
    with pytest.raises(repo.ModelRepositoryError, match="sha256 mismatch"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src")


def test_config_typo_fails_with_path(tmp_path: Path) -> None:
    _model(tmp_path / "src", config=CONFIG.replace("max_batch_size", "max_bach_size"))
    with pytest.raises(repo.ModelRepositoryError, match=r"config\.pbtxt"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src")


def test_name_must_match_folder(tmp_path: Path) -> None:
    _model(tmp_path / "src", config=CONFIG.replace('"tiny"', '"other"'))
    with pytest.raises(repo.ModelRepositoryError, match="differs from folder"):
        repo.build(tmp_path / "out", services_root=tmp_path / "src")
