"""The ``tessera`` command: run the local stack, serve one service, build models, run demos, call any RPC."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format, symbol_database

from tessera.runtime import config

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
models_app = typer.Typer(no_args_is_help=True, help="Triton model repository")
app.add_typer(models_app, name="models")


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _stack_settings() -> Any:
    from tessera.runtime.stack import StackSettings

    try:
        return config.load(StackSettings)
    except config.ConfigError as exc:
        _fail(str(exc))


@app.command()
def serve(name: Annotated[str, typer.Argument(help="capability, e.g. keyframes")]) -> None:
    """Serve one capability in the foreground (settings from TESSERA_* variables)."""
    from tessera.runtime import service

    try:
        service.main(name)
    except config.ConfigError as exc:
        _fail(str(exc))


@app.command()
def work(
    capability: Annotated[str, typer.Argument(help="capability, e.g. translation")],
    stage: Annotated[str, typer.Argument(help="cascade stage, e.g. asr")],
) -> None:
    """Run one NATS stage worker of a cascade in the foreground."""
    from tessera.runtime import service

    try:
        service.main_worker(capability, stage)
    except config.ConfigError as exc:
        _fail(str(exc))


@app.command()
def up(
    detach: Annotated[bool, typer.Option(help="start in the background and return once ready")] = False,
    demo: Annotated[bool, typer.Option(help="run the demo scenarios once the stack is ready")] = False,
) -> None:
    """Start nats-server, Triton and every service; keep serving until Ctrl-C (or `tessera down`)."""
    from tessera.runtime.stack import StackState, serve_stack
    from tessera.runtime.telemetry import setup_logging

    settings = _stack_settings()
    existing = StackState.load(settings.state_file)
    if existing and _alive(existing.pid):
        _fail(f"a stack is already running (pid {existing.pid}); `tessera down` first")
    if detach:
        log_path = settings.build_dir / "stack" / "logs" / "stack.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with log_path.open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "tessera.cli", "up"], stdout=log, stderr=log, start_new_session=True
            )
        while time.monotonic() - began < settings.ready_timeout_s + 30:
            state = StackState.load(settings.state_file)
            if state and state.pid == child.pid and state.ready:
                typer.echo(json.dumps({"ready_s": round(time.monotonic() - began, 2), **state.__dict__}, indent=2))
                return
            if child.poll() is not None:
                _fail(f"stack exited with {child.returncode}; see {log_path}")
            time.sleep(0.2)
        child.terminate()
        _fail(f"stack not ready in time; see {log_path}")
    setup_logging("INFO", as_json=False)

    def on_ready(state: StackState) -> None:
        typer.echo(f"stack ready in {state.ready_s:.1f} s")
        for name, address in state.services.items():
            typer.echo(f"  {name:<12} grpc://{address}")
        typer.echo(f"  {'nats':<12} {state.nats_url}\n  {'triton':<12} grpc://{state.triton_grpc}")
        if demo:
            _run_demos(state)
        typer.echo("serving; Ctrl-C to stop")

    serve_stack(settings, on_ready)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@app.command()
def down(timeout_s: float = 60.0) -> None:
    """Stop a stack started by `tessera up`."""
    from tessera.runtime.stack import StackState

    settings = _stack_settings()
    state = StackState.load(settings.state_file)
    if state is None or not _alive(state.pid):
        typer.echo("no stack running")
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(state.pid):
        _fail(f"stack pid {state.pid} still running after {timeout_s:.0f} s")
    typer.echo("stack stopped")


@app.command()
def status() -> None:
    """Health of every part of a running stack."""
    from tessera.runtime.processes import health_status
    from tessera.runtime.stack import StackState

    settings = _stack_settings()
    state = StackState.load(settings.state_file)
    if state is None or not _alive(state.pid):
        typer.echo("no stack running")
        raise typer.Exit(1)
    if not state.ready:
        typer.echo(f"stack starting (pid {state.pid})")
        raise typer.Exit(1)
    report = {name: health_status(address) for name, address in state.services.items()}
    typer.echo(
        json.dumps(
            {
                "pid": state.pid,
                "nats": state.nats_url,
                "triton": state.triton_grpc,
                "ready_s": state.ready_s,
                "services": report,
            },
            indent=2,
        )
    )
    if any(value != "SERVING" for value in report.values()):
        raise typer.Exit(1)


@models_app.command("build")
def models_build(
    target: Annotated[Path, typer.Option(help="model repository folder")] = Path("build/model_repository"),
) -> None:
    """Assemble the Triton model repository from every capability's models/ (weights sha256-checked)."""
    from tessera.runtime.model_repository import ModelRepositoryError, build

    try:
        built = build(target)
    except ModelRepositoryError as exc:
        _fail(str(exc))
    for name, path in built.items():
        typer.echo(f"{name}: {path}")


