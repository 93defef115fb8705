"""The image recipes agree with the chart: users, paths, the pyproject extras and the Triton/pytriton pairing."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import chartlib
import pytest
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


def test_federation_image_installs_its_extras_cpu_torch_and_system_sounds() -> None:
    """capabilities.<cap>.federation.serverApp.extra is the EXTRA build arg of the ServerApp image: its extras exist,
    torch comes from TORCH_INDEX_URL (CPU by default) when they pull it, and APT_PACKAGES installs the system sounds
    the cry validation families are mixed from (the Triton image's CRY_APT_PACKAGES)."""
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for name, cap in VALUES["capabilities"].items():
        federation = cap.get("federation")
        if federation:
            assert set(federation["serverApp"]["extra"].split(",")) <= extras, name
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", DOCKERFILE, re.MULTILINE)
    assert 'case ",${EXTRA}," in *",cry-models,"*|*",cry-federation,"*) pip install --index-url' in DOCKERFILE
    assert re.search(r'^ARG APT_PACKAGES=""$', DOCKERFILE, re.MULTILINE)
    assert "apt-get install -y --no-install-recommends ${APT_PACKAGES}" in DOCKERFILE
    cry_sounds = re.search(r'^ARG CRY_APT_PACKAGES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert cry_sounds and f'APT_PACKAGES="{cry_sounds.group(1)}"' in DOCKERFILE, "the build line the header documents"


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
    assert "COPY deploy/triton/build_models.py /opt/tessera/build_models.py" in TRITON_DOCKERFILE
    assert "python /opt/tessera/build_models.py --target /models ${CAPABILITIES} --train" in TRITON_DOCKERFILE
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
    triton_rules = (chartlib.ROOT / "deploy" / "triton" / "Dockerfile.dockerignore").read_text().splitlines()
    for copied in re.findall(r"^COPY (deploy/\S+) ", TRITON_DOCKERFILE, flags=re.MULTILINE):
        assert f"!{copied}" in triton_rules, f"{copied} is copied but not in the Triton build context"


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


# --- the Triton image's capabilities (build arg CAPABILITIES) -------------------------------------------------------


def _build_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tessera_build_models", chartlib.ROOT / "deploy" / "triton" / "build_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build_models = _build_models()


def _arg(name: str) -> list[str]:
    found = re.search(rf"^ARG {name}=(.*)$", TRITON_DOCKERFILE, re.MULTILINE)
    assert found, f"deploy/triton/Dockerfile has no ARG {name}"
    return shlex.split(found.group(1))[0].split()


def test_default_triton_image_holds_every_available_capabilitys_models() -> None:
    """triton.image (no models.image) serves every capability, so the default build holds all of their models."""
    image_caps = _arg("CAPABILITIES")
    available = {name: cap for name, cap in VALUES["capabilities"].items() if cap["status"] == "available"}
    assert set(image_caps) == set(available), "CAPABILITIES default vs the chart's available capabilities"
    extras = PYPROJECT["project"]["optional-dependencies"]
    built = build_models.models_of(image_caps)
    for name, cap in available.items():
        assert f"{name}-models" in extras, f"pyproject has no extra {name}-models for the Triton image"
        assert sorted(cap["models"]["names"]) == built[name], f"{name}: models.names vs services/tessera/{name}/models"


def test_translation_system_packages_are_the_ones_the_local_install_uses() -> None:
    install = (chartlib.ROOT / "scripts" / "install.sh").read_text()
    local = re.search(r"^for pkg in ([^;]+); do", install, re.MULTILINE)
    assert local, "scripts/install.sh no longer lists the translation packages"
    assert _arg("TRANSLATION_APT_PACKAGES") == local.group(1).split()
    assert 'case " ${CAPABILITIES} " in *" translation "*) packages="${TRANSLATION_APT_PACKAGES}"' in TRITON_DOCKERFILE


def test_triton_build_installs_each_capabilitys_models_extra() -> None:
    assert "EXTRAS=$(printf '%s-models,' ${CAPABILITIES}) && EXTRAS=${EXTRAS%,}" in TRITON_DOCKERFILE
    assert re.search(r"^LABEL io\.tessera\.capabilities=\"\$\{CAPABILITIES\}\"$", TRITON_DOCKERFILE, re.MULTILINE)


def test_build_models_builds_one_capability_and_checks_its_system_packages(tmp_path: Path) -> None:
    """What the Triton build runs for a translation-only image, on this machine's packages (make install)."""
    assert build_models.main(["--target", str(tmp_path / "models"), "translation"]) == 0
    built = sorted(p.parent.name for p in (tmp_path / "models").glob("*/config.pbtxt"))
    assert built == ["asr", "mt", "tts"], "only translation's models"
    assert (tmp_path / "models" / "asr" / "1" / "whisper" / "model.bin").is_file(), "weights placed"
    assert (tmp_path / "models" / "tts" / "1" / "piper" / "voice.onnx").is_file(), "weights placed"


def test_build_models_fails_on_an_unknown_capability_or_a_missing_pair(tmp_path: Path) -> None:
    assert build_models.main(["--target", str(tmp_path / "x"), "nosuch"]) == 2
    fake = tmp_path / "mt"
    fake.mkdir()
    (fake / "config.pbtxt").write_text(
        'name: "mt"\nbackend: "python"\ninput [ { name: "T" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'output [ { name: "O" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'parameters: { key: "pairs" value: { string_value: "en-es,xx-yy" } }\n'
    )
    with pytest.raises(build_models.SystemPackageError, match=r"pairs \['xx-yy'\]"):
        build_models.check_system_packages({"mt": fake})
