"""GPU node pools: each capability's Triton lands on its pool, and the pool's overlay reaches config.pbtxt."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import chartlib
import pytest
from google.protobuf import text_format
from manifests import Render, Workload, workloads
from tritonclient.grpc import model_config_pb2

CASES = list(chartlib.CASES)
FRAME_RELEVANCE = chartlib.ROOT / "services" / "tessera" / "keyframes" / "models" / "frame_relevance"


def _apply_overrides() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tessera_apply_overrides", chartlib.ROOT / "deploy" / "triton" / "apply_overrides.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


apply_overrides = _apply_overrides()


def _triton(render: Render, cap: str) -> Workload:
    found = [w for w in workloads(render) if w.component == "triton" and w.capability == cap]
    assert len(found) == 1, f"{render.case}: {len(found)} Triton workloads for {cap}"
    return found[0]


def _expected_tuning(values: dict[str, Any], cap: str, model: str) -> dict[str, Any]:
    c = values["capabilities"][cap]
    tuning = {**values["gpuPools"][c["models"]["pool"]]["triton"], **c["models"].get("overrides", {}).get(model, {})}
    return {
        "instance_group": {"kind": tuning["instanceKind"], "count": tuning["instanceCount"]},
        "max_batch_size": tuning["maxBatchSize"],
        "dynamic_batching": {"max_queue_delay_microseconds": tuning["maxQueueDelayMicroseconds"]},
    }


def _overrides(render: Render, cap: str) -> dict[str, Any]:
    name = f"{_triton(render, cap).name}-overrides"
    return dict(json.loads(render.get("ConfigMap", name)["data"]["overrides.json"]))


@pytest.mark.parametrize("case", CASES)
def test_each_model_repository_lands_on_its_pool(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for cap, c in render.enabled().items():
        pool_name = c["models"]["pool"]
        pool = render.values["gpuPools"][pool_name]
        w = _triton(render, cap)
        assert w.spec.get("nodeSelector", {}) == pool["nodeSelector"], f"{case} {cap}: nodeSelector"
        assert w.spec.get("tolerations", []) == pool["tolerations"], f"{case} {cap}: tolerations"
        assert w.annotations["tessera.io/gpu-pool"] == pool_name
        assert float(w.annotations["tessera.io/gpu-memory-gib"]) == pool["gpu"]["memoryGiB"]
        triton = next(c for c in w.containers if c["name"] in ("triton", "kserve-container"))
        limits, requests = triton["resources"]["limits"], triton["resources"]["requests"]
        gpu = pool["gpu"]["resourceName"]
        if pool["gpu"]["count"]:
            assert limits[gpu] == pool["gpu"]["count"] and requests[gpu] == pool["gpu"]["count"], f"{case} {cap}"
            assert c["models"].get("gpuMemoryGiB", 0) <= pool["gpu"]["memoryGiB"]
        else:
            assert gpu not in limits and gpu not in requests, f"{case} {cap}: GPU asked on a CPU pool"
        loaded = sorted(a.removeprefix("--load-model=") for a in triton["args"] if a.startswith("--load-model="))
        assert loaded == sorted(c["models"]["names"]), f"{case} {cap}: Triton loads {loaded}"


@pytest.mark.parametrize("case", CASES)
def test_services_stay_off_the_gpu_pools(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    gpu_labels = {k for p in render.values["gpuPools"].values() for k in p["nodeSelector"]}
    for w in workloads(render):
        if w.component in ("service", "worker", "otel-collector", "superlink", "serverapp"):
            assert not gpu_labels & set(w.spec.get("nodeSelector", {})), f"{case} {w.name} on a GPU pool"
            for c in w.containers:
                assert not any("gpu" in k for k in c["resources"].get("limits", {})), f"{case} {w.name} asks a GPU"
            assert w.spec.get("nodeSelector", {}) == render.values.get("cpuPool", {}).get("nodeSelector", {})


@pytest.mark.parametrize("case", CASES)
def test_pool_overlay_is_rendered_per_model(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for cap, c in render.enabled().items():
        overrides = _overrides(render, cap)
        assert sorted(overrides) == sorted(c["models"]["names"])
        for model in c["models"]["names"]:
            assert overrides[model] == _expected_tuning(render.values, cap, model), f"{case} {cap} {model}"


def test_pools_differ_where_the_hardware_does(renders: dict[str, Render]) -> None:
    tune = {case: _overrides(renders[case], "keyframes")["frame_relevance"] for case in ("cpu", "rtx", "a100")}
    assert tune["cpu"]["instance_group"]["kind"] == "KIND_CPU"
    assert tune["rtx"]["instance_group"]["kind"] == tune["a100"]["instance_group"]["kind"] == "KIND_GPU"
    assert tune["rtx"]["max_batch_size"] < tune["a100"]["max_batch_size"]
    assert (
        tune["a100"]["dynamic_batching"]["max_queue_delay_microseconds"]
        < tune["rtx"]["dynamic_batching"]["max_queue_delay_microseconds"]
    )
    assert tune["a100"]["instance_group"]["count"] == 2  # the per-model override beats the pool's 4


def test_per_model_override_beats_the_pool(renders: dict[str, Render]) -> None:
    overrides = _overrides(renders["full-features"], "relay")
    assert overrides["relay_aux"]["instance_group"] == {"kind": "KIND_CPU", "count": 2}
    assert overrides["relay_aux"]["max_batch_size"] == 8
    assert overrides["relay_model"]["instance_group"]["kind"] == "KIND_GPU"  # the rtx4060 pool's


@pytest.mark.parametrize("case", ["default", "cpu", "rtx", "a100"])
def test_overlay_patches_the_real_model_config_and_keeps_its_contract(
    renders: dict[str, Render], case: str, tmp_path: Path
) -> None:
    """What the init container does, on the real source folders of both keyframe scorers."""
    source = tmp_path / "models"
    names = ["frame_relevance", "frame_relevance_open"]
    for name in names:
        shutil.copytree(FRAME_RELEVANCE.parent / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case], "keyframes")
    assert sorted(apply_overrides.build(source, tmp_path / "served", overlay, "link")) == names
    keyframes = renders[case].values["capabilities"]["keyframes"]["service"]["settings"]
    for name in names:
        original = apply_overrides.load_config(source / name / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / name / "config.pbtxt")
        want = overlay[name]
        assert served.max_batch_size == want["max_batch_size"]
        assert (
            served.dynamic_batching.max_queue_delay_microseconds
            == want["dynamic_batching"]["max_queue_delay_microseconds"]
        )
        assert len(served.instance_group) == 1
        group = served.instance_group[0]
        assert group.count == want["instance_group"]["count"]
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == want["instance_group"]["kind"]
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert served.backend == original.backend and dict(served.parameters) == dict(original.parameters)
        assert (tmp_path / "served" / name / "1").resolve() == (source / name / "1").resolve()
        assert keyframes["TESSERA_KEYFRAMES_SCORE_BATCH"] <= served.max_batch_size


def test_overlay_rejects_what_triton_would_reject(tmp_path: Path) -> None:
    source = tmp_path / "models"
    shutil.copytree(FRAME_RELEVANCE, source / "frame_relevance", ignore=shutil.ignore_patterns("__pycache__"))
    bad = [
        ({"clip": {"max_batch_size": 8}}, "not in"),
        ({"frame_relevance": {"instance_group": {"kind": "KIND_TPU", "count": 1}}}, "KIND_TPU"),
        ({"frame_relevance": {"instance_group": {"kind": "KIND_GPU", "count": 0}}}, "count must be >= 1"),
        ({"frame_relevance": {"max_batch_size": 0}}, "max_batch_size must be >= 1"),
        ({"frame_relevance": {"priority": 1}}, "unknown overlay fields"),
    ]
    for overlay, message in bad:
        with pytest.raises(apply_overrides.OverlayError, match=message):
            apply_overrides.build(source, tmp_path / "served", overlay, "copy")
    overrides = tmp_path / "o.json"
    overrides.write_text("{}")
    assert (
        apply_overrides.main(["--source", str(source), "--target", str(tmp_path / "s"), "--overrides", str(overrides)])
        == 2
    )


def test_keep_versions_keeps_only_published_version_folders(tmp_path: Path) -> None:
    """--keep-versions: numbered real folders absent from the source survive a rebuild; links into the image, the
    source's own versions, half-written staging folders and stray files are rebuilt or removed as without it."""
    source = tmp_path / "models"
    shutil.copytree(FRAME_RELEVANCE, source / "frame_relevance", ignore=shutil.ignore_patterns("__pycache__"))
    overlay = {"frame_relevance": {"instance_group": {"kind": "KIND_CPU", "count": 1}}}
    target = tmp_path / "served"
    model = target / "frame_relevance"
    apply_overrides.build(source, target, overlay, "copy")
    (model / "1" / "stale.txt").write_text("left in the source's own version")
    for published in ("2", "10"):
        (model / published).mkdir()
        (model / published / "model.pt").write_text(published)
    (model / ".staging-11").mkdir()
    (model / "12").symlink_to(source / "frame_relevance" / "1")
    (model / "notes.txt").write_text("stray")
    (model / "config.pbtxt").write_text("garbage")
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(overlay))
    args = ["--source", str(source), "--target", str(target), "--overrides", str(overrides), "--mode", "copy"]
    assert apply_overrides.main([*args, "--keep-versions"]) == 0
    own = {p.name for p in (source / "frame_relevance").iterdir()}
    assert {p.name for p in model.iterdir()} == own | {"2", "10"}
    assert (model / "2" / "model.pt").read_text() == "2" and (model / "10" / "model.pt").read_text() == "10"
    assert not (model / "1" / "stale.txt").exists(), "the source's versions are rebuilt from the source"
    assert apply_overrides.load_config(model / "config.pbtxt").instance_group[0].count == 1
    assert apply_overrides.main(args) == 0
    assert {p.name for p in model.iterdir()} == own, "without the flag nothing of the target's own survives"
    (target / "frame_relevance").rename(tmp_path / "elsewhere")
    (target / "frame_relevance").symlink_to(tmp_path / "elsewhere")  # a link as the model folder is replaced
    apply_overrides.build(source, target, overlay, "link", keep_versions=True)
    assert not model.is_symlink() and (model / "1").is_symlink()
    assert (tmp_path / "elsewhere" / "1").is_dir(), "the link's target is left alone"


