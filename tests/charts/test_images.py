"""The image recipes agree with the chart: users, paths, the pyproject extras and the Triton/pytriton pairing."""

from __future__ import annotations

import re
import tomllib

import chartlib
import yaml
from manifests import Render, workloads

DOCKERFILE = (chartlib.ROOT / "Dockerfile").read_text()
TRITON_DOCKERFILE = (chartlib.ROOT / "deploy" / "triton" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((chartlib.ROOT / "pyproject.toml").read_text())
VALUES = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
APP_VERSION = yaml.safe_load((chartlib.CHART / "Chart.yaml").read_text())["appVersion"]


def _final_user(dockerfile: str) -> str:
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "no USER"
    return users[-1]


def test_service_image_installs_the_extra_named_by_a_build_arg() -> None:
    assert re.search(r"^ARG EXTRA=keyframes$", DOCKERFILE, flags=re.MULTILINE)
    assert 'pip install ".[${EXTRA}]"' in DOCKERFILE
    assert 'ENTRYPOINT ["tessera"]' in DOCKERFILE


def test_every_available_capabilitys_extra_exists_in_pyproject() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for name, cap in VALUES["capabilities"].items():
        if cap["status"] == "available":
            assert cap["extra"] in extras, f"{name}: pyproject has no extra {cap['extra']!r}"


def test_images_run_as_the_users_the_chart_expects(renders: dict[str, Render]) -> None:
    assert _final_user(DOCKERFILE) == "10001:10001"
    assert _final_user(TRITON_DOCKERFILE) == "1000:1000"
    for w in workloads(renders["default"]):
        uid = w.spec["securityContext"]["runAsUser"]
        if w.component == "service":
            assert uid == 10001
        if w.component == "triton":
            assert uid == 1000 == VALUES["triton"]["podSecurityContext"]["runAsUser"]


def test_triton_image_matches_the_init_container_and_the_model_builder(renders: dict[str, Render]) -> None:
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\$\{TRITON_TAG\}-py3$", TRITON_DOCKERFILE, re.MULTILINE)
    assert "COPY deploy/triton/apply_overrides.py /opt/tessera/apply_overrides.py" in TRITON_DOCKERFILE
    assert "tessera models build --target /models" in TRITON_DOCKERFILE
    triton = next(w for w in workloads(renders["default"]) if w.component == "triton")
    init = triton.spec["initContainers"][0]
    assert init["command"] == ["/opt/tessera/venv/bin/python", "/opt/tessera/apply_overrides.py"]
    assert init["args"][init["args"].index("--source") + 1] == "/models"
    assert init["image"] == triton.containers[0]["image"], "the init container links into the Triton image's /models"


def test_triton_release_pairs_with_the_pytriton_stub() -> None:
    """NGC 24.10 is Triton 2.51, the release nvidia-pytriton 0.7.0 ships (its Python 3.11 stub is reused)."""
    tag = re.search(r"^ARG TRITON_TAG=(\S+)$", TRITON_DOCKERFILE, re.MULTILINE)
    pytriton = re.search(r"^ARG PYTRITON_VERSION=(\S+)$", TRITON_DOCKERFILE, re.MULTILINE)
    assert tag and pytriton
    assert (tag.group(1), pytriton.group(1)) == ("24.10", "0.7.0")
    assert f"nvidia-pytriton=={pytriton.group(1)}" in PYPROJECT["project"]["optional-dependencies"]["stack"]
    assert 'pip install ".[${EXTRAS}]"' in TRITON_DOCKERFILE


def test_build_contexts_hold_only_the_sources() -> None:
    """Everything is excluded, then the sources re-included: .venv/ and build/ never enter the context."""
    for ignore in ("Dockerfile.dockerignore", "deploy/triton/Dockerfile.dockerignore"):
        rules = [line for line in (chartlib.ROOT / ignore).read_text().splitlines() if line and line[0] != "#"]
        assert rules[0] == "*", ignore
        assert {"!pyproject.toml", "!README.md", "!services/"} <= set(rules), ignore
        assert not any(r.startswith(("!.venv", "!build")) for r in rules), ignore


def test_a_capability_can_bring_its_own_triton_image(renders: dict[str, Render]) -> None:
    render = renders["full-features"]
    registry = render.values["image"]["registry"]
    for w in workloads(render):
        if w.component != "triton":
            continue
        want = (
            f"{registry}/tessera-test-fixture-triton-relay:0.0.0-test"
            if w.capability == "relay"
            else f"{registry}/tessera-triton:{APP_VERSION}"
        )
        assert w.containers[0]["image"] == want
        assert w.spec["initContainers"][0]["image"] == want
