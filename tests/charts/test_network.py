"""NetworkPolicies: client-facing services take outside traffic, workers talk only to NATS and Triton."""

from __future__ import annotations

from typing import Any

import chartlib
import pytest
from manifests import Render, Workload, selects, workloads

CASES = list(chartlib.CASES)
OTLP = {4317, 4318}


def _policy(render: Render, w: Workload) -> dict[str, Any]:
    found = [p for p in render.of("NetworkPolicy") if selects(p["spec"]["podSelector"], w.labels)]
    assert len(found) == 1, f"{render.case} {w.kind}/{w.name}: selected by {len(found)} NetworkPolicies"
    return found[0]


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def _peer_pods(render: Render, rule: dict[str, Any]) -> list[Workload]:
    """Rendered workloads that a rule's podSelector-only peers select."""
    return [
        w
        for w in workloads(render)
        for peer in rule.get("to", rule.get("from", []))
        if set(peer) == {"podSelector"} and selects(peer["podSelector"], w.labels)
    ]


@pytest.mark.parametrize("case", CASES)
def test_every_pod_is_isolated_in_both_directions(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for w in workloads(render):
        assert sorted(_policy(render, w)["spec"]["policyTypes"]) == ["Egress", "Ingress"]


@pytest.mark.parametrize("case", CASES)
def test_services_take_clients_on_their_grpc_port(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    np = render.values["networkPolicy"]
    for w in workloads(render):
        if w.component != "service":
            continue
        svc = render.values["capabilities"][w.capability]["service"]
        rules = _policy(render, w)["spec"]["ingress"]
        grpc = [r for r in rules if _ports(r) == {svc["port"]}]
        assert len(grpc) == 1, f"{case} {w.name}: one ingress rule for the gRPC port"
        if svc.get("clientFacing"):
            assert grpc[0].get("from", []) == np["clientFrom"], f"{case} {w.name}: clients per networkPolicy.clientFrom"
        else:
            assert grpc[0]["from"] == [
                {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": chartlib.RELEASE}}}
            ]
        others = [r for r in rules if r is not grpc[0]]
        assert all(_ports(r) == {render.values["metrics"]["port"]} for r in others), f"{case} {w.name}: {others}"


@pytest.mark.parametrize("case", CASES)
def test_workers_talk_only_to_nats_and_triton(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    allowed = {53, render.values["nats"]["port"], render.values["triton"]["grpcPort"]}
    if render.values["otel"]["enabled"]:
        allowed |= OTLP
    for w in workloads(render):
        if w.component != "worker":
            continue
        spec = _policy(render, w)["spec"]
        assert all(_ports(r) == {render.values["metrics"]["port"]} for r in spec["ingress"]), (
            f"{case} {w.name}: a worker takes no traffic but scrapes"
        )
        for rule in spec["egress"]:
            assert _ports(rule) <= allowed, f"{case} {w.name}: egress to {_ports(rule)}"
            assert rule.get("to"), f"{case} {w.name}: egress rule open to every destination"
        triton_rules = [r for r in spec["egress"] if render.values["triton"]["grpcPort"] in _ports(r)]
        assert [t.capability for r in triton_rules for t in _peer_pods(render, r)] == [w.capability], (
            f"{case} {w.name}: Triton egress must reach exactly its capability's Triton"
        )
        nats = [r for r in spec["egress"] if render.values["nats"]["port"] in _ports(r)]
        assert len(nats) == 1, f"{case} {w.name}: NATS egress"
        if render.values["nats"]["enabled"]:
            assert nats[0]["to"] == [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "nats",
                            "app.kubernetes.io/instance": chartlib.RELEASE,
                        }
                    }
                }
            ]
        else:
            assert nats[0]["to"] == render.values["networkPolicy"]["natsPeers"]


@pytest.mark.parametrize("case", CASES)
def test_triton_takes_calls_from_its_capability_only(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    t = render.values["triton"]
    for w in workloads(render):
        if w.component != "triton":
            continue
        spec = _policy(render, w)["spec"]
        calls = [r for r in spec["ingress"] if t["grpcPort"] in _ports(r)]
        assert len(calls) == 1
        callers = _peer_pods(render, calls[0])
        assert callers, f"{case} {w.name}: nobody may call Triton"
        assert {(c.component, c.capability) for c in callers} <= {
            ("service", w.capability),
            ("worker", w.capability),
        }, f"{case} {w.name}: callers {[(c.name) for c in callers]}"
        for rule in spec["egress"]:
            assert _ports(rule) <= {53, 4318}, f"{case} {w.name}: Triton egress {_ports(rule)}"
        # the federation's ServerApp (model loads over HTTP), of the same capability and only when it is on
        loads = [r for r in spec["ingress"] if _ports(r) == {t["httpPort"]}]
        federated = render.values["capabilities"][w.capability].get("federation", {}).get("enabled", False)
        assert len(loads) == (1 if federated else 0), f"{case} {w.name}: HTTP-only rules {loads}"
        for rule in loads:
            assert {(c.component, c.capability) for c in _peer_pods(render, rule)} == {("serverapp", w.capability)}


@pytest.mark.parametrize("case", CASES)
def test_service_egress_reaches_its_triton_and_nothing_unexpected(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for w in workloads(render):
        if w.component != "service":
            continue
        cap = render.values["capabilities"][w.capability]
        allowed = {53, render.values["triton"]["grpcPort"]}
        if cap.get("usesBus") or cap.get("workers"):
            allowed.add(render.values["nats"]["port"])
        if render.values["otel"]["enabled"]:
            allowed |= OTLP
        egress = _policy(render, w)["spec"]["egress"]
        assert set().union(*(_ports(r) for r in egress)) == allowed, f"{case} {w.name}"
        triton = [r for r in egress if render.values["triton"]["grpcPort"] in _ports(r)]
        assert [p.name for r in triton for p in _peer_pods(render, r)] == [
            next(x.name for x in workloads(render) if x.component == "triton" and x.capability == w.capability)
        ]


def test_serverless_kserve_lets_the_knative_activator_in(renders: dict[str, Render]) -> None:
    knative = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-serving"}}}
    for case in CASES:
        render = renders[case]
        serverless = render.values["kserve"]["enabled"] and render.values["kserve"]["deploymentMode"] == "Serverless"
        for w in workloads(render):
            if w.component == "triton":
                peers = [p for r in _policy(render, w)["spec"]["ingress"] for p in r.get("from", [])]
                assert (knative in peers) == serverless, f"{case} {w.name}"
