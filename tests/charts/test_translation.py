"""The translation capability as the chart renders it, checked against the code it deploys: the gateway's gRPC
service, the stage workers' commands, the cascade's stream and durable consumers, the Triton models and their pools.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from google.protobuf import text_format
from manifests import Render, Workload, deploy_script, env_of, policy_of, rule_ports, selects, workloads
from tritonclient.grpc import model_config_pb2

from tessera.translation import cascade
from tessera.translation.api import SERVICE_NAME
from tessera.translation.workers import STAGES

apply_overrides = deploy_script("apply_overrides")
build_models = deploy_script("build_models")
CASES = list(chartlib.CASES)
REFERENCE = ["default", "cpu", "rtx", "a100"]
MODELS_DIR = chartlib.ROOT / "services" / "tessera" / "translation" / "models"
OTLP = {4317, 4318}
# What each reference values file decides for the translation model repository: pool, and instance kind per model.
PLACEMENT = {
    "default": ("cpu", {"asr": "KIND_CPU", "mt": "KIND_CPU", "tts": "KIND_CPU"}),
    "cpu": ("cpu", {"asr": "KIND_CPU", "mt": "KIND_CPU", "tts": "KIND_CPU"}),
    "rtx": ("rtx4060", {"asr": "KIND_GPU", "mt": "KIND_CPU", "tts": "KIND_CPU"}),
    "a100": ("a100", {"asr": "KIND_GPU", "mt": "KIND_CPU", "tts": "KIND_CPU"}),
}


def _translation(render: Render, component: str) -> list[Workload]:
    return [w for w in workloads(render) if w.capability == "translation" and w.component == component]


def _gateway(render: Render) -> Workload:
    found = _translation(render, "service")
    assert len(found) == 1, f"{render.case}: {len(found)} translation gateways"
    return found[0]


def _workers(render: Render) -> dict[str, Workload]:
    return {w.labels["tessera.io/worker"]: w for w in _translation(render, "worker")}


def _overrides(render: Render) -> dict[str, Any]:
    triton = _translation(render, "triton")[0]
    return dict(json.loads(render.get("ConfigMap", f"{triton.name}-overrides")["data"]["overrides.json"]))


@pytest.mark.parametrize("case", CASES)
def test_translation_is_on_in_every_case(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    assert "translation" in render.enabled(), f"{case}: translation is enabled by default"
    assert _gateway(render) and len(_translation(render, "triton")) == 1


@pytest.mark.parametrize("case", CASES)
def test_gateway_serves_the_conference_service_on_tessera_port(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    svc_values = render.values["capabilities"]["translation"]["service"]
    gw = _gateway(render)
    container = gw.containers[0]
    env = env_of(render, gw)
    assert svc_values["grpcService"] == SERVICE_NAME, "values name the gateway's gRPC service as the code does"
    assert container["args"] == ["serve", "translation"]
    tag = render.values["image"]["tag"] or yaml.safe_load((chartlib.CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"{render.values['image']['registry']}/tessera-translation:{tag}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(env["TESSERA_PORT"]) == svc_values["port"]
    service = next(s for s in render.of("Service") if selects({"matchLabels": s["spec"]["selector"]}, gw.labels))
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == svc_values["port"] and grpc["targetPort"] == "grpc"
    if render.values["tls"]["enabled"]:
        assert container["readinessProbe"]["tcpSocket"]["port"] == int(env["TESSERA_PORT"])
    else:
        assert container["readinessProbe"]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": SERVICE_NAME}
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": ""}
    assert env["TESSERA_TRITON_URL"].startswith(f"{_translation(render, 'triton')[0].name}")


@pytest.mark.parametrize("case", REFERENCE)
def test_gateway_runs_one_replica_without_an_hpa(renders: dict[str, Render], case: str) -> None:
    """A conference lives in one gateway's memory: a Service balancing connections must not split it."""
    render = renders[case]
    gw = _gateway(render)
    deployment = render.get("Deployment", gw.name)
    assert deployment["spec"]["replicas"] == 1
    assert gw.name not in {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}


