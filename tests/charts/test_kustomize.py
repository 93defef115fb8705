"""k8s/: the kustomize base + overlays are what k8s/generate.py writes from the chart, and build to its renders."""

from __future__ import annotations

from pathlib import Path

import chartlib
import yaml

gen = chartlib.gen


def test_k8s_tree_is_current() -> None:
    chartlib.ensure_tools()
    problems = gen.diff_trees(gen.generate(), gen.current_tree())
    assert not problems, "k8s/ is stale; run `python k8s/generate.py`:\n" + "\n".join(problems)


def test_kustomize_builds_equal_the_charts_renders(staged_chart: Path) -> None:
    problems = chartlib.kustomize_differences(staged_chart)
    assert not problems, "\n".join(problems)


def test_staleness_is_detected() -> None:
    chartlib.ensure_tools()
    want = gen.generate()
    have = dict(want)
    path = next(p for p in have if p.startswith("overlays/a100/deployment-"))
    have[path] = have[path].replace("replicas", "replicaz", 1) + "\n"
    have["overlays/a100/extra.yaml"] = "kind: ConfigMap\n"
    del have["base/kustomization.yaml"]
    problems = gen.diff_trees(want, have)
    assert any(path in p for p in problems)
    assert "not generated (remove it): k8s/overlays/a100/extra.yaml" in problems
    assert "missing: k8s/base/kustomization.yaml" in problems


def test_overlays_cover_the_three_reference_clusters() -> None:
    assert set(gen.OVERLAYS) == {"cpu", "rtx", "a100"}
    for name in gen.OVERLAYS:
        kustomization = yaml.safe_load((chartlib.ROOT / "k8s" / "overlays" / name / "kustomization.yaml").read_text())
        assert kustomization["resources"][0] == "../../base"
        assert kustomization["namespace"] == chartlib.NAMESPACE
    a100 = (chartlib.ROOT / "k8s" / "overlays" / "a100").glob("inferenceservice-*.yaml")
    assert list(a100), "the a100 overlay serves models through KServe"
    for path in (chartlib.ROOT / "k8s").rglob("*.yaml"):
        text = path.read_text()
        assert "helm.sh/chart" not in text and "managed-by: Helm" not in text, path
