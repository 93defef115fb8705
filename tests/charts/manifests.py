"""Helpers over rendered manifests: the rendered documents of one case, pod templates, label selectors."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import chartlib
import yaml


@dataclass
class Render:
    """One case's rendered documents plus the values it was rendered with."""

    case: str
    docs: list[dict[str, Any]]
    values: dict[str, Any]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert found, f"{self.case}: no {kind}/{name}; have {sorted(d['metadata']['name'] for d in self.of(kind))}"
        return found[0]

    def enabled(self) -> dict[str, dict[str, Any]]:
        return {name: cap for name, cap in self.values["capabilities"].items() if cap["enabled"]}


@dataclass
class Workload:
    """A pod template: a Deployment's, or what KServe builds from an InferenceService + its ServingRuntime."""

    kind: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    containers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def component(self) -> str:
        return self.labels.get("app.kubernetes.io/component", "")

    @property
    def capability(self) -> str:
        return self.labels.get("tessera.io/capability", "")


def merge_values(*layers: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values files: maps merge, everything else replaces, null deletes."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge_values(out[key], value)
            else:
                out[key] = value
    return out


def load_values(files: list[Path]) -> dict[str, Any]:
    layers = [yaml.safe_load((chartlib.CHART / "values.yaml").read_text())]
    layers += [yaml.safe_load(path.read_text()) or {} for path in files]
    return merge_values(*layers)


def workloads(render: Render) -> list[Workload]:
    out = []
    for dep in render.of("Deployment"):
        tpl = dep["spec"]["template"]
        out.append(
            Workload(
                "Deployment",
                dep["metadata"]["name"],
                tpl["metadata"].get("labels", {}),
                tpl["metadata"].get("annotations", {}),
                tpl["spec"],
                tpl["spec"]["containers"],
            )
        )
    runtimes = {d["metadata"]["name"]: d for d in render.of("ServingRuntime")}
    for isvc in render.of("InferenceService"):
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        runtime = runtimes[model["runtime"]]
        containers = []
        for container in runtime["spec"]["containers"]:
            merged = dict(container)
            if container["name"] == "kserve-container":  # KServe overlays the model's container fields
                for key in ("env", "resources", "volumeMounts", "args", "securityContext"):
                    if key in model:
                        merged[key] = model[key]
            containers.append(merged)
        spec = {k: v for k, v in predictor.items() if k not in ("model", "labels", "annotations")}
        out.append(
            Workload(
                "InferenceService",
                isvc["metadata"]["name"],
                predictor.get("labels", {}),
                predictor.get("annotations", {}),
                spec,
                containers,
            )
        )
    return out


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions In/NotIn/Exists) against a label set."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


def env_of(render: Render, w: Workload) -> dict[str, str]:
    """The first container's environment: its ConfigMap, then its own entries (secret refs as a placeholder)."""
    container = w.containers[0]
    env = dict(render.get("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])["data"])
    env.update({e["name"]: e.get("value", "<from secret>") for e in container.get("env", [])})
    return env


def policy_of(render: Render, w: Workload) -> dict[str, Any]:
    """The spec of the one NetworkPolicy that selects the workload's pods."""
    found = [p for p in render.of("NetworkPolicy") if selects(p["spec"]["podSelector"], w.labels)]
    assert len(found) == 1, f"{render.case} {w.name}: {len(found)} NetworkPolicies"
    return dict(found[0]["spec"])


def rule_ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def deploy_script(name: str) -> ModuleType:
    """deploy/triton/<name>.py as a module (the image's init container and model builder)."""
    spec = importlib.util.spec_from_file_location(f"tessera_{name}", chartlib.ROOT / "deploy" / "triton" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
