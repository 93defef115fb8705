"""Every workload the chart renders: probes, resources, non-root read-only containers, and its companions."""

from __future__ import annotations

import math
from typing import Any

import chartlib
import pytest
from manifests import Render, Workload, selects, workloads

CASES = list(chartlib.CASES)
TESSERA_COMPONENTS = {"service", "worker", "triton"}
# A federation's Flower processes: gRPC health without TLS on their own port, whatever tls.enabled says.
FLOWER_COMPONENTS = {"superlink", "serverapp"}


def _quantity(value: Any) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _all_workloads(renders: dict[str, Render]) -> list[tuple[str, Workload]]:
    return [(case, w) for case in CASES for w in workloads(renders[case])]


@pytest.mark.parametrize("case", CASES)
def test_every_case_renders_tessera_workloads(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    found = {(w.component, w.capability) for w in workloads(render)}
    for cap in render.enabled():
        assert ("service", cap) in found, f"{case}: no service workload for {cap}"
        assert ("triton", cap) in found, f"{case}: no Triton workload for {cap}"


@pytest.mark.parametrize("case", CASES)
def test_containers_have_probes_resources_and_a_locked_down_security_context(
    renders: dict[str, Render], case: str
) -> None:
    render = renders[case]
    tls = render.values["tls"]["enabled"]
    for w in workloads(render):
        pod_sc = w.spec.get("securityContext") or {}
        assert pod_sc.get("runAsNonRoot") is True, f"{case} {w.name}: pod runAsNonRoot"
        assert pod_sc.get("runAsUser", 0) > 0, f"{case} {w.name}: pod runs as uid 0"
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{case} {w.name}: seccomp"
        assert w.spec.get("automountServiceAccountToken") is False, f"{case} {w.name}: token automount"
        volumes = {v["name"]: v for v in w.spec.get("volumes", [])}
        for c in [*w.spec.get("initContainers", []), *w.containers]:
            where = f"{case} {w.kind}/{w.name} container {c['name']}"
            sc = c.get("securityContext") or {}
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{where}: capabilities not dropped"
            res = c.get("resources") or {}
            assert res.get("requests", {}).get("memory") and res.get("requests", {}).get("cpu"), f"{where}: requests"
            assert res.get("limits", {}).get("memory"), f"{where}: memory limit"
            assert _quantity(res["limits"]["memory"]) >= _quantity(res["requests"]["memory"]), (
                f"{where}: limit < request"
            )
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: no writable /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp is not an emptyDir"
        for c in w.containers:
            where = f"{case} {w.kind}/{w.name} container {c['name']}"
            probes = {p: c.get(p) for p in ("startupProbe", "livenessProbe", "readinessProbe")}
            if w.component == "otel-collector":
                assert probes["livenessProbe"] and probes["readinessProbe"], f"{where}: probes"
                continue
            assert w.component in TESSERA_COMPONENTS | FLOWER_COMPONENTS, (
                f"{where}: unexpected component {w.component!r}"
            )
            for kind, probe in probes.items():
                assert probe, f"{where}: no {kind}"
                if w.component in FLOWER_COMPONENTS:
                    health = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
                    assert probe.get("grpc") == {"port": health, "service": ""}, f"{where}: {kind} {probe}"
                elif tls and w.component in ("service", "worker"):
                    assert "tcpSocket" in probe, f"{where}: {kind} must fall back to tcpSocket with TLS"
                else:
                    assert "grpc" in probe, f"{where}: {kind} is not a gRPC (grpc.health.v1) probe: {probe}"


@pytest.mark.parametrize("case", ["default", "cpu", "rtx", "a100", "kserve-serverless"])
def test_service_readiness_asks_for_the_grpc_service_and_liveness_for_the_server(
    renders: dict[str, Render], case: str
) -> None:
    render = renders[case]
    for w in workloads(render):
        if w.component != "service":
            continue
        cap = render.values["capabilities"][w.capability]
        container = w.containers[0]
        assert container["readinessProbe"]["grpc"]["service"] == cap["service"]["grpcService"]
        assert container["livenessProbe"]["grpc"]["service"] == ""
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget > 600, f"{case} {w.name}: startup budget {budget}s < the service's 600 s wait for its models"


@pytest.mark.parametrize("case", CASES)
def test_termination_grace_covers_drain_and_grace(renders: dict[str, Render], case: str) -> None:
    settings = renders[case].values["settings"]
    need = settings["TESSERA_DRAIN_DELAY_S"] + settings["TESSERA_GRACE_S"]
    for w in workloads(renders[case]):
        if w.component in ("service", "worker"):
            assert w.spec["terminationGracePeriodSeconds"] >= math.ceil(need), w.name


@pytest.mark.parametrize("case", CASES)
def test_each_service_has_service_account_hpa_pdb_and_grpc_service(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    accounts = {sa["metadata"]["name"]: sa for sa in render.of("ServiceAccount")}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in render.of("HorizontalPodAutoscaler")}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in render.of("ScaledObject")}
    pdbs = render.of("PodDisruptionBudget")
    services = render.of("Service")
    for w in workloads(render):
        account = accounts.get(w.spec.get("serviceAccountName", ""))
        assert account, f"{case} {w.name}: no ServiceAccount of its own"
        assert account["automountServiceAccountToken"] is False
        assert any(selects(p["spec"]["selector"], w.labels) for p in pdbs), f"{case} {w.name}: no PDB"
        if w.component == "service":
            cap = render.values["capabilities"][w.capability]["service"]
            assert (w.name in hpas) == cap["autoscaling"]["enabled"], f"{case} {w.name}: HPA"
            if w.name in hpas:
                assert hpas[w.name]["spec"]["minReplicas"] == cap["autoscaling"]["minReplicas"]
                assert "replicas" not in render.get("Deployment", w.name)["spec"], "HPA and replicas would fight"
            fronting = [s for s in services if selects({"matchLabels": s["spec"]["selector"]}, w.labels)]
            assert len(fronting) == 1, f"{case} {w.name}: {len(fronting)} Services select it"
            ports = {p["name"]: p for p in fronting[0]["spec"]["ports"]}
            assert ports["grpc"]["port"] == cap["port"]
        if w.component == "worker":
            assert not [s for s in services if selects({"matchLabels": s["spec"]["selector"]}, w.labels)], (
                f"{case} {w.name}: a worker takes no traffic and has no Service"
            )
            assert not (w.name in hpas and w.name in scaled), f"{case} {w.name}: both an HPA and a ScaledObject"


