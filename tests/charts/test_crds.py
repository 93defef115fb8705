"""CRD objects (KServe, KEDA, Prometheus Operator) against the schema subsets in tests/charts/schemas."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import chartlib
import pytest
import yaml
from manifests import Render

CASES = list(chartlib.CASES)
EXPECTED_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


def _crds(render: Render) -> list[dict[str, Any]]:
    return [d for d in render.docs if chartlib.is_crd_kind(d)]


def test_a_schema_exists_for_every_crd_kind_the_chart_can_render(renders: dict[str, Render]) -> None:
    assert set(chartlib.crd_schemas()) == EXPECTED_KINDS
    rendered = {(d["apiVersion"], d["kind"]) for r in renders.values() for d in _crds(r)}
    assert rendered == EXPECTED_KINDS, "the cases must render every CRD kind at least once"


def test_every_schema_says_where_it_came_from() -> None:
    readme = (chartlib.SCHEMAS / "README.md").read_text()
    for path in chartlib.SCHEMAS.glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# Subset of the openAPIV3Schema"), path.name
        assert "kserve/kserve" in text or "kedacore/keda" in text or "prometheus-operator/" in text, path.name
        assert path.name in readme, f"{path.name} is not described in schemas/README.md"


@pytest.mark.parametrize("case", CASES)
def test_rendered_crd_objects_validate(renders: dict[str, Render], case: str) -> None:
    errors = [e for d in _crds(renders[case]) for e in chartlib.validate_crd(d)]
    assert not errors, "\n".join(errors)


def _one(renders: dict[str, Render], kind: str, path: str = "") -> dict[str, Any]:
    """The first rendered object of ``kind`` that has ``path``'s parent (a Triton on the cpu pool has no
    tolerations, for one)."""
    for case in CASES:
        for doc in renders[case].docs:
            if doc["kind"] == kind and _has_parent(doc, path):
                return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} rendered" + (f" with {path}" if path else ""))


def _has_parent(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for k in path.split(".")[:-1] if path else []:
        try:
            node = node[int(k)] if isinstance(node, list) else node[k]
        except (KeyError, IndexError, TypeError, ValueError):
            return False
    return True


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is _DELETE:
        del node[keys[-1]]
    elif isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return doc


_DELETE = object()

# (kind, path, new value, text the error must contain): each breaks what the upstream CRD requires or types.
BROKEN: list[tuple[str, str, Any, str]] = [
    ("ScaledObject", "spec.triggers", _DELETE, "'triggers' is a required property"),
    ("ScaledObject", "spec.scaleTargetRef.name", _DELETE, "'name' is a required property"),
    ("ScaledObject", "spec.triggers.0.metadata.stream", _DELETE, "'stream' is a required property"),
    ("ScaledObject", "spec.triggers.0.metadata.lagThreshold", 20, "20 is not of type 'string'"),
    ("ScaledObject", "spec.minReplicas", 1, "'minReplicas' was unexpected"),
    ("ScaledObject", "spec.fallback", {"replicas": 1}, "'failureThreshold' is a required property"),
    ("InferenceService", "spec.predictor.model.modelFormat", _DELETE, "'modelFormat' is a required property"),
    ("InferenceService", "spec.predictor.model.protocolVersion", "grpc-v3", "is not one of"),
    ("InferenceService", "spec.predictor.scaleMetric", "gpu", "is not one of"),
    ("InferenceService", "spec.predictor.tolerations.0.operator", 3, "3 is not of type"),
    ("InferenceService", "spec.predictor.initContainers.0.imagePullPolicy", ["x"], "is not of type"),
    ("InferenceService", "spec.predictor.volumes.0.emptyDir.sizeLimits", "1Gi", "'sizeLimits' was unexpected"),
    ("InferenceService", "spec.predictor.model.resources.limit", {}, "'limit' was unexpected"),
    ("InferenceService", "metadata.name", "9-triton", "does not match"),
    ("ServingRuntime", "spec.containers", _DELETE, "'containers' is a required property"),
    ("ServingRuntime", "spec.supportedModelFormats.0.priority", 0, "less than the minimum of 1"),
    ("ServingRuntime", "spec.containers.0.ports.0.containerPort", "8001", "is not of type"),
    ("ServiceMonitor", "spec.selector", _DELETE, "'selector' is a required property"),
    ("ServiceMonitor", "spec.endpoints.0.interval", "30 seconds", "does not match"),
    ("ServiceMonitor", "spec.endpoints.0.scheme", "ftp", "is not one of"),
    ("PodMonitor", "spec.podMetricsEndpoints.0.port", 8002, "is not of type 'string'"),
    ("PodMonitor", "spec.namespaceSelector.matchName", ["x"], "'matchName' was unexpected"),
]


@pytest.mark.parametrize(("kind", "path", "value", "message"), BROKEN, ids=[f"{k}:{p}" for k, p, _, _ in BROKEN])
def test_schema_catches_a_broken_object(
    renders: dict[str, Render], kind: str, path: str, value: Any, message: str
) -> None:
    doc = _set(_one(renders, kind, path), path, value)
    errors = chartlib.validate_crd(doc)
    assert any(message in e for e in errors), f"{kind} {path}={value!r}: {errors}"


def test_unknown_crd_kind_is_an_error_not_a_pass() -> None:
    doc = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}, "spec": {}}
    assert chartlib.validate_crd(doc) == [
        f"ScaledJob/x: no schema for keda.sh/v1alpha1 ScaledJob in {chartlib.SCHEMAS}"
    ]


def test_crd_check_cli_fails_on_a_broken_file(
    renders: dict[str, Render], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _set(_one(renders, "ServiceMonitor"), "spec.endpoints", _DELETE)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert chartlib.main(["crds", str(path)]) == 1
    assert "'endpoints' is a required property" in capsys.readouterr().out


def test_core_kinds_validate_strictly(renders: dict[str, Render]) -> None:
    """In-process kubernetes-validate --strict over every core object of every case (scripts/charts_check.sh runs
    the CLI too)."""
    errors = [
        e
        for case in CASES
        for doc in renders[case].docs
        if not chartlib.is_crd_kind(doc)
        for version in chartlib.K8S_VERSIONS
        for e in chartlib.validate_k8s(doc, version)
    ]
    assert not errors, "\n".join(errors[:20])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenessprobe={}), "livenessprobe"),
        (lambda d: d["spec"]["template"]["spec"].update(securityContext={"runAsNonRoot": "yes"}), "'yes'"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="grpc"), "grpc"),
    ],
    ids=["unknown-field", "wrong-type", "port-name-as-number"],
)
def test_core_validation_catches_a_broken_deployment(
    renders: dict[str, Render], mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = _one(renders, "Deployment")
    mutate(doc)
    errors = chartlib.validate_k8s(doc, chartlib.K8S_VERSIONS[0])
    assert any(message in e for e in errors), errors
