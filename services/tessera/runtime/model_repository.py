"""Assemble ``build/model_repository/`` from every capability's ``models/`` folder.

Each model folder holds ``config.pbtxt`` (the tensor contract), ``1/model.py`` (python backend) and, where it needs
weights, ``weights.json``: files taken from installed packages, each checked against its sha256 before it is linked
into the version folder. Every config is parsed with Triton's own ``model_config`` proto, so a typo fails here and
not at Triton start.

A capability's own small network has no package to come from: a ``weights.json`` entry with ``"trained"`` (the
module that trains it) instead of ``"package"`` names a file under the trained-weights folder (``trained_root``:
``$TESSERA_TRAINED_DIR``, else ``trained/`` beside the target when it exists, else ``build/trained``), which that
module writes together with ``<file>.sha256``. The file is checked against that digest (so a truncated or swapped
file fails here) and, when missing, the error says which module makes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import tessera


class ModelRepositoryError(Exception):
    """A model folder is malformed or a weight file is missing or corrupt."""


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the package folder, or to the trained-weights folder
    dest: str  # relative to the model's version folder
    package: str = ""  # an importable package that ships the file
    sha256: str = ""  # pinned digest of a package file
    trained: str = ""  # or: the module that trains the file (``python -m <module>``); digest in <path>.sha256

    def __post_init__(self) -> None:
        if bool(self.package) == bool(self.trained):
            raise ModelRepositoryError(f"weight {self.path}: give exactly one of package or trained")
        if self.package and not self.sha256:
            raise ModelRepositoryError(f"weight {self.package}/{self.path}: a package file needs its sha256")


def discover(services_root: Path | None = None) -> dict[str, Path]:
    """model name -> source folder, for every ``<capability>/models/<name>/config.pbtxt``."""
    root = services_root or Path(tessera.__file__).parent
    found: dict[str, Path] = {}
    for config in sorted(root.glob("*/models/*/config.pbtxt")):
        name = config.parent.name
        if name in found:
            raise ModelRepositoryError(f"model {name} defined twice: {found[name]} and {config.parent}")
        found[name] = config.parent
    return found


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as exc:
        raise ModelRepositoryError(f"{path}: {exc}") from None
    if config.name and config.name != path.parent.name:
        raise ModelRepositoryError(f"{path}: name {config.name!r} differs from folder {path.parent.name!r}")
    if not config.input or not config.output:
        raise ModelRepositoryError(f"{path}: a model must declare its inputs and outputs")
    return config


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelRepositoryError(f"package {package} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def read_weights(model_dir: Path) -> list[WeightFile]:
    manifest = model_dir / "weights.json"
    if not manifest.exists():
        return []
    try:
        return [WeightFile(**entry) for entry in json.loads(manifest.read_text())]
    except TypeError as exc:
        raise ModelRepositoryError(f"{manifest}: {exc}") from None


def trained_dir(target: Path | None = None) -> Path:
    if os.environ.get("TESSERA_TRAINED_DIR"):
        return Path(os.environ["TESSERA_TRAINED_DIR"])
    beside = target.parent / "trained" if target is not None else None
    return beside if beside is not None and beside.is_dir() else Path("build/trained")


def _origin(name: str, weight: WeightFile, trained_root: Path) -> tuple[Path, str]:
    """Where a weight file comes from and the digest it must have."""
    if weight.package:
        origin = package_dir(weight.package) / weight.path
        if not origin.is_file():
            raise ModelRepositoryError(f"{name}: {weight.package}/{weight.path} not found")
        return origin, weight.sha256
    origin = trained_root / weight.path
    digest_file = origin.with_name(origin.name + ".sha256")
    if not origin.is_file() or not digest_file.is_file():
        raise ModelRepositoryError(
            f"{name}: trained weights {origin} (or its .sha256) missing; train them with "
            f"`python -m {weight.trained} --out {trained_root}` (make models)"
        )
    return origin, digest_file.read_text().split()[0]


def _place(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(source, dest)  # same filesystem: no copy of large weights
    except OSError:
        shutil.copy2(source, dest)


def build(
    target: Path,
    services_root: Path | None = None,
    only: list[str] | None = None,
    trained_root: Path | None = None,
) -> dict[str, Path]:
    """Rebuild ``target`` from the model sources; returns model name -> built folder."""
    trained_root = trained_root or trained_dir(target)
    models = discover(services_root)
    if only:
        missing = sorted(set(only) - set(models))
        if missing:
            raise ModelRepositoryError(f"unknown models {missing}; known: {sorted(models)}")
        models = {name: models[name] for name in only}
    target.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for name, source in models.items():
        config = parse_config(source / "config.pbtxt")
        if config.backend == "python" and not (source / "1" / "model.py").exists():
            raise ModelRepositoryError(f"{source}: python backend model needs 1/model.py")
        dest = target / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "weights.json", "README.md"))
        for weight in read_weights(source):
            origin, expected = _origin(name, weight, trained_root)
            actual = sha256_of(origin)
            if actual != expected:
                raise ModelRepositoryError(f"{name}: sha256 mismatch for {origin}: {actual} != {expected}")
            _place(origin, dest / "1" / weight.dest)
        built[name] = dest
    return built


# --- what a training module writes (the other side of a ``trained`` weight) -------------------------------------


def write_trained(path: Path, data: bytes) -> None:
    """Write a trained file and its ``<file>.sha256`` (what ``build`` checks it against)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def trained_up_to_date(files: list[Path], provenance: Path, key: str) -> bool:
    """True when every file (provenance included) matches its ``.sha256`` and the provenance's ``key`` is ``key``:
    a training module skips its work then."""
    for path in [*files, provenance]:
        digest = path.with_name(path.name + ".sha256")
        if not path.is_file() or not digest.is_file():
            return False
        if digest.read_text().split()[0] != hashlib.sha256(path.read_bytes()).hexdigest():
            return False
    return bool(json.loads(provenance.read_text()).get("key") == key)