@pytest.mark.parametrize("case", CASES)
def test_workers_run_the_three_stages_of_the_code(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    workers = _workers(render)
    assert sorted(workers) == sorted(STAGES) == sorted(cascade.CONSUMERS), f"{case}: stages"
    gateway_image = _gateway(render).containers[0]["image"]
    tls = render.values["tls"]["enabled"]
    for stage, w in workers.items():
        container = w.containers[0]
        env = env_of(render, w)
        assert container["args"] == ["work", "translation", stage], f"{case} {w.name}"
        assert container["image"] == gateway_image, "the workers run from the gateway's image"
        port = int(env["TESSERA_PORT"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port, f"{case} {w.name}: grpc.health.v1 is served on TESSERA_PORT"
        if render.values["metrics"]["enabled"]:
            assert ports["metrics"] == int(env["TESSERA_METRICS_PORT"]) == render.values["metrics"]["port"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            target = container[probe]["tcpSocket" if tls else "grpc"]
            assert target["port"] == port, f"{case} {w.name}: {probe}"
            if not tls:
                assert target["service"] == "", f"{case} {w.name}: a worker serves health only"
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] > 600, "mt waits up to 600 s for its models"
        assert env["TESSERA_TRITON_URL"] == env_of(render, _gateway(render))["TESSERA_TRITON_URL"]


@pytest.mark.parametrize("case", CASES)
def test_worker_network_policies_allow_only_nats_their_triton_dns_and_the_collector(
    renders: dict[str, Render], case: str
) -> None:
    render = renders[case]
    values = render.values
    triton = _translation(render, "triton")[0]
    if values["nats"]["enabled"]:
        nats_peers = [
            {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": chartlib.RELEASE}
                }
            }
        ]
    else:
        nats_peers = values["networkPolicy"]["natsPeers"]
    for stage, w in _workers(render).items():
        spec = policy_of(render, w)
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        assert [(rule_ports(r), r["from"]) for r in spec["ingress"]] == [
            ({values["metrics"]["port"]}, values["networkPolicy"]["metricsFrom"])
        ], f"{case} {stage}: only scrapes come in"
        rules = {frozenset(rule_ports(r)): r["to"] for r in spec["egress"]}
        want = {frozenset({53}), frozenset({values["triton"]["grpcPort"]}), frozenset({values["nats"]["port"]})}
        if values["otel"]["enabled"]:
            want.add(frozenset(OTLP))
        assert set(rules) == want, f"{case} {stage}: egress ports {sorted(map(sorted, rules))}"
        assert rules[frozenset({53})] == values["networkPolicy"]["dns"]
        assert rules[frozenset({values["nats"]["port"]})] == nats_peers
        triton_peers = rules[frozenset({values["triton"]["grpcPort"]})]
        reached = [t for t in workloads(render) for p in triton_peers if selects(p["podSelector"], t.labels)]
        assert [t.name for t in reached] == [triton.name], f"{case} {stage}: Triton egress reaches {reached}"
        if values["otel"]["enabled"]:
            (collector,) = rules[frozenset(OTLP)]
            assert collector["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "otel-collector"


@pytest.mark.parametrize("case", CASES)
def test_gateway_takes_clients_and_reaches_nats(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    values = render.values
    spec = policy_of(render, _gateway(render))
    grpc = [r for r in spec["ingress"] if rule_ports(r) == {values["capabilities"]["translation"]["service"]["port"]}]
    assert len(grpc) == 1 and grpc[0].get("from", []) == values["networkPolicy"]["clientFrom"]
    assert values["nats"]["port"] in {p for r in spec["egress"] for p in rule_ports(r)}


@pytest.mark.parametrize("case", ["a100", "full-features", "kserve-serverless"])
def test_keda_scales_each_worker_on_its_durable_consumers_lag(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    workers = _workers(render)
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in render.of("ScaledObject")}
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    if render.values["nats"]["enabled"]:  # the subchart's servers are named after the release
        endpoint = f"{chartlib.RELEASE}-nats.{chartlib.NAMESPACE}.svc.cluster.local:8222"
    else:
        endpoint = render.values["nats"]["monitoringEndpoint"]
    for stage, w in workers.items():
        obj = scaled[w.name]
        assert obj["metadata"]["name"] == w.name and w.name not in hpas, f"{case} {stage}: one autoscaler"
        assert "replicas" not in render.get("Deployment", w.name)["spec"], "KEDA owns the replica count"
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["stream"] == cascade.STREAM.name, f"{case} {stage}: stream"
        assert meta["consumer"] == cascade.CONSUMERS[stage].durable, f"{case} {stage}: durable consumer"
        assert meta["natsServerMonitoringEndpoint"] == endpoint
        keda = render.values["capabilities"]["translation"]["workers"][stage]["keda"]
        assert meta["lagThreshold"] == str(keda["lagThreshold"])
        assert obj["spec"]["minReplicaCount"] >= 1, "stay warm: mt needs its models before it consumes"
        assert chartlib.validate_crd(obj) == [], f"{case} {stage}: ScaledObject against the KEDA schema"


@pytest.mark.parametrize("case", ["default", "cpu", "rtx"])
def test_without_keda_workers_scale_on_cpu(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    assert not render.of("ScaledObject")
    assert {w.name for w in _workers(render).values()} <= hpas


@pytest.mark.parametrize("case", REFERENCE)
def test_translation_models_land_on_the_pool_each_values_file_chose(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    pool_name, kinds = PLACEMENT[case]
    pool = render.values["gpuPools"][pool_name]
    (triton,) = _translation(render, "triton")
    assert triton.annotations["tessera.io/gpu-pool"] == pool_name
    assert triton.spec.get("nodeSelector", {}) == pool["nodeSelector"]
    container = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    loaded = sorted(a.removeprefix("--load-model=") for a in container["args"] if a.startswith("--load-model="))
    assert loaded == sorted(cascade.MODELS), "one Triton serves the three models the cascade reads"
    gpus = container["resources"]["limits"].get(pool["gpu"]["resourceName"], 0)
    assert gpus == pool["gpu"]["count"]
    overlay = _overrides(render)
    assert {m: o["instance_group"]["kind"] for m, o in overlay.items()} == kinds, f"{case}: instance kinds"
    if case == "a100":
        assert render.values["kserve"]["enabled"] and triton.kind == "InferenceService"


@pytest.mark.parametrize("case", REFERENCE)
def test_overlay_keeps_the_translation_contracts_and_instance_counts(
    renders: dict[str, Render], case: str, tmp_path: Path
) -> None:
    """What the init container does to the real asr/mt/tts configs: the contract stays, nothing starts batching,
    and no model gets fewer instances than its author declared (the tts worker keeps two segments in flight)."""
    source = tmp_path / "models"
    for model in cascade.MODELS:
        shutil.copytree(MODELS_DIR / model, source / model, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case])
    assert apply_overrides.build(source, tmp_path / "served", overlay, "link") == sorted(cascade.MODELS)
    for model in cascade.MODELS:
        original = apply_overrides.load_config(source / model / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert dict(served.parameters) == dict(original.parameters), f"{model}: declared languages unchanged"
        assert served.max_batch_size == original.max_batch_size == 0, f"{model}: does not batch"
        assert not served.HasField("dynamic_batching")
        (group,) = served.instance_group
        want = overlay[model]["instance_group"]
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == want["kind"]
        assert group.count == want["count"] >= sum(g.count for g in original.instance_group), f"{case} {model}"


@pytest.mark.slow
def test_cpu_overlay_of_the_translation_models_loads_in_real_triton(renders: dict[str, Render], tmp_path: Path) -> None:
    """The image's build step and the init container, then the real Triton binary, on values-cpu's overlay."""
    from tritonclient.grpc import InferenceServerClient

    from tessera.runtime.processes import start_triton

    assert build_models.main(["--target", str(tmp_path / "models"), "translation"]) == 0
    overlay = _overrides(renders["cpu"])
    apply_overrides.build(tmp_path / "models", tmp_path / "served", overlay, "link")
    work = tmp_path / "triton"
    server = start_triton(tmp_path / "served", work, work / "triton.log", models=list(cascade.MODELS), timeout_s=240)
    try:
        client = InferenceServerClient(server.grpc_url)
        for model in cascade.MODELS:
            assert client.is_model_ready(model), model
            config = client.get_model_config(model).config
            groups = [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group]
            want = overlay[model]["instance_group"]
            assert groups == [(want["count"], want["kind"])], f"{model}: {text_format.MessageToString(config)}"
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["rtx", "a100"])
def test_worker_pod_monitor_scrapes_the_three_workers(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    (monitor,) = [m for m in render.of("PodMonitor") if m["metadata"]["name"].endswith("-workers")]
    workers = _translation(render, "worker")
    scraped = {w.labels["tessera.io/worker"] for w in workers if selects(monitor["spec"]["selector"], w.labels)}
    assert scraped == set(STAGES)
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_kustomize_overlays_ship_translation() -> None:
    k8s = chartlib.ROOT / "k8s"
    for overlay in ("cpu", "rtx", "a100"):
        files = {p.name for p in (k8s / "overlays" / overlay).glob("*.yaml")} | {
            p.name for p in (k8s / "base").glob("*.yaml")
        }
        for name in ["tessera-translation", *(f"tessera-translation-{s}" for s in STAGES)]:
            assert f"networkpolicy-{name}.yaml" in files, f"{overlay}: {name}"
            assert any(f.endswith(f"-{name}.yaml") and f.startswith("deployment") for f in files), f"{overlay}: {name}"
        triton = "inferenceservice" if overlay == "a100" else "deployment"
        assert f"{triton}-tessera-triton-translation.yaml" in files, overlay
    a100 = {p.name for p in (k8s / "overlays" / "a100").glob("scaledobject-tessera-translation-*.yaml")}
    assert a100 == {f"scaledobject-tessera-translation-{s}.yaml" for s in STAGES}
