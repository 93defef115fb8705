"""Shared by tests/charts and scripts/charts_check.sh: render the chart offline, validate what it renders.

    python tests/charts/chartlib.py render OUTDIR          # helm template of every case -> OUTDIR/<case>.yaml
    python tests/charts/chartlib.py crds FILE...           # CRD objects against tests/charts/schemas
    python tests/charts/chartlib.py kustomize              # kubectl kustomize k8s/overlays/* == the chart's renders

Core Kubernetes kinds are validated by kubernetes-validate (strict); the CRD kinds Tessera renders (KServe, KEDA,
Prometheus Operator) by the schema subsets in tests/charts/schemas, whose embedded Kubernetes types resolve to the
same kubernetes-validate definitions (K8S_DEFINITIONS_VERSION).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "charts" / "tessera"
SCHEMAS = HERE / "schemas"
FIXTURES = HERE / "values"
CHECK_SCRIPT = ROOT / "scripts" / "charts_check.sh"

# Kubernetes versions the chart is validated against: the chart's kubeVersion floor and the newest known.
K8S_VERSIONS = ("1.29.0", "1.37.0")
# Definitions the CRD schemas' embedded core types resolve to (strict: unknown fields rejected).
K8S_DEFINITIONS_VERSION = "1.29.0"

# name -> values files (in order); every case is linted, rendered and validated.
CASES: dict[str, list[Path]] = {
    "default": [],
    "cpu": [CHART / "values-cpu.yaml"],
    "rtx": [CHART / "values-rtx.yaml"],
    "a100": [CHART / "values-a100.yaml"],
    "full-features": [FIXTURES / "full-features.yaml"],
    "kserve-serverless": [FIXTURES / "kserve-serverless.yaml"],
}
CRD_GROUPS = ("serving.kserve.io", "keda.sh", "monitoring.coreos.com")


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("tessera_k8s_generate", ROOT / "k8s" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
load_docs = gen.load_docs
stage_chart = gen.stage_chart
RELEASE = gen.RELEASE
NAMESPACE = gen.NAMESPACE


def ensure_tools() -> tuple[str, str]:
    """helm and kubectl, installed into build/tools by scripts/charts_check.sh --tools-only when missing."""
    try:
        return gen.find_tool("helm"), gen.find_tool("kubectl")
    except SystemExit:
        subprocess.run(["bash", str(CHECK_SCRIPT), "--tools-only"], check=True)
        return gen.find_tool("helm"), gen.find_tool("kubectl")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ensure_tools()[0], *args], capture_output=True, text=True, check=False)


def render(
    chart: Path, values: list[Path] | None = None, sets: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    ensure_tools()
    return gen.helm_template(chart, values or [], sets)


def render_case(chart: Path, case: str) -> str:
    result = render(chart, CASES[case])
    if result.returncode != 0:
        raise AssertionError(f"helm template ({case}) failed:\n{result.stderr}")
    return str(result.stdout)


# --- validation -------------------------------------------------------------------------------------------------


def _k8s_schema_dir(version: str) -> Path:
    import kubernetes_validate

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"


@functools.cache
def _k8s_definitions(version: str) -> dict[str, Any]:
    return dict(json.loads((_k8s_schema_dir(version) / "_definitions.json").read_text()))


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> schema, from tests/charts/schemas/*.yaml."""
    out = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        schema = yaml.safe_load(path.read_text())
        props = schema["properties"]
        out[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return out


@functools.cache
def _crd_validator(api_version: str, kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    schema = crd_schemas()[(api_version, kind)]
    definitions = Resource.from_contents(_k8s_definitions(K8S_DEFINITIONS_VERSION))
    registry = Registry().with_resources(
        [("https://kubernetes.io/api/_definitions.json", definitions), (schema["$id"], Resource.from_contents(schema))]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def is_crd_kind(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).split("/")[0] in CRD_GROUPS


def validate_crd(doc: dict[str, Any]) -> list[str]:
    """Errors of one CRD object against its schema subset (an unknown CRD kind is an error too)."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if (doc.get("apiVersion"), doc.get("kind")) not in crd_schemas():
        return [f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in {SCHEMAS}"]
    validator = _crd_validator(doc["apiVersion"], doc["kind"])
    return [
        f"{name}: {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


@functools.cache
def _k8s_validator(version: str, kind: str, api_version: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _k8s_schema_dir(version) / f"{kind.lower()}-{group_version}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    registry = Registry().with_resources(
        [
            ("https://kubernetes.io/api/_definitions.json", Resource.from_contents(_k8s_definitions(version))),
            (schema.get("$id", str(path)), Resource.from_contents(schema)),
        ]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_k8s(doc: dict[str, Any], version: str) -> list[str]:
    """kubernetes-validate --strict semantics for one core object, in process (schemas loaded once)."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    validator = _k8s_validator(version, doc["kind"], doc["apiVersion"])
    if validator is None:
        return [f"{name}: kubernetes {version} has no {doc['apiVersion']} {doc['kind']}"]
    return [
        f"{name} (k8s {version}): {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in validator.iter_errors(doc)
    ]


# --- kustomize ------------------------------------------------------------------------------------------------


def _normalise(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for original in docs:
        doc = gen.for_kustomize(json.loads(json.dumps(original)))
        doc.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        out[gen.key(doc)] = doc
    return out


def kustomize_differences(chart: Path) -> list[str]:
    """Objects where `kubectl kustomize k8s/overlays/<o>` and the chart's render of that overlay differ."""
    kubectl = ensure_tools()[1]
    problems = []
    for overlay, values in gen.OVERLAYS.items():
        built = subprocess.run(
            [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            problems.append(f"kubectl kustomize k8s/overlays/{overlay}: {built.stderr.strip()}")
            continue
        rendered = render(chart, [CHART / values], gen.OVERLAY_SETS)
        if rendered.returncode != 0:
            problems.append(f"helm template -f {values}: {rendered.stderr.strip()}")
            continue
        have, want = _normalise(load_docs(built.stdout)), _normalise(load_docs(rendered.stdout))
        for k in sorted(set(have) | set(want)):
            if k not in have:
                problems.append(f"{overlay}: {k} rendered by the chart, missing from k8s/")
            elif k not in want:
                problems.append(f"{overlay}: {k} in k8s/ but not rendered by the chart")
            elif have[k] != want[k]:
                problems.append(f"{overlay}: {k} differs from the chart's render")
    return problems


# --- CLI ------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "render":
        out = Path(args[0])
        out.mkdir(parents=True, exist_ok=True)
        chart = stage_chart(out / "stage")
        for case in CASES:
            (out / f"{case}.yaml").write_text(render_case(chart, case))
            print(f"rendered {case}: {out / (case + '.yaml')}")
        return 0
    if command == "crds":
        errors, count = [], 0
        for path in args:
            for doc in load_docs(Path(path).read_text()):
                if is_crd_kind(doc):
                    count += 1
                    errors += [f"{path}: {e}" for e in validate_crd(doc)]
        print("\n".join(errors) if errors else f"CRD objects valid: {count} in {len(args)} files")
        return 1 if errors else 0
    if command == "kustomize":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            problems = kustomize_differences(stage_chart(Path(tmp)))
        print("\n".join(problems) if problems else "k8s/ overlays match the chart's renders")
        return 1 if problems else 0
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