def test_workers_scale_on_consumer_lag_when_keda_is_on(renders: dict[str, Render]) -> None:
    render = renders["full-features"]
    relay = render.values["capabilities"]["relay"]["workers"]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in render.of("ScaledObject")}
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in render.of("HorizontalPodAutoscaler")}
    fanout = scaled["tessera-relay-fanout"]
    trigger = fanout["spec"]["triggers"][0]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == relay["fanout"]["keda"]["stream"]
    assert trigger["metadata"]["consumer"] == relay["fanout"]["keda"]["consumer"]
    assert trigger["metadata"]["lagThreshold"] == str(relay["fanout"]["keda"]["lagThreshold"])
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == render.values["nats"]["monitoringEndpoint"]
    assert "tessera-relay-sink" in hpas and "tessera-relay-sink" not in scaled  # keda off for sink: CPU HPA
    assert "replicas" not in render.get("Deployment", "tessera-relay-fanout")["spec"]


def test_keda_off_means_no_scaled_objects(renders: dict[str, Render]) -> None:
    for case in ("default", "cpu", "rtx"):
        assert not renders[case].of("ScaledObject"), case


@pytest.mark.parametrize("case", CASES)
def test_names_are_dns_labels_and_unique(renders: dict[str, Render], case: str) -> None:
    import re

    seen = set()
    for doc in renders[case].docs:
        name = doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
        key = (doc["kind"], name)
        assert key not in seen, f"{case}: duplicate {key}"
        seen.add(key)


@pytest.mark.parametrize("case", CASES)
def test_images_are_pinned(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    registry = render.values["image"]["registry"]
    for w in workloads(render):
        for c in [*w.spec.get("initContainers", []), *w.containers]:
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            if w.component in TESSERA_COMPONENTS | {"serverapp"}:
                assert image.startswith(registry + "/"), f"{image} not under image.registry {registry}"
