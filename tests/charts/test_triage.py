"""The triage capability as the chart renders it: one stateless service reaching NATS (the audit stream) and its
Triton, the captioner and reasoner on the pool each values file chose, and the Triton image built with them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import chartlib
import pytest
from manifests import Render, Workload, deploy_script, env_of, policy_of, rule_ports, workloads

from tessera.triage.api import SERVICE_NAME
from tessera.triage.contracts import MODELS

apply_overrides = deploy_script("apply_overrides")
build_models = deploy_script("build_models")
CASES = list(chartlib.CASES)
MODELS_DIR = chartlib.ROOT / "services" / "tessera" / "triage" / "models"
PLACEMENT = {
    "default": ("cpu", {"triage_captioner": "KIND_CPU", "triage_reasoner": "KIND_CPU"}),
    "cpu": ("cpu", {"triage_captioner": "KIND_CPU", "triage_reasoner": "KIND_CPU"}),
    "rtx": ("cpu", {"triage_captioner": "KIND_CPU", "triage_reasoner": "KIND_CPU"}),
    "a100": ("a100", {"triage_captioner": "KIND_GPU", "triage_reasoner": "KIND_GPU"}),
}


def _triage(render: Render, component: str) -> list[Workload]:
    return [w for w in workloads(render) if w.capability == "triage" and w.component == component]


def _overrides(render: Render) -> dict[str, Any]:
    (triton,) = _triage(render, "triton")
    return dict(json.loads(render.get("ConfigMap", f"{triton.name}-overrides")["data"]["overrides.json"]))


@pytest.mark.parametrize("case", CASES)
def test_service_reaches_nats_and_its_triton_and_takes_clients(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    values = render.values
    (service,) = _triage(render, "service")
    assert not _triage(render, "worker"), "triage has no cascade workers"
    container = service.containers[0]
    assert container["args"] == ["serve", "triage"]
    env = env_of(render, service)
    if not values["tls"]["enabled"]:
        assert container["readinessProbe"]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": SERVICE_NAME}
    (triton,) = _triage(render, "triton")
    assert env["TESSERA_TRITON_URL"].startswith(triton.name)
    assert env["TESSERA_NATS_URL"], "the audit stream lives on NATS JetStream"
    spec = policy_of(render, service)
    egress = {p for r in spec["egress"] for p in rule_ports(r)}
    assert values["nats"]["port"] in egress and values["triton"]["grpcPort"] in egress
    port = values["capabilities"]["triage"]["service"]["port"]
    assert [r.get("from", []) for r in spec["ingress"] if rule_ports(r) == {port}] == [
        values["networkPolicy"]["clientFrom"]
    ]


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_models_land_on_the_pool_each_values_file_chose(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    pool_name, kinds = PLACEMENT[case]
    (triton,) = _triage(render, "triton")
    assert triton.annotations["tessera.io/gpu-pool"] == pool_name
    container = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    loaded = sorted(a.removeprefix("--load-model=") for a in container["args"] if a.startswith("--load-model="))
    assert loaded == sorted(MODELS)
    overlay = _overrides(render)
    assert {m: o["instance_group"]["kind"] for m, o in overlay.items()} == kinds


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_overlay_keeps_the_text_contracts(renders: dict[str, Render], case: str, tmp_path: Path) -> None:
    source = tmp_path / "models"
    for model in MODELS:
        shutil.copytree(MODELS_DIR / model, source / model, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case])
    assert apply_overrides.build(source, tmp_path / "served", overlay, "link") == sorted(MODELS)
    for model in MODELS:
        original = apply_overrides.load_config(source / model / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert dict(served.parameters) == dict(original.parameters), f"{model}: the classes stay declared"


def test_kustomize_overlays_ship_triage() -> None:
    k8s = chartlib.ROOT / "k8s"
    for overlay in ("cpu", "rtx", "a100"):
        files = {p.name for p in (k8s / "overlays" / overlay).glob("*.yaml")} | {
            p.name for p in (k8s / "base").glob("*.yaml")
        }
        assert "networkpolicy-tessera-triage.yaml" in files and "deployment-tessera-triage.yaml" in files, overlay
        triton = "inferenceservice" if overlay == "a100" else "deployment"
        assert f"{triton}-tessera-triton-triage.yaml" in files, overlay
