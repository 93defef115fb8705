"""Session fixtures: a real nats-server, a real tritonserver with the real models, real media."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.runtime import model_repository
from tessera.runtime.processes import NatsServer, TritonServer, start_nats, start_triton

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_MODELS = ROOT / "tests" / "fixtures"  # holds platform/models/add_sub
OPENCV_DOC = ROOT / "build" / "media" / "opencv-doc"
TEST_MEDIA = ROOT / "build" / "test-media"
if str(ROOT) not in sys.path:  # the load-test package (loadtest/) sits at the repository root
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    server = start_nats(base / "js", base / "nats.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every capability's models plus the test-only add_sub, assembled the way `make models` does."""
    target = tmp_path_factory.mktemp("model_repository")
    model_repository.build(target)
    model_repository.build(target, services_root=FIXTURE_MODELS)
    return target


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("triton")
    server = start_triton(model_repo, work, work / "triton.log", timeout_s=240)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def opencv_doc() -> Path:
    if not (OPENCV_DOC / "vtest.avi").exists():
        pytest.fail(f"real media missing at {OPENCV_DOC}: run `make media` (make test does)")
    return OPENCV_DOC


@pytest.fixture(scope="session")
def short_video(opencv_doc: Path) -> Path:
    """A 4-minute multi-scene video built from real media (cached under build/test-media)."""
    from tessera.keyframes import longvideo

    specs = longvideo.generate(TEST_MEDIA / "short", [4], opencv_data=opencv_doc, seed=7)
    return Path(specs[0].path)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in list(os.environ):
        if name.startswith("TESSERA_"):
            monkeypatch.delenv(name)