BATCHING_MODEL = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
"""
BATCHING_MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return out
"""


def test_overlaid_repository_loads_in_real_triton(renders: dict[str, Render], tmp_path: Path) -> None:
    """The linked version folder + patched config.pbtxt is a repository the real Triton loads as patched."""
    from tritonclient.grpc import InferenceServerClient

    from tessera.runtime.processes import start_triton

    source = tmp_path / "image-models"
    (source / "batcher" / "1").mkdir(parents=True)
    (source / "batcher" / "config.pbtxt").write_text(BATCHING_MODEL.format(name="batcher"))
    (source / "batcher" / "1" / "model.py").write_text(BATCHING_MODEL_PY)
    # the cpu pool's overlay, as the values-cpu render would write it for this model
    tuning = _overrides(renders["cpu"], "keyframes")["frame_relevance"]
    tuning = {**tuning, "max_batch_size": 4, "instance_group": {"kind": "KIND_CPU", "count": 2}}
    apply_overrides.build(source, tmp_path / "served", {"batcher": tuning}, "link")
    work = tmp_path / "triton"
    server = start_triton(tmp_path / "served", work, work / "triton.log", models=["batcher"], timeout_s=90)
    try:
        client = InferenceServerClient(server.grpc_url)
        config = client.get_model_config("batcher").config
        assert config.max_batch_size == 4
        assert (
            config.dynamic_batching.max_queue_delay_microseconds
            == tuning["dynamic_batching"]["max_queue_delay_microseconds"]
        )
        assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [
            (2, "KIND_CPU")
        ]
        assert client.is_model_ready("batcher")
    finally:
        server.stop()
    assert text_format.MessageToString(config)  # parsed by Triton's own proto
