"""The cry capability as the chart renders it: one stateless service reaching only its Triton (no NATS: it publishes
nothing), reading client files under the media mount, the classifier on the pool each values file chose, and the
Triton image built with it. Its federation: the Flower SuperLink and ServerApp, the PVC that Triton serves from and
the ServerApp publishes into, their NetworkPolicies, and the Flower App project `flwr run` submits."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chartlib
import pytest
from flwr.clientapp import ClientApp
from flwr.common.config import validate_config
from flwr.serverapp import ServerApp
from flwr.supercore.cli.flower_superexec import _parse_args as superexec_parser
from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink as superlink_parser
from manifests import Render, Workload, deploy_script, env_of, policy_of, rule_ports, selects, workloads
from tritonclient.grpc import model_config_pb2

from tessera.cry.api import SERVICE_NAME
from tessera.cry.contracts import MODELS
from tessera.cry.fl.settings import FederationSettings
from tessera.cry.settings import CrySettings

apply_overrides = deploy_script("apply_overrides")
CASES = list(chartlib.CASES)
MODELS_DIR = chartlib.ROOT / "services" / "tessera" / "cry" / "models"
TRITON_DOCKERFILE = (chartlib.ROOT / "deploy" / "triton" / "Dockerfile").read_text()
# The reference classifier is a tiny CPU network: on the cpu pool, KIND_CPU, in every values file.
PLACEMENT = {
    "default": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "cpu": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "rtx": ("cpu", {"cry_classifier": "KIND_CPU"}),
    "a100": ("cpu", {"cry_classifier": "KIND_CPU"}),
}


def _cry(render: Render, component: str) -> list[Workload]:
    return [w for w in workloads(render) if w.capability == "cry" and w.component == component]


def _overrides(render: Render) -> dict[str, Any]:
    (triton,) = _cry(render, "triton")
    return dict(json.loads(render.get("ConfigMap", f"{triton.name}-overrides")["data"]["overrides.json"]))


@pytest.mark.parametrize("case", CASES)
def test_service_reaches_its_triton_only_and_takes_clients(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    values = render.values
    (service,) = _cry(render, "service")
    assert not _cry(render, "worker"), "cry has no cascade workers"
    assert values["capabilities"]["cry"]["usesBus"] is False
    container = service.containers[0]
    assert container["args"] == ["serve", "cry"]
    env = env_of(render, service)
    if not values["tls"]["enabled"]:
        assert container["readinessProbe"]["grpc"] == {"port": int(env["TESSERA_PORT"]), "service": SERVICE_NAME}
    (triton,) = _cry(render, "triton")
    assert env["TESSERA_TRITON_URL"].startswith(triton.name)
    spec = policy_of(render, service)
    egress = {p for r in spec["egress"] for p in rule_ports(r)}
    assert values["triton"]["grpcPort"] in egress
    assert values["nats"]["port"] not in egress, "cry publishes nothing: no NATS egress"
    port = values["capabilities"]["cry"]["service"]["port"]
    assert [r.get("from", []) for r in spec["ingress"] if rule_ports(r) == {port}] == [
        values["networkPolicy"]["clientFrom"]
    ]


@pytest.mark.parametrize("case", CASES)
def test_startup_outlasts_the_model_wait_and_inline_clips_fit_a_message(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    (service,) = _cry(render, "service")
    env = env_of(render, service)
    own = CrySettings.model_fields
    ready = float(env.get("TESSERA_CRY_MODELS_READY_TIMEOUT_S", own["models_ready_timeout_s"].default))
    startup = service.containers[0]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > ready, f"{case}: startup budget"
    inline = int(env.get("TESSERA_CRY_MAX_INLINE_BYTES", own["max_inline_bytes"].default))
    assert inline < int(env["TESSERA_MAX_RECEIVE_MESSAGE_BYTES"]), f"{case}: an inline clip must fit one message"


@pytest.mark.parametrize("case", CASES)
def test_classify_files_are_read_under_the_media_mount(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    (service,) = _cry(render, "service")
    media = render.values["capabilities"]["cry"]["service"]["media"]
    env = env_of(render, service)
    mounts = {m["name"]: m for m in service.containers[0]["volumeMounts"]}
    volumes = {v["name"]: v for v in service.spec["volumes"]}
    if media["claimName"]:
        assert env["TESSERA_MEDIA_ROOTS"] == media["mountPath"]
        assert mounts["media"] == {"name": "media", "mountPath": media["mountPath"], "readOnly": True}
        assert volumes["media"]["persistentVolumeClaim"] == {"claimName": media["claimName"], "readOnly": True}
    else:
        assert env["TESSERA_MEDIA_ROOTS"] == "", f"{case}: no claim, no file paths"
        assert "media" not in mounts and "media" not in volumes
    if case in ("rtx", "a100"):
        assert media["claimName"] == "tessera-media", case


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_models_land_on_the_pool_each_values_file_chose(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    pool_name, kinds = PLACEMENT[case]
    (triton,) = _cry(render, "triton")
    assert triton.annotations["tessera.io/gpu-pool"] == pool_name
    container = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    loaded = sorted(a.removeprefix("--load-model=") for a in container["args"] if a.startswith("--load-model="))
    assert loaded == sorted(MODELS)
    overlay = _overrides(render)
    assert {m: o["instance_group"]["kind"] for m, o in overlay.items()} == kinds
    assert {m: o["instance_group"]["count"] for m, o in overlay.items()} == {"cry_classifier": 1}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("TESSERA_MODEL_THREADS") == "1", f"{case}: one torch thread per instance"


@pytest.mark.parametrize("case", list(PLACEMENT))
def test_overlay_keeps_the_audio_contract_and_no_batching(
    renders: dict[str, Render], case: str, tmp_path: Path
) -> None:
    """The pool's maxBatchSize and queue delay reach the overlay, and apply_overrides leaves a model without
    batching as it is: one variable-length segment per request."""
    source = tmp_path / "models"
    for model in MODELS:
        shutil.copytree(MODELS_DIR / model, source / model, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = _overrides(renders[case])
    assert apply_overrides.build(source, tmp_path / "served", overlay, "link") == sorted(MODELS)
    for model in MODELS:
        original = apply_overrides.load_config(source / model / "config.pbtxt")
        served = apply_overrides.load_config(tmp_path / "served" / model / "config.pbtxt")
        assert original.max_batch_size == 0
        assert served.max_batch_size == 0 and not served.HasField("dynamic_batching"), f"{case} {model}"
        assert list(served.input) == list(original.input) and list(served.output) == list(original.output)
        assert dict(served.parameters) == dict(original.parameters), f"{model}: the reasons stay declared"
        (group,) = served.instance_group
        want = overlay[model]["instance_group"]
        assert (model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (want["kind"], want["count"])


def test_kustomize_overlays_ship_cry() -> None:
    k8s = chartlib.ROOT / "k8s"
    for overlay in ("cpu", "rtx", "a100"):
        files = {p.name for p in (k8s / "overlays" / overlay).glob("*.yaml")} | {
            p.name for p in (k8s / "base").glob("*.yaml")
        }
        assert "networkpolicy-tessera-cry.yaml" in files and "deployment-tessera-cry.yaml" in files, overlay
        triton = "inferenceservice" if overlay == "a100" else "deployment"
        assert f"{triton}-tessera-triton-cry.yaml" in files, overlay


def test_triton_image_trains_the_classifier_with_torch_and_the_packaged_sounds() -> None:
    """`python -m tessera.cry.training` in the image build needs torch, moonshine-voice (the cry-models extra) and
    the system sounds of sound-theme-freedesktop and alsa-utils."""
    capabilities = re.search(r'^ARG CAPABILITIES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert capabilities and "cry" in capabilities.group(1).split()
    torch_case = re.search(r'case " \$\{CAPABILITIES\} " in ([^)]+)\) pip install --index-url', TRITON_DOCKERFILE)
    assert torch_case and '*" cry "*' in torch_case.group(1).split("|")
    packages = re.search(r'^ARG CRY_APT_PACKAGES="([^"]*)"$', TRITON_DOCKERFILE, re.MULTILINE)
    assert packages and {"sound-theme-freedesktop", "alsa-utils"} <= set(packages.group(1).split())
    assert '*" cry "*) packages="${packages} ${CRY_APT_PACKAGES}"' in TRITON_DOCKERFILE


# --- federation (capabilities.cry.federation) ------------------------------------------------------------------------

SCHEMA = json.loads((chartlib.CHART / "values.schema.json").read_text())
PYPROJECT = tomllib.loads((chartlib.ROOT / "pyproject.toml").read_text())
FLOWER_APP = chartlib.ROOT / "deploy" / "cry-federation"
CHART_SET = {"TESSERA_CRY_FL_MODEL_REPOSITORY", "TESSERA_CRY_FL_TRITON_HTTP_URL", "TESSERA_CRY_FL_BASE_MODEL"}


def _federation(render: Render) -> dict[str, Any]:
    return dict(render.values["capabilities"]["cry"]["federation"])


def _one(render: Render, component: str) -> Workload:
    found = _cry(render, component)
    assert len(found) == 1, f"{render.case}: {len(found)} cry {component} workloads"
    return found[0]


def _flag(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} in {args}"
    return args[args.index(flag) + 1]


def _fronting(render: Render, w: Workload) -> list[dict[str, Any]]:
    return [s for s in render.of("Service") if selects({"matchLabels": s["spec"]["selector"]}, w.labels)]


def _service_url(render: Render, host_port: str) -> tuple[dict[str, Any], int]:
    """The rendered Service a <name>.<namespace>.svc.cluster.local:<port> address names, and the port."""
    host, port = host_port.rsplit(":", 1)
    name, namespace, rest = host.split(".", 2)
    assert (namespace, rest) == (chartlib.NAMESPACE, "svc.cluster.local"), host_port
    return render.get("Service", name), int(port)


def _peers(render: Render, rule: dict[str, Any]) -> list[Workload]:
    return [
        w
        for peer in rule.get("to", rule.get("from", []))
        if set(peer) == {"podSelector"}
        for w in workloads(render)
        if selects(peer["podSelector"], w.labels)
    ]


def test_federation_is_on_in_every_values_file(renders: dict[str, Render]) -> None:
    for case in CASES:
        assert _federation(renders[case])["enabled"] is True, case


@pytest.mark.parametrize("case", CASES)
def test_superlink_runs_flower_with_process_isolation_on_one_api_port(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    sl = _federation(render)["superlink"]
    w = _one(render, "superlink")
    deployment = render.get("Deployment", w.name)["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    (container,) = w.containers
    image = sl["image"]
    assert container["image"] == f"{image['registry']}/{image['repository']}:{image['tag']}"
    assert image["repository"] == "flwr/superlink"
    assert image["tag"] == PYPROJECT["project"]["optional-dependencies"]["cry-federation"][0].split("==")[1]
    assert container["command"] == ["flower-superlink"]
    args = container["args"]
    assert _flag(args, "--isolation") == "process"
    assert _flag(args, "--port") == str(sl["port"]) and _flag(args, "--host") == "0.0.0.0"
    assert _flag(args, "--database") == "/state/state.db"
    assert _flag(args, "--health-server-address") == f"0.0.0.0:{sl['healthPort']}"
    parsed = superlink_parser().parse_args(args)  # flower-superlink 1.42 takes every flag the chart passes
    assert (parsed.isolation, parsed.port, parsed.host) == ("process", sl["port"], "0.0.0.0")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"api": sl["port"], "health": sl["healthPort"]}
    volumes = {v["name"]: v for v in w.spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state = volumes[mounts["/state"]]
    if sl["persistence"]["enabled"]:
        claim = render.get("PersistentVolumeClaim", state["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    else:
        assert "emptyDir" in state
    if sl["tlsSecret"]:
        assert "--insecure" not in args
        assert parsed.ssl_certfile and parsed.ssl_keyfile and parsed.ssl_ca_certfile
        tls = volumes[mounts[str(Path(parsed.ssl_certfile).parent)]]
        assert tls["secret"]["secretName"] == sl["tlsSecret"]
    else:
        assert "--insecure" in args and not parsed.ssl_certfile
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1" and env["FLWR_TELEMETRY_ENABLED"] == "0", "no egress but DNS"


@pytest.mark.parametrize("case", CASES)
def test_superlink_has_a_cluster_service_and_a_fleet_service_for_devices(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    sl = _federation(render)["superlink"]
    w = _one(render, "superlink")
    services = {s["metadata"]["name"]: s["spec"] for s in _fronting(render, w)}
    assert len(services) == 2, f"{case}: {sorted(services)}"
    inside = services[w.name]
    assert inside["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in inside["ports"]] == [(sl["port"], "api")]
    (fleet,) = [spec for name, spec in services.items() if name != w.name]
    assert fleet["type"] == sl["fleetService"]["type"]
    assert [(p["port"], p["targetPort"]) for p in fleet["ports"]] == [(sl["port"], "api")]


@pytest.mark.parametrize("case", CASES)
def test_serverapp_is_a_superexec_publishing_into_the_cry_triton(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    federation = _federation(render)
    app, triton, superlink = _one(render, "serverapp"), _one(render, "triton"), _one(render, "superlink")
    deployment = render.get("Deployment", app.name)["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    (container,) = app.containers
    registry = render.values["image"]["registry"]
    assert container["image"].startswith(f"{registry}/{federation['serverApp']['image']['repository']}:")
    assert container["command"] == ["flower-superexec"]
    args = container["args"]
    parsed = superexec_parser().parse_args(args)  # flower-superexec 1.42 takes every flag the chart passes
    assert "--plugin-type" not in args, "1.42 ignores it: SuperExec picks the task type itself"
    assert parsed.insecure == (not federation["superlink"]["tlsSecret"])
    assert parsed.health_server_address == f"0.0.0.0:{federation['serverApp']['healthPort']}"
    runtime, port = _service_url(render, parsed.runtime_api_address)
    assert selects({"matchLabels": runtime["spec"]["selector"]}, superlink.labels)
    assert port == federation["superlink"]["port"] in {p["port"] for p in runtime["spec"]["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TESSERA_CRY_FL_MODEL_REPOSITORY"] == "/work/models"
    assert env["TESSERA_CRY_FL_BASE_MODEL"] == "/work/models/cry_classifier/1"
    url = env["TESSERA_CRY_FL_TRITON_HTTP_URL"]
    assert url.startswith("http://")
    http, port = _service_url(render, url.removeprefix("http://"))
    assert selects({"matchLabels": http["spec"]["selector"]}, triton.labels), f"{case}: {url} is not the cry Triton"
    assert port == render.values["triton"]["httpPort"] in {p["port"] for p in http["spec"]["ports"]}
    settings = federation["serverApp"]["settings"]
    assert {k: env[k] for k in settings} == {k: str(v) for k, v in settings.items()}
    FederationSettings(**{k.removeprefix("TESSERA_CRY_FL_").lower(): v for k, v in settings.items()})
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in app.spec["volumes"]}
    assert not mounts["/work/models"].get("readOnly"), "it writes version folders"
    claim = volumes[mounts["/work/models"]["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == f"{triton.name}-published"
    assert app.spec["securityContext"]["runAsUser"] == render.values["triton"]["podSecurityContext"]["runAsUser"]


@pytest.mark.parametrize("case", CASES)
def test_triton_serves_the_published_repository_and_keeps_its_versions(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    repository = _federation(render)["publishedRepository"]
    triton, app = _one(render, "triton"), _one(render, "serverapp")
    volumes = {v["name"]: v for v in triton.spec["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == f"{triton.name}-published"
    assert claim in {v.get("persistentVolumeClaim", {}).get("claimName") for v in app.spec["volumes"]}
    pvc = render.get("PersistentVolumeClaim", claim)["spec"]
    assert pvc["accessModes"] == repository["accessModes"] == ["ReadWriteMany"]
    assert pvc["resources"]["requests"]["storage"] == repository["size"]
    (init,) = triton.spec["initContainers"]
    assert _flag(init["args"], "--mode") == "copy", "the ServerApp reads version 1's files as its base model"
    assert "--keep-versions" in init["args"]
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}["/work/models"] == "models"
    served = next(c for c in triton.containers if c["name"] in ("triton", "kserve-container"))
    assert any(a == "--model-control-mode=explicit" for a in served["args"]), "the ServerApp loads new versions"
    assert {m["mountPath"]: m for m in served["volumeMounts"]}["/work/models"]["readOnly"] is True


@pytest.mark.parametrize("case", CASES)
def test_federation_network_policies_allow_exactly_its_flows(renders: dict[str, Render], case: str) -> None:
    render = renders[case]
    federation = _federation(render)
    api, http = federation["superlink"]["port"], render.values["triton"]["httpPort"]
    superlink, app, triton = _one(render, "superlink"), _one(render, "serverapp"), _one(render, "triton")

    spec = policy_of(render, superlink)
    assert all(rule_ports(r) == {api} for r in spec["ingress"]), spec["ingress"]
    assert [r.get("from", []) for r in spec["ingress"] if not _peers(render, r)] == [federation["fleetFrom"]]
    from_pods = [r for r in spec["ingress"] if _peers(render, r)]
    assert [[w.name for w in _peers(render, r)] for r in from_pods] == [[app.name]]
    assert [rule_ports(r) for r in spec["egress"]] == [{53}], "the SuperLink reaches DNS only"

    spec = policy_of(render, app)
    assert spec["ingress"] == [], "the ServerApp takes no traffic"
    egress = [(rule_ports(r), [w.name for w in _peers(render, r)]) for r in spec["egress"]]
    assert egress == [({53}, []), ({api}, [superlink.name]), ({http}, [triton.name])], "DNS, SuperLink, Triton HTTP"

    spec = policy_of(render, triton)
    loads = [r for r in spec["ingress"] if app.name in [w.name for w in _peers(render, r)]]
    assert [(rule_ports(r), [w.name for w in _peers(render, r)]) for r in loads] == [({http}, [app.name])]


def test_federation_off_renders_none_of_it(helm_render: Callable[..., Any]) -> None:
    result = helm_render({"capabilities.cry.federation.enabled": "false"})
    assert result.returncode == 0, result.stderr
    render = Render("no-federation", chartlib.load_docs(result.stdout), {})
    assert not [w for w in workloads(render) if w.component in ("superlink", "serverapp")]
    assert not render.of("PersistentVolumeClaim")
    assert not [d for d in render.docs if "superlink" in d["metadata"]["name"] or "fleet" in d["metadata"]["name"]]
    (triton,) = [w for w in workloads(render) if w.capability == "cry" and w.component == "triton"]
    volumes = {v["name"]: v for v in triton.spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    (init,) = triton.spec["initContainers"]
    assert "--keep-versions" not in init["args"] and _flag(init["args"], "--mode") == "link"
    policy = policy_of(render, triton)
    assert [rule_ports(r) for r in policy["ingress"]] == [{8001, 8000}, {8002}]


def test_version_one_is_copied_for_the_serverapp_and_published_versions_survive(tmp_path: Path) -> None:
    """What the init container does to the PVC on each Triton start, on the real cry_classifier folder."""
    source = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "cry_classifier", source / "cry_classifier", ignore=shutil.ignore_patterns("__pyc*"))
    overlay = {"cry_classifier": {"instance_group": {"kind": "KIND_CPU", "count": 1}}}
    served = tmp_path / "served" / "cry_classifier"
    apply_overrides.build(source, tmp_path / "served", overlay, "copy", keep_versions=True)
    assert not (served / "1").is_symlink() and (served / "1" / "model.py").is_file()
    (served / "2").mkdir()
    (served / "2" / "cry.json").write_text('{"round": 1}')
    apply_overrides.build(source, tmp_path / "served", overlay, "copy", keep_versions=True)
    assert (served / "2" / "cry.json").read_text() == '{"round": 1}', "a published version survives a restart"


def test_schema_names_exactly_the_federation_settings() -> None:
    listed = set(SCHEMA["definitions"]["cryFederationSettings"]["properties"])
    fields = {f"TESSERA_CRY_FL_{name}".upper() for name in FederationSettings.model_fields}
    assert listed | CHART_SET == fields and not listed & CHART_SET, "values.schema.json vs FederationSettings"
    cry = SCHEMA["properties"]["capabilities"]["properties"]["cry"]["allOf"][1]["properties"]
    ref = cry["federation"]["properties"]["serverApp"]["properties"]["settings"]["$ref"]
    assert ref == "#/definitions/cryFederationSettings"


def test_flower_app_project_names_the_tessera_apps_and_the_charts_run_config(renders: dict[str, Render]) -> None:
    project = tomllib.loads((FLOWER_APP / "pyproject.toml").read_text())
    valid, errors, _ = validate_config(project, check_module=True, project_dir=FLOWER_APP)
    assert valid, errors
    app = project["tool"]["flwr"]["app"]
    assert app["publisher"] == "tessera" and project["project"]["name"] == "tessera-cry-federation"
    assert app["components"] == {
        "serverapp": "tessera.cry.fl.server_app:app",
        "clientapp": "tessera.cry.fl.client_app:app",
    }
    for ref, kind in ((app["components"]["serverapp"], ServerApp), (app["components"]["clientapp"], ClientApp)):
        module, attr = ref.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), kind), ref
    extras = PYPROJECT["project"]["optional-dependencies"]
    (dependency,) = project["project"]["dependencies"]
    wanted = re.fullmatch(r"tessera\[([a-z,-]+)\]", dependency)
    assert wanted and wanted.group(1) == "cry,cry-models,cry-federation"
    assert set(wanted.group(1).split(",")) <= set(extras)
    # The run config wins over the ServerApp pod's environment: it must say what values.yaml says.
    run_config = FederationSettings.from_run_config(app["config"])
    settings = _federation(renders["default"])["serverApp"]["settings"]
    for key in app["config"]:
        field = key.replace("-", "_")
        assert getattr(run_config, field) == settings[f"TESSERA_CRY_FL_{field.upper()}"], key
    assert _federation(renders["default"])["serverApp"]["extra"] == wanted.group(1), "the ServerApp image's extras"


def test_flower_app_builds_into_a_fab_offline(tmp_path: Path) -> None:
    flwr = Path(sys.executable).parent / "flwr"
    env = {**os.environ, "HOME": str(tmp_path), "FLWR_HOME": str(tmp_path / ".flwr"), "FLWR_DISABLE_UPDATE_CHECK": "1"}
    result = subprocess.run(
        [str(flwr), "build", "--app", str(FLOWER_APP)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (fab,) = tmp_path.glob("tessera.tessera-cry-federation.*.fab")
    assert fab.stat().st_size > 0