@models_app.command("train")
def models_train(
    out: Annotated[Path, typer.Option(help="where trained weights go (each model in its own folder)")] = Path(
        "build/trained"
    ),
    force: Annotated[bool, typer.Option(help="train even when the weights are up to date")] = False,
    jobs: Annotated[int, typer.Option(help="trainings at once (each gets cores / jobs threads)")] = 2,
) -> None:
    """Train every capability's own models (``tessera.<capability>.training``); each skips what is up to date.

    The trainings run as processes, ``jobs`` at a time, each with its share of the cores: much of a training is
    single-threaded data making, so two at once finish sooner than one after the other."""
    from tessera.runtime.service import trainers

    argv = ["--out", str(out), *(["--force"] if force else [])]
    cores = os.cpu_count() or 1
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    failed: list[str] = []
    pending = list(trainers())
    threads = str(max(1, cores // max(1, min(jobs, len(pending) or 1))))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    while pending or running:
        while pending and len(running) < max(1, jobs):
            capability = pending.pop(0)
            command = [sys.executable, "-m", f"tessera.{capability}.training", *argv]
            running.append((capability, subprocess.Popen(command, env=env)))
        capability, process = running[0]
        for name, candidate in running:  # whichever finishes first
            if candidate.poll() is not None:
                capability, process = name, candidate
                break
        else:
            time.sleep(0.5)
            continue
        running.remove((capability, process))
        if process.returncode:
            failed.append(f"{capability} (exit code {process.returncode})")
    if failed:
        _fail(f"training failed: {', '.join(failed)}")


def _run_demos(state: Any) -> None:
    for name, address in state.services.items():
        try:
            module = importlib.import_module(f"tessera.{name}.demo")
        except ModuleNotFoundError:
            continue
        typer.secho(f"== demo: {name} ==", bold=True)
        module.run(address, Path(_stack_settings().build_dir))


@app.command()
def demo() -> None:
    """Re-run the demo scenarios against a running stack."""
    from tessera.runtime.stack import StackState

    state = StackState.load(_stack_settings().state_file)
    if state is None or not _alive(state.pid):
        _fail("no stack running; `make run` or `tessera up --detach` first")
    _run_demos(state)


@app.command()
def call(
    method: Annotated[str, typer.Argument(help="Service/Method, e.g. KeyframeService/EvaluateSelection")],
    body: Annotated[str, typer.Argument(help="request as JSON (proto3 JSON mapping); '-' reads stdin")] = "{}",
    address: Annotated[str | None, typer.Option(help="host:port; default: from the running stack")] = None,
    token: Annotated[str | None, typer.Option(envvar="TESSERA_AUTH_TOKEN", help="bearer token")] = None,
    timeout_s: float = 600.0,
) -> None:
    """Run any unary or server-streaming RPC with JSON in and JSON out."""
    from tessera.runtime.stack import StackState

    service_name, _, method_name = method.partition("/")
    descriptor, capability = _find_service(service_name)
    if descriptor is None:
        _fail(f"unknown service {service_name!r}")
    rpc = descriptor.methods_by_name.get(method_name)
    if rpc is None:
        _fail(f"{service_name} has no method {method_name!r}; has {sorted(descriptor.methods_by_name)}")
    if address is None:
        state = StackState.load(_stack_settings().state_file)
        if state is None or capability not in state.services:
            _fail("no running stack serves this; pass --address")
            return
        address = state.services[capability]
    db = symbol_database.Default()
    request_cls = db.GetSymbol(rpc.input_type.full_name)
    response_cls = db.GetSymbol(rpc.output_type.full_name)
    text = sys.stdin.read() if body == "-" else body
    try:
        request = json_format.Parse(text, request_cls())
    except json_format.ParseError as exc:
        _fail(f"bad request JSON: {exc}")
    path = f"/{descriptor.full_name}/{method_name}"
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(address) as channel:
        kwargs: dict[str, Any] = {
            "request_serializer": request_cls.SerializeToString,
            "response_deserializer": response_cls.FromString,
        }
        try:
            if rpc.server_streaming:
                for reply in channel.unary_stream(path, **kwargs)(request, timeout=timeout_s, metadata=metadata):
                    typer.echo(json_format.MessageToJson(reply, indent=None))
            else:
                reply = channel.unary_unary(path, **kwargs)(request, timeout=timeout_s, metadata=metadata)
                typer.echo(json_format.MessageToJson(reply, indent=2))
        except grpc.RpcError as exc:
            from tessera.runtime.errors import field_violations

            details = {"code": exc.code().name, "message": exc.details(), "fields": field_violations(exc)}
            typer.echo(json.dumps(details, indent=2))
            raise typer.Exit(1) from None


@app.command()
def plan(
    workload: Annotated[Path, typer.Option(help="workload mix (YAML)")] = Path("loadtest/tables/workload.yaml"),
    tables: Annotated[Path, typer.Option(help="accelerators, pools, placement, cost profiles (YAML)")] = Path(
        "loadtest/tables/models.yaml"
    ),
    measured: Annotated[
        Path, typer.Option(help="CPU profiles measured by `make loadtest` (used when the file exists)")
    ] = Path("loadtest/results/cpu_profile.json"),
    place: Annotated[list[str] | None, typer.Option(help="override a model's pool: MODEL=POOL (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="write <out>.json, <out>.md and <out>.png")] = Path(
        "loadtest/results/plan"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Size GPU pools for a workload mix: node counts, utilisation and p95 per model (M/G/c queueing model)."""
    import yaml

    from tessera.planner import render
    from tessera.planner.plan import PlanError, load_tables
    from tessera.planner.plan import plan as make_plan

    overrides: dict[str, str] = {}
    for item in place or []:
        model, sep, pool = item.partition("=")
        if not sep or not model or not pool:
            _fail(f"--place {item!r}: expected MODEL=POOL")
        overrides[model] = pool
    try:
        raw_tables = yaml.safe_load(tables.read_text())
        raw_workload = yaml.safe_load(workload.read_text())
        profile = json.loads(measured.read_text()) if measured.exists() else None
        parsed = load_tables(raw_tables, profile)
        result = make_plan(raw_workload, parsed, overrides)
    except (OSError, yaml.YAMLError, json.JSONDecodeError, PlanError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(render.as_dict(result), indent=2))
    else:
        typer.echo(render.table(result))
        if profile is not None:
            typer.echo(f"\nCPU-class profiles measured here: {measured}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(render.as_dict(result), indent=2) + "\n")
        out.with_suffix(".md").write_text(render.markdown(result, str(workload)))
        try:
            render.plot(result, parsed, out.with_suffix(".png"))
        except ImportError:
            typer.echo("matplotlib is not installed: no plot", err=True)
        if not as_json:
            typer.echo(f"written: {out}.json, {out}.md, {out}.png")


def _find_service(name: str) -> tuple[Any, str]:
    """Import every generated capability package and look the service up by short or full name."""
    import tessera

    root = Path(tessera.__file__).parent
    for module_path in sorted(root.glob("*/v1/*_pb2.py")):
        capability = module_path.parent.parent.name
        module = importlib.import_module(f"tessera.{capability}.v1.{module_path.stem}")
        for service in module.DESCRIPTOR.services_by_name.values():
            if name in (service.name, service.full_name):
                return service, capability
    return None, ""


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    main()
