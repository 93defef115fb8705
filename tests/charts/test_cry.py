"""The cry capability as the chart renders it: one stateless service reaching only its Triton (no NATS: it publishes
nothing), reading client files under the media mount, the classifier on the pool each values file chose, and the
Triton image built with it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import chartlib
import pytest
from manifests import Render, Workload, deploy_script, env_of, policy_of, rule_ports, workloads
from tritonclient.grpc import model_config_pb2

from tessera.cry.api import SERVICE_NAME
from tessera.cry.contracts import MODELS
from tessera.cry.settings import CrySettings

apply_overrides = deploy_script("apply_overrides")
CASES = list(chartlib.CASES)
MODELS_DIR = chartlib.ROOT / "services" / "tessera" / "cry" / "models"
TRITON_DOCKERFILE = (chartlib.ROOT / "deploy" / "triton" / "Dockerfile").read_text()
# The reference classifier is a tiny CPU network: on the cpu pool, KIND_CPU, in every values file.
PLACEMENT = {
    "default": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "cpu": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "rtx": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "a100": ("cpu", {"cry_classifier": "KIND_CPU"}),
}


def _cry(render: Render, component: str) -> list[Workload]:
    return [w for w in workloads(render) if w.capability == "cry" and w.component == component]


def _overrides(render: Render) -> dict[str, Any]:
    (triton,) = _cry(render, "triton")
    return dict(json.loads(render.get("ConfigMap", f"{triton.name}-overrides")["data"]["overrides.json"]))


@pytest.mark.parametrize("case", CASES)
def test_service_reaches_its_triton_only_and_takes_clients(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    values = render.values
    (service,) = _cry(render, "service")
    assert not _cry(render, "worker"), "cry has no cascade workers"
    assert values["capabilities"]["cry"]["usesBus"] is False
    container = service.containers[0]
    assert container["args"] == ["serve", "cry"]
    env = env_of(render, service)
    if not values["tls"]["enabled"]:
        assert container["readinessProbe"]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": SERVICE_NAME}
    (triton,) = _cry(render, "triton")
    assert env["TESSERA_TRITON_URL"].startswith(triton.name)
    spec = policy_of(render, service)
    egress = {p for r in spec["egress"] for p in rule_ports(r)}
    assert values["triton"]["grpcPort"] in egress
    assert values["nats"]["port"] not in egress, "cry publishes nothing: no NATS egress"
    port = values["capabilities"]["cry"]["service"]["port"]
    assert [r.get("from", []) for r in spec["ingress"] if rule_ports(r) == {port}] == [
        values["networkPolicy"]["clientFrom"]
    ]


@pytest.mark.parametrize("case", CASES)
def test_startup_outlasts_the_model_wait_and_inline_clips_fit_a_message(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    (service,) = _cry(render, "service")
    env = env_of(render, service)
    own = CrySettings.model_fields
    ready = float(env.get("TESSERA_CRY_MODELS_READY_TIMEOUT_S", own["models_ready_timeout_s"].default))
    startup = service.containers[0]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > ready, f"{case}: startup budget"
    inline = int(env.get("TESSERA_CRY_MAX_INLINE_BYTES", own["max_inline_bytes"].default))
    assert inline < int(env["TESSERA_MAX_RECEIVE_MESSAGE_BYTES"]), f"{case}: an inline clip must fit one message"


@pytest.mark.parametrize("case", CASES)
def test_classify_files_are_read_under_the_media_mount(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    (service,) = _cry(render, "service")
    media = render.values["capabilities"]["cry"]["service"]["media"]
    env = env_of(render, service)
    mounts = {m["name"]: m for m in service.containers[0]["volumeMounts"]}
    volumes = {v["name"]: v for v in service.spec["volumes"]}
    if media["claimName"]:
        assert env["TESSERA_MEDIA_ROOTS"] == media["mountPath"]
        assert mounts["media"] == {"name": "media", "mountPath": media["mountPath"], "readOnly": True}
        assert volumes["media"]["persistentVolumeClaim"] == {"claimName": media["claimName"], "readOnly": True}
    else:
        assert env["TESSERA_MEDIA_ROOTS"] == "", f"{case}: no claim, no file paths"
        assert "media" not in mounts and "media" not in volumes
    if case in ("rtx", "a100"):
        assert media["claimName"] == "tessera-media", case


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_models_land_on_the_pool_each_values_file_chose(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    pool_name, kinds = PLACEMENT[case]
    (triton,) = _cry(render, "triton")
    assert triton.annotations["tessera.io/gpu-pool"] == pool_name
    container = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    loaded = sorted(a.removeprefix("--load-model=") for a in container["args"] if a.startswith("--load-model="))
    assert loaded == sorted(MODELS)
    overlay = _overrides(render)
    assert {m: o["instance_group"]["kind"] for m, o in overlay.items()} == kinds
    assert {m: o["instance_group"]["count"] for m, o in overlay.items()} == {"cry_classifier": 1}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("TESSERA_MODEL_THREADS") == "1", f"{case}: one torch thread per instance"


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_overlay_keeps_the_audio_contract_and_no_batching(
    renders: dict[str, Render], case: str, tmp_path: Path
) -> None:
    """The pool's maxBatchSize and queue delay reach the overlay, and apply_overrides leaves a model without
    batching as it is: one variable-length segment per request."""
    source = tmp_path / "models"
    for model in MODELS:
        shutil.copytree(MODELS_DIR / model, source / model, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case])
    assert apply_overrides.build(source, tmp_path / "served", overlay, "link") == sorted(MODELS)
    for model in MODELS:
        original = apply_overrides.load_config(source / model / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert original.max_batch_size == 0
        assert served.max_batch_size == 0 and not served.HasField("dynamic_batching"), f"{case} {model}"
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert dict(served.parameters) == dict(original.parameters), f"{model}: the reasons stay declared"
        (group,) = served.instance_group
        want = overlay[model]["instance_group"]
        assert (model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (want["kind"], want["count"])


def test_kustomize_overlays_ship_cry() -> None:
    k8s = chartlib.ROOT / "k8s"
    for overlay in ("cpu", "rtx", "a100"):
        files = {p.name for p in (k8s / "overlays" / overlay).glob("*.yaml")} | {
            p.name for p in (k8s / "base").glob("*.yaml")
        }
        assert "networkpolicy-tessera-cry.yaml" in files and "deployment-tessera-cry.yaml" in files, overlay
        triton = "inferenceservice" if overlay == "a100" else "deployment"
        assert f"{triton}-tessera-triton-cry.yaml" in files, overlay


def test_triton_image_trains_the_classifier_with_torch_and_the_packaged_sounds() -> None:
    """`python -m tessera.cry.training` in the image build needs torch, moonshine-voice (the cry-models extra) and
    the system sounds of sound-theme-freedesktop and alsa-utils."""
    capabilities = re.search(r'^ARG CAPABILITIES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert capabilities and "cry" in capabilities.group(1).split()
    torch_case = re.search(r'case " \$\{CAPABILITIES\} " in ([^)]+)\) pip install --index-url', TRITON_DOCKERFILE)
    assert torch_case and '*" cry "*' in torch_case.group(1).split("|")
    packages = re.search(r'^ARG CRY_APT_PACKAGES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert packages and {"sound-theme-freedesktop", "alsa-utils"} <= set(packages.group(1).split())
    assert '*" cry "*) packages="${packages} ${CRY_APT_PACKAGES}"' in TRITON_DOCKERFILE
