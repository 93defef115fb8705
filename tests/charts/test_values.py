"""values.schema.json and the chart's own checks: a wrong value fails `helm template` with a readable message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chartlib
import jsonschema
import pytest
import yaml

SCHEMA = json.loads((chartlib.CHART / "values.schema.json").read_text())

# (--set values, text the error must contain). Schema errors name the values path; template checks name the key
# and say what to do.
BAD_VALUES: list[tuple[dict[str, str], str]] = [
    ({"capabilities.keyframes.models.pool": "h100"}, 'unknown pool "h100"; gpuPools has: a10, a100, cpu, rtx4060, t4'),
    ({"settings.TESSERA_LOG_LEVEL": "LOUD"}, "settings.TESSERA_LOG_LEVEL: settings.TESSERA_LOG_LEVEL must be one of"),
    (
        {"capabilities.keyframes.service.settings.TESSERA_KEYFRAMES_SCORE_BATCH": "128"},
        "TESSERA_KEYFRAMES_SCORE_BATCH: Must be less than or equal to 64",
    ),
    (
        {"capabilities.keyframes.service.settings.TESSERA_KEYFRAMES_SCORE_BACH": "8"},
        "Additional property TESSERA_KEYFRAMES_SCORE_BACH is not allowed",
    ),
    ({"settings.TESSERA_PORT": "1"}, "settings: Additional property TESSERA_PORT is not allowed"),
    ({"gpuPools.t4.gpu.count": "two"}, "gpuPools.t4.gpu.count: Invalid type. Expected: integer, given: string"),
    ({"tls.enabled": "true"}, "tls.secretName: String length must be greater than or equal to 1"),
    (
        {"capabilities.monitoring.status": "planned"},
        "capabilities.monitoring is not yet built (status: planned)",
    ),
    (
        {"capabilities.translation.service.settings.TESSERA_TRANSLATION_MAX_PARTICIPANTS": "1"},
        "TESSERA_TRANSLATION_MAX_PARTICIPANTS: Must be greater than or equal to 2",
    ),
    (
        {"capabilities.translation.service.settings.TESSERA_TRANSLATION_GAP_TIMEOUT_S": "0"},
        "TESSERA_TRANSLATION_GAP_TIMEOUT_S: Must be greater than 0",
    ),
    (
        {"capabilities.translation.service.settings.TESSERA_TRANSLATION_MAX_PARTICIPANT": "8"},
        "Additional property TESSERA_TRANSLATION_MAX_PARTICIPANT is not allowed",
    ),
    (
        {"capabilities.translation.service.settings.TESSERA_TRANSLATION_MODELS_READY_TIMEOUT_S": "900"},
        "TESSERA_TRANSLATION_MODELS_READY_TIMEOUT_S=900 must be below service.startupSeconds (660)",
    ),
    (
        {"capabilities.translation.workers.asr.keda.consumer": "translation.asr"},
        "capabilities.translation.workers.asr.keda.consumer: Does not match pattern",
    ),
    ({"nats.url": ""}, "capabilities.monitoring uses NATS JetStream: set nats.enabled=true or nats.url"),
    (
        {"networkPolicy.natsPeers": "null"},
        "capabilities.monitoring uses an external NATS (nats.url) with NetworkPolicies on",
    ),
    (
        {"keda.enabled": "true", "nats.monitoringEndpoint": ""},
        "capabilities.monitoring.workers.audio.keda needs the NATS monitoring endpoint",
    ),
    (
        {"capabilities.translation.models.overrides.whisper.instanceCount": "2"},
        "capabilities.translation.models.overrides.whisper: not one of models.names (asr, mt, tts)",
    ),
    (
        {"capabilities.translation.models.overrides.asr.instanceKind": "KIND_GPU"},
        "capabilities.translation: model asr would run KIND_GPU instances on pool cpu, which has no GPU",
    ),
    ({"capabilities.keyframes.models.gpuMemoryGiB": "20"}, "gpuMemoryGiB=20 does not fit pool t4"),
    (
        {"capabilities.keyframes.models.pool": "rtx4060"},
        "TESSERA_KEYFRAMES_SCORE_BATCH=32 exceeds max_batch_size 16 of model frame_relevance_open on pool rtx4060",
    ),
    (
        {"capabilities.keyframes.service.settings.TESSERA_KEYFRAMES_MODEL_NAME": "clip"},
        "TESSERA_KEYFRAMES_MODEL_NAME=clip is not served by this capability's Triton "
        "(models.names: frame_relevance_open, frame_relevance)",
    ),
    ({"gpuPools.cpu.triton.instanceKind": "KIND_TPU"}, "gpuPools.cpu.triton.instanceKind must be one of"),
    (
        {"gpuPools.cpu.triton.instanceKind": "KIND_GPU", "capabilities.keyframes.models.pool": "cpu"},
        "model frame_relevance_open would run KIND_GPU instances on pool cpu, which has no GPU",
    ),
    ({"kserve.deploymentMode": "Knative"}, "kserve.deploymentMode must be one of the following"),
    ({"metrics.serviceMonitor.interval": "30 seconds"}, "metrics.serviceMonitor.interval: Does not match pattern"),
    (
        {"capabilities.keyframes.service.pdb.maxUnavailable": "1"},
        "capabilities.keyframes.service.pdb: Must have at most 1",
    ),
    ({"image.pullPolicy": "Sometimes"}, "image.pullPolicy must be one of the following"),
    ({"capabilities.keyframes.service.port": "9090"}, "capabilities.keyframes.service.port and metrics.port are both"),
    (
        {
            "capabilities.cry.enabled": "false",
            "capabilities.keyframes.enabled": "false",
            "capabilities.monitoring.enabled": "false",
            "capabilities.translation.enabled": "false",
            "capabilities.triage.enabled": "false",
        },
        "no capability is enabled",
    ),
    ({"capabilities.Key-Frames.enabled": "true"}, 'Property name of "Key-Frames" does not match'),
    ({"auth.token": "x", "auth.existingSecret": "y"}, "auth.token and auth.existingSecret are exclusive"),
    ({"capabilities.keyframes.service.settings.TESSERA_MEDIA_ROOTS": "/x"}, "TESSERA_MEDIA_ROOTS is not allowed"),
    ({"capabilities.keyframes.models.overrides.clip.maxBatchSize": "8"}, "overrides.clip: not one of models.names"),
    (
        {"tls.enabled": "true", "tls.secretName": "tessera-tls"},
        "capabilities.cry.federation.superlink.tlsSecret is required with tls.enabled",
    ),
    ({"capabilities.cry.models.replicas": "2"}, "capabilities.cry.federation needs models.replicas=1 (have 2)"),
    (
        {"capabilities.cry.federation.serverApp.settings.TESSERA_CRY_FL_ROUND": "3"},
        "Additional property TESSERA_CRY_FL_ROUND is not allowed",
    ),
    (
        {"capabilities.cry.federation.serverApp.settings.TESSERA_CRY_FL_BASE_MODEL": "/x"},
        "Additional property TESSERA_CRY_FL_BASE_MODEL is not allowed",
    ),
    (
        {"capabilities.cry.federation.serverApp.settings.TESSERA_CRY_FL_FRACTION_FIT": "0"},
        "TESSERA_CRY_FL_FRACTION_FIT: Must be greater than 0",
    ),
    ({"capabilities.cry.federation.superlink.healthPort": "8000"}, "superlink.port and healthPort are both 8000"),
    (
        {"capabilities.cry.federation.superlink.fleetService.type": "ExternalName"},
        "capabilities.cry.federation.superlink.fleetService.type must be one of the following",
    ),
    (
        {"capabilities.cry.federation.superlink.image.tag": ""},
        "capabilities.cry.federation.superlink.image.tag: String length must be greater than or equal to 1",
    ),
]


def _first_error_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.strip()), "")


@pytest.mark.parametrize(("sets", "message"), BAD_VALUES, ids=[",".join(s) for s, _ in BAD_VALUES])
def test_bad_value_fails_with_a_readable_message(
    helm_render: Callable[..., Any], sets: dict[str, str], message: str
) -> None:
    result = helm_render(sets)
    assert result.returncode != 0, f"helm template accepted {sets}"
    assert message in result.stderr, f"{sets}: expected {message!r} in:\n{result.stderr}"
    assert result.stderr.startswith("Error:"), result.stderr
    assert "goroutine" not in result.stderr and "panic" not in result.stderr


@pytest.mark.parametrize("case", list(chartlib.CASES))
def test_every_values_file_passes_helm_lint_strict(staged_chart: Path, case: str) -> None:
    args = ["lint", "--strict", str(staged_chart)]
    for path in chartlib.CASES[case]:
        args += ["-f", str(path)]
    result = chartlib.helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_values_yaml_is_complete_under_the_schema() -> None:
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(values))
    assert not errors, [e.message for e in errors]


def test_schema_rejects_a_bad_value_outside_helm_too() -> None:
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    values["gpuPools"]["a100"]["gpu"]["count"] = -1
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(values))


def test_planned_capabilities_stay_off_and_reference_no_image() -> None:
    for path in [chartlib.CHART / "values.yaml", *chartlib.CHART.glob("values-*.yaml")]:
        values = yaml.safe_load(path.read_text())
        for name, cap in (values.get("capabilities") or {}).items():
            if cap.get("status") == "planned":
                assert not cap.get("enabled"), f"{path.name}: {name} is not yet built"
                assert "image" not in cap.get("service", {}), f"{path.name}: {name} names an image that does not exist"


def test_built_capabilities_are_available_and_on_by_default() -> None:
    """The built capabilities exist (code, models, images): on in values.yaml, and no values file turns one off."""
    for path in [chartlib.CHART / "values.yaml", *chartlib.CHART.glob("values-*.yaml")]:
        values = yaml.safe_load(path.read_text())
        for name in ("cry", "keyframes", "monitoring", "translation", "triage"):
            cap = (values.get("capabilities") or {}).get(name, {})
            assert cap.get("enabled", True) is True and cap.get("status", "available") == "available", path.name
            if path.name == "values.yaml":
                assert cap["enabled"] is True and cap["status"] == "available"


def test_gpu_pools_cover_the_reference_hardware() -> None:
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    pools = values["gpuPools"]
    assert {"rtx4060", "t4", "a10", "a100"} <= set(pools)
    memory = {name: pools[name]["gpu"]["memoryGiB"] for name in ("rtx4060", "t4", "a10", "a100")}
    assert memory == {"rtx4060": 8, "t4": 16, "a10": 24, "a100": 80}
    for name in ("rtx4060", "t4", "a10", "a100"):
        pool = pools[name]
        assert pool["gpu"]["count"] >= 1 and pool["nodeSelector"] and pool["tolerations"], name
        assert pool["triton"]["instanceKind"] == "KIND_GPU", name
