"""Each accepted round becomes a new version of ``cry_classifier`` in a Triton model repository, then Triton is
asked to load it: with the default version policy (latest 1) Triton swaps to it while the old version serves, so
the cry service answers from the new model without a restart.

A version folder holds ``model.py`` (version 1's), ``cry.pt`` and ``cry.json``; it is written beside
the repository and renamed into place, so Triton never reads half a version. Folder ``1`` is never touched (its
files are hard links to the trained files). Only the newest ``keep`` published versions stay on disk.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tessera.runtime.model_repository import package_dir

MODEL_SOURCE = "tessera.cry"  # models/cry_classifier/1/model.py lives in this package


class PublishError(RuntimeError):
    pass


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def model_source(model_dir: Path) -> Path:
    """The Triton model code a new version runs: version 1's, as served (an installed wheel carries no model.py)."""
    served = model_dir / "1" / "model.py"
    return served if served.is_file() else package_dir(MODEL_SOURCE) / "models" / "cry_classifier" / "1" / "model.py"


def write_version(model_dir: Path, weights: bytes, provenance: dict[str, Any], keep: int = 3) -> int:
    """Writes the next version folder and returns its number."""
    if not (model_dir / "config.pbtxt").is_file():
        raise PublishError(f"{model_dir} is not a Triton model folder (no config.pbtxt)")
    number = max(versions(model_dir), default=0) + 1
    staging = model_dir / f".staging-{number}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copy2(model_source(model_dir), staging / "model.py")
    (staging / "cry.pt").write_bytes(weights)
    (staging / "cry.json").write_text(json.dumps(provenance, indent=1))
    staging.rename(model_dir / str(number))
    for old in versions(model_dir)[:-keep]:
        if old != 1:
            shutil.rmtree(model_dir / str(old), ignore_errors=True)
    return number


def load(triton_http_url: str, model: str, timeout_s: float = 120.0) -> None:
    """Triton (explicit model control) re-reads the model's folder and serves its latest version."""
    url = f"{triton_http_url.rstrip('/')}/v2/repository/models/{model}/load"
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            if reply.status != 200:
                raise PublishError(f"Triton answered {reply.status} to loading {model}")
    except urllib.error.HTTPError as exc:
        raise PublishError(f"Triton refused to load {model}: {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise PublishError(f"Triton at {triton_http_url} unreachable: {exc}") from None
