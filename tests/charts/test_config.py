"""The TESSERA_* configuration the chart renders: the services' own names, values they accept, matching ports."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import annotated_types
import chartlib
import pytest
import yaml
from manifests import Render, Workload, selects, workloads

from tessera.cry.fl.settings import FederationSettings
from tessera.cry.settings import CrySettings
from tessera.keyframes.api import KeyframesSettings
from tessera.monitoring.settings import MonitoringSettings
from tessera.runtime import config
from tessera.runtime.config import ServerSettings
from tessera.translation import cascade
from tessera.translation.api import TranslationSettings
from tessera.triage.settings import TriageSettings

CASES = list(chartlib.CASES)
SCHEMA = json.loads((chartlib.CHART / "values.schema.json").read_text())
CHART_MANAGED = {
    "TESSERA_HOST",
    "TESSERA_PORT",
    "TESSERA_METRICS_PORT",
    "TESSERA_NATS_URL",
    "TESSERA_TRITON_URL",
    "TESSERA_AUTH_TOKEN",
    "TESSERA_TLS_CERT_FILE",
    "TESSERA_TLS_KEY_FILE",
}


# The capability's own settings class, per capability with one (read from the code).
CAPABILITY_SETTINGS: dict[str, type[Any]] = {
    "cry": CrySettings,
    "keyframes": KeyframesSettings,
    "monitoring": MonitoringSettings,
    "translation": TranslationSettings,
    "triage": TriageSettings,
}
SETTINGS_DEFINITIONS = [
    ("serverSettings", ServerSettings),
    *((f"{cap}Settings", cls) for cap, cls in sorted(CAPABILITY_SETTINGS.items())),
    ("cryFederationSettings", FederationSettings),  # capabilities.cry.federation.serverApp.settings (test_cry.py)
]


def env_names(settings_cls: type[Any]) -> set[str]:
    prefix = settings_cls.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in settings_cls.model_fields}


def _configmap(render: Render, w: Workload) -> dict[str, str]:
    container = w.containers[0]
    name = container["envFrom"][0]["configMapRef"]["name"]
    return dict(render.get("ConfigMap", name)["data"])


def _container_env(render: Render, w: Workload) -> dict[str, str]:
    env = _configmap(render, w)
    for item in w.containers[0].get("env", []):
        env[item["name"]] = item.get("value", "<from secret>")
    return env


def test_schema_names_exactly_the_server_settings() -> None:
    listed = set(SCHEMA["definitions"]["serverSettings"]["properties"])
    assert listed | CHART_MANAGED == env_names(ServerSettings), "values.schema.json vs ServerSettings"
    assert not listed & CHART_MANAGED


@pytest.mark.parametrize("cap", sorted(CAPABILITY_SETTINGS))
def test_schema_names_exactly_each_capabilitys_settings(cap: str) -> None:
    listed = set(SCHEMA["definitions"][f"{cap}Settings"]["properties"])
    assert listed == env_names(CAPABILITY_SETTINGS[cap]), f"values.schema.json vs {CAPABILITY_SETTINGS[cap].__name__}"


@pytest.mark.parametrize("cap", sorted(CAPABILITY_SETTINGS))
def test_each_capabilitys_settings_are_checked_by_its_definition(cap: str) -> None:
    entry = SCHEMA["properties"]["capabilities"]["properties"][cap]["allOf"]
    assert entry[0] == {"$ref": "#/definitions/capability"}
    ref = entry[1]["properties"]["service"]["properties"]["settings"]["$ref"]
    assert ref == f"#/definitions/{cap}Settings"


@pytest.mark.parametrize(("definition", "settings_cls"), SETTINGS_DEFINITIONS)
def test_schema_types_match_the_settings_classes(definition: str, settings_cls: type[Any]) -> None:
    json_types = {int: "integer", float: "number", str: "string", bool: "boolean"}
    props = SCHEMA["definitions"][definition]["properties"]
    prefix = settings_cls.model_config["env_prefix"]
    for name, info in settings_cls.model_fields.items():
        prop = props.get(f"{prefix}{name}".upper())
        if prop is None or info.annotation not in json_types:
            continue  # chart-managed, or not a scalar (media roots: a comma-separated string)
        assert prop["type"] == json_types[info.annotation], f"{definition} {name}: {prop['type']}"


@pytest.mark.parametrize(("definition", "settings_cls"), SETTINGS_DEFINITIONS)
def test_schema_bounds_match_the_settings_classes(definition: str, settings_cls: type[Any]) -> None:
    props = SCHEMA["definitions"][definition]["properties"]
    prefix = settings_cls.model_config["env_prefix"]
    for name, info in settings_cls.model_fields.items():
        prop = props.get(f"{prefix}{name}".upper())
        if prop is None:
            continue
        for bound in info.metadata:
            if isinstance(bound, annotated_types.Ge):
                assert prop.get("minimum") == bound.ge, f"{name}: ge {bound.ge}"
            elif isinstance(bound, annotated_types.Gt):
                assert prop.get("exclusiveMinimum") == bound.gt, f"{name}: gt {bound.gt}"
            elif isinstance(bound, annotated_types.Le):
                assert prop.get("maximum") == bound.le, f"{name}: le {bound.le}"
        bounded = {type(b) for b in info.metadata}
        for key, kind in (("minimum", annotated_types.Ge), ("exclusiveMinimum", annotated_types.Gt)):
            assert (key in prop) == (kind in bounded), f"{name}: the schema's {key} is not in the settings class"
        assert ("maximum" in prop) == (annotated_types.Le in bounded), f"{name}: maximum"


def test_chart_defaults_equal_the_services_defaults() -> None:
    defaults = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    for cap, settings_cls in CAPABILITY_SETTINGS.items():
        service = defaults["capabilities"][cap]["service"]
        assert service["port"] == ServerSettings.model_fields["port"].default
        prefix = settings_cls.model_config["env_prefix"]
        for env, value in service["settings"].items():
            field = env.removeprefix(prefix).lower()
            assert settings_cls.model_fields[field].default == value, env


def test_translation_configmap_block_is_every_translation_setting_at_its_default() -> None:
    """values.yaml lists the whole TranslationSettings block, so the ConfigMap shows every knob the gateway reads."""
    defaults = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    settings = defaults["capabilities"]["translation"]["service"]["settings"]
    assert set(settings) == env_names(TranslationSettings)


@pytest.mark.parametrize("case", CASES)
def test_rendered_configuration_uses_only_names_the_services_read(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for w in workloads(render):
        if w.component not in ("service", "worker"):
            continue
        known = env_names(ServerSettings)
        if w.capability in CAPABILITY_SETTINGS:
            known |= env_names(CAPABILITY_SETTINGS[w.capability])
        for name in _container_env(render, w):
            own = name.startswith(f"TESSERA_{w.capability.upper()}_") and w.capability not in CAPABILITY_SETTINGS
            if name.startswith("TESSERA_") and not own:  # fixtures' made-up capabilities have no class to check
                assert name in known, f"{case} {w.name}: {name} is read by no settings class"


@pytest.mark.parametrize("case", CASES)
def test_rendered_configuration_loads_in_the_services_settings(
    renders: dict[str, Render], case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    render = renders[case]
    for w in workloads(render):
        if w.capability != "keyframes" or w.component != "service":
            continue
        env = _container_env(render, w)
        for key in ("TESSERA_TLS_CERT_FILE", "TESSERA_TLS_KEY_FILE"):
            if key in env:  # the files come from the TLS Secret at run time
                (tmp_path / key).write_text("-")
                env[key] = str(tmp_path / key)
        for key in [k for k in os.environ if k.startswith("TESSERA_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        server = config.load(ServerSettings)
        own = config.load(KeyframesSettings)
        svc = render.values["capabilities"]["keyframes"]["service"]
        assert server.host == "0.0.0.0" and server.port == svc["port"]
        assert server.metrics_port == (render.values["metrics"]["port"] if render.values["metrics"]["enabled"] else 0)
        assert own.score_batch == svc["settings"]["TESSERA_KEYFRAMES_SCORE_BATCH"]
        assert own.cache_bytes == svc["settings"]["TESSERA_KEYFRAMES_CACHE_BYTES"]
        assert server.max_receive_message_bytes == render.values["settings"]["TESSERA_MAX_RECEIVE_MESSAGE_BYTES"]
        limit = w.containers[0]["resources"]["limits"]["memory"]
        assert own.cache_bytes < _bytes(limit), f"{case}: thumbnail cache does not fit the memory limit {limit}"


@pytest.mark.parametrize("case", CASES)
def test_rendered_translation_configuration_loads_in_its_settings(
    renders: dict[str, Render], case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The gateway's and every worker's environment loads in ServerSettings and TranslationSettings."""
    render = renders[case]
    if "translation" not in render.enabled():
        assert not [w.name for w in workloads(render) if w.capability == "translation"], f"{case}: translation is off"
        return
    svc = render.values["capabilities"]["translation"]["service"]
    seen = set()
    for w in workloads(render):
        if w.capability != "translation" or w.component not in ("service", "worker"):
            continue
        env = _container_env(render, w)
        for key in ("TESSERA_TLS_CERT_FILE", "TESSERA_TLS_KEY_FILE"):
            if key in env:
                (tmp_path / key).write_text("-")
                env[key] = str(tmp_path / key)
        for key in [k for k in os.environ if k.startswith("TESSERA_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        server = config.load(ServerSettings)
        own = config.load(TranslationSettings)
        port = svc["port"] if w.component == "service" else w.containers[0]["ports"][0]["containerPort"]
        assert server.host == "0.0.0.0" and server.port == port, f"{case} {w.name}"
        assert server.nats_url.startswith("nats://"), f"{case} {w.name}: TESSERA_NATS_URL {server.nats_url!r}"
        assert server.metrics_port == (render.values["metrics"]["port"] if render.values["metrics"]["enabled"] else 0)
        for env_name, value in svc["settings"].items():
            field = env_name.removeprefix("TESSERA_TRANSLATION_").lower()
            assert getattr(own, field) == value, f"{case} {w.name}: {env_name}"
        seen.add(w.component)
    assert seen == {"service", "worker"}, f"{case}: {seen}"


@pytest.mark.parametrize("case", CASES)
def test_translation_timeouts_fit_the_cascade_and_the_probes(renders: dict[str, Render], case: str) -> None:
    """Ordered delivery waits longer than a stage's redelivery (ack wait); the startup probe outlasts the model wait."""
    render = renders[case]
    if "translation" not in render.enabled():
        assert not [w.name for w in workloads(render) if w.capability == "translation"], f"{case}: translation is off"
        return
    settings = render.values["capabilities"]["translation"]["service"]["settings"]
    ack_wait = max(spec.ack_wait_s for spec in cascade.CONSUMERS.values())
    assert settings["TESSERA_TRANSLATION_GAP_TIMEOUT_S"] > ack_wait
    gateway = next(w for w in workloads(render) if w.capability == "translation" and w.component == "service")
    startup = gateway.containers[0]["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget > settings["TESSERA_TRANSLATION_MODELS_READY_TIMEOUT_S"], f"{case}: startup budget {budget}s"


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if str(quantity).endswith(suffix):
            return int(float(str(quantity)[: -len(suffix)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("case", CASES)
def test_ports_match_the_services_config(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    for w in workloads(render):
        if w.component not in ("service", "worker"):
            continue
        env = _container_env(render, w)
        container = w.containers[0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == int(env["TESSERA_PORT"]), f"{case} {w.name}: grpc port vs TESSERA_PORT"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            target = container[probe].get("grpc") or container[probe].get("tcpSocket")
            assert target["port"] == int(env["TESSERA_PORT"]), f"{case} {w.name}: {probe} port"
        if render.values["metrics"]["enabled"]:
            assert ports["metrics"] == int(env["TESSERA_METRICS_PORT"])
        if w.component == "service":
            svc = render.get("Service", w.name)
            by_name = {p["name"]: p for p in svc["spec"]["ports"]}
            assert by_name["grpc"]["targetPort"] == "grpc"
            assert by_name["grpc"]["port"] == render.values["capabilities"][w.capability]["service"]["port"]


@pytest.mark.parametrize("case", CASES)
def test_triton_url_reaches_the_capabilitys_triton_grpc_port(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    t = render.values["triton"]
    for w in workloads(render):
        if w.component != "service":
            continue
        host, port = _container_env(render, w)["TESSERA_TRITON_URL"].rsplit(":", 1)
        name, namespace = host.split(".")[:2]
        assert namespace == chartlib.NAMESPACE and host.endswith(".svc.cluster.local")
        triton = next(x for x in workloads(render) if x.component == "triton" and x.capability == w.capability)
        if render.values["kserve"]["enabled"]:
            # KServe's predictor Service maps predictorPort to the runtime container's first port
            assert name == f"{triton.name}-predictor" and int(port) == render.values["kserve"]["predictorPort"]
            first = triton.containers[0]["ports"][0]
            assert first["name"] == "h2c" and first["containerPort"] == t["grpcPort"]
        else:
            svc = render.get("Service", name)
            by_port = {p["port"]: p for p in svc["spec"]["ports"]}
            assert by_port[int(port)]["targetPort"] == "grpc"
            container_ports = {p["name"]: p["containerPort"] for p in triton.containers[0]["ports"]}
            assert container_ports["grpc"] == t["grpcPort"]
            assert f"--grpc-port={t['grpcPort']}" in triton.containers[0]["args"]


def test_auth_token_comes_from_a_secret(renders: dict[str, Render]) -> None:
    full = renders["full-features"]
    secret = full.get("Secret", "tessera-auth")
    assert secret["stringData"]["TESSERA_AUTH_TOKEN"] == full.values["auth"]["token"]
    for case, secret_name in (("full-features", "tessera-auth"), ("rtx", "tessera-auth"), ("a100", "tessera-auth")):
        for w in workloads(renders[case]):
            if w.component == "service":
                env = {e["name"]: e for e in w.containers[0]["env"]}
                ref = env["TESSERA_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": secret_name, "key": "TESSERA_AUTH_TOKEN"}, case
    assert not renders["rtx"].of("Secret"), "existingSecret: the chart must not render one"
    for w in workloads(renders["default"]):
        assert all(e["name"] != "TESSERA_AUTH_TOKEN" for c in w.containers for e in c.get("env", []))
    for doc in renders["full-features"].of("ConfigMap"):
        assert "TESSERA_AUTH_TOKEN" not in doc["data"], "the token must not land in a ConfigMap"


def test_tls_mounts_the_secret_where_the_settings_point(renders: dict[str, Render]) -> None:
    render = renders["full-features"]
    for w in workloads(render):
        if w.component not in ("service", "worker"):
            continue
        env = _container_env(render, w)
        mounts = {m["name"]: m for m in w.containers[0]["volumeMounts"]}
        volumes = {v["name"]: v for v in w.spec["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == render.values["tls"]["secretName"]
        assert env["TESSERA_TLS_CERT_FILE"] == f"{mounts['tls']['mountPath']}/tls.crt"
        assert env["TESSERA_TLS_KEY_FILE"] == f"{mounts['tls']['mountPath']}/tls.key"


def test_media_claim_becomes_the_media_root(renders: dict[str, Render]) -> None:
    render = renders["rtx"]
    w = next(x for x in workloads(render) if x.component == "service" and x.capability == "keyframes")
    media = render.values["capabilities"]["keyframes"]["service"]["media"]
    mounts = {m["name"]: m for m in w.containers[0]["volumeMounts"]}
    assert mounts["media"]["mountPath"] == media["mountPath"] and mounts["media"]["readOnly"] is True
    assert {v["name"]: v for v in w.spec["volumes"]}["media"]["persistentVolumeClaim"]["claimName"] == media[
        "claimName"
    ]
    assert _container_env(render, w)["TESSERA_MEDIA_ROOTS"] == media["mountPath"]


def test_nats_and_otel_endpoints(renders: dict[str, Render]) -> None:
    serverless = renders["kserve-serverless"]  # NATS subchart on (release "tessera": its servers are tessera-nats)
    relay = next(w for w in workloads(serverless) if w.component == "service" and w.capability == "relay")
    assert _container_env(serverless, relay)["TESSERA_NATS_URL"] == "nats://tessera-nats.tessera.svc.cluster.local:4222"
    trigger = serverless.of("ScaledObject")[0]["spec"]["triggers"][0]["metadata"]
    assert trigger["natsServerMonitoringEndpoint"] == "tessera-nats.tessera.svc.cluster.local:8222"
    a100 = renders["a100"]
    collector = a100.get("Service", "tessera-otel-collector")
    assert {p["port"] for p in collector["spec"]["ports"]} == {4317, 4318}
    for w in workloads(a100):
        if w.component == "service":
            env = {e["name"]: e.get("value") for e in w.containers[0]["env"]}
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://tessera-otel-collector.tessera.svc.cluster.local:4317"
            assert env["OTEL_SERVICE_NAME"] == f"tessera-{w.capability}"
        if w.component == "triton":
            args = w.containers[0]["args"]
            assert "--trace-config=mode=opentelemetry" in args
            assert any("tessera-otel-collector.tessera.svc.cluster.local:4318/v1/traces" in a for a in args)
    otel_config = yaml.safe_load(a100.get("ConfigMap", "tessera-otel-collector")["data"]["config.yaml"])
    assert otel_config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    for pipeline in otel_config["service"]["pipelines"].values():
        assert pipeline["exporters"] == sorted(a100.values["otel"]["exporters"])
    assert set(otel_config["exporters"]) == set(a100.values["otel"]["exporters"])


@pytest.mark.parametrize("case", CASES)
def test_monitors_select_rendered_metrics_ports(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    monitors = render.of("ServiceMonitor") + render.of("PodMonitor")
    if not (render.values["metrics"]["serviceMonitor"]["enabled"] or render.values["metrics"]["podMonitor"]["enabled"]):
        assert not monitors
        return
    for monitor in render.of("ServiceMonitor"):
        services = [s for s in render.of("Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert services, f"{case}: ServiceMonitor selects no Service"
        for s in services:
            assert "metrics" in {p["name"] for p in s["spec"]["ports"]}
    for monitor in render.of("PodMonitor"):
        pods = [w for w in workloads(render) if selects(monitor["spec"]["selector"], w.labels)]
        assert pods, f"{case}: PodMonitor {monitor['metadata']['name']} selects no pods"
        for w in pods:
            assert "metrics" in {p["name"] for c in w.containers for p in c.get("ports", [])}
