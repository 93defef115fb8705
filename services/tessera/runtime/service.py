"""Run one capability as a process: settings, logs, tracing, its dependencies, the server, drain on SIGTERM, the
last spans exported.

A capability provides ``async def create(settings) -> Capability``; ``tessera serve <name>`` finds it in
``tessera.<name>.api`` and hands it to ``run``; a cascade's ``tessera.<name>.workers.STAGES`` names its stage workers.
Nothing here knows any capability: ``discover`` lists them from the package itself.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tessera.runtime import config
from tessera.runtime.bus import Bus, ConsumerSpec, Handler, StreamSpec, Worker
from tessera.runtime.inference import TritonClient
from tessera.runtime.server import ServiceRegistration, TesseraServer, build_server
from tessera.runtime.telemetry import setup_logging, setup_tracing, shutdown_tracing

log = logging.getLogger("tessera.service")


@dataclass
class Capability:
    """What a capability's api.create returns: its gRPC services and how to release what it holds."""

    name: str
    services: list[ServiceRegistration]
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_start: list[Callable[[TesseraServer], Awaitable[None]]] = field(default_factory=list)
    # On SIGTERM, after the drain delay: deliver what is in flight on the service's streams before they end.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self.on_close):
            try:
                await closer()
            except Exception:  # closing must go on past one failure
                log.exception("error while closing %s", self.name)


def serving_when_models_ready(
    triton: TritonClient,
    service: str,
    models: list[str],
    timeout_s: float = 600.0,
    then: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[TesseraServer], Awaitable[None]]:
    """An on_start hook: the service reports NOT_SERVING until its Triton models are ready and ``then`` (reading
    what the served models declare: labels, languages) has returned."""

    async def hook(server: TesseraServer) -> None:
        server.unready.add(service)
        await server.set_serving(False, service)
        await server.set_serving(False, "")

        async def wait() -> None:
            try:
                await server.started.wait()  # the capability's own start (streams, subscriptions) comes first
                await triton.wait_ready(models, timeout_s)
                if then is not None:
                    await then()
            except Exception:
                log.exception("models %s never became ready; %s stays NOT_SERVING", models, service)
                return
            server.unready.discard(service)
            if not server.drained:
                await server.set_serving(True, service)
                if not server.unready:
                    await server.set_serving(True, "")
                log.info("%s SERVING: models %s ready", service, models)

        server.background.append(asyncio.ensure_future(wait()))

    return hook


CapabilityFactory = Callable[[config.ServerSettings], Awaitable[Capability]]


def capabilities() -> list[str]:
    """Every subpackage of ``tessera`` with an ``api`` module, in name order: the capabilities there are to serve."""
    import tessera

    found = []
    for info in pkgutil.iter_modules(tessera.__path__):
        if info.ispkg and importlib.util.find_spec(f"tessera.{info.name}.api") is not None:
            found.append(info.name)
    return sorted(found)


def stages_of(capability: str) -> list[str]:
    """The stage workers of ``capability``'s cascade (``workers.STAGES``), none when it has no workers module."""
    if importlib.util.find_spec(f"tessera.{capability}.workers") is None:
        return []
    module = importlib.import_module(f"tessera.{capability}.workers")
    return list(getattr(module, "STAGES", {}))


def trainers() -> list[str]:
    """Capabilities that train a model of their own (``tessera.<capability>.training`` with ``main(argv)``)."""
    return [c for c in capabilities() if importlib.util.find_spec(f"tessera.{c}.training") is not None]


def discover() -> list[str]:
    """What a full local stack runs: each capability's service, then its stage workers as ``<capability>.<stage>``."""
    names: list[str] = []
    for capability in capabilities():
        names.append(capability)
        names.extend(f"{capability}.{stage}" for stage in stages_of(capability))
    return names


def factory_for(name: str) -> CapabilityFactory:
    try:
        module = importlib.import_module(f"tessera.{name}.api")
    except ModuleNotFoundError as exc:
        raise config.ConfigError(f"unknown service {name!r}: {exc}") from None
    create: CapabilityFactory = module.create
    return create


async def start(name: str, settings: config.ServerSettings) -> tuple[Capability, TesseraServer]:
    capability = await factory_for(name)(settings)
    server = await build_server(settings, capability.services)
    server.on_drain.extend(capability.on_drain)
    for hook in capability.on_start:
        await hook(server)
    server.started.set()
    return capability, server


async def run(name: str) -> None:
    """Serve ``name`` until SIGTERM/SIGINT, then drain and release resources."""
    settings = config.load(config.ServerSettings)
    setup_logging(settings.log_level, settings.log_json)
    setup_tracing(f"tessera-{name}", trace_dir=settings.trace_dir)
    capability, server = await start(name, settings)
    server.install_signal_handlers()
    try:
        await server.wait()
    finally:
        await capability.close()


def main(name: str) -> None:
    """``run`` in its own event loop; the spans still batched are exported once the loop has closed (every span of
    the drain and of the cancelled tasks has ended by then)."""
    try:
        asyncio.run(run(name))
    finally:
        shutdown_tracing()


@dataclass
class StageWorker:
    """What a capability's ``workers.STAGES[stage]`` factory returns: one NATS stage of a cascade."""

    name: str
    streams: list[StreamSpec]
    consumer: ConsumerSpec
    handler: Handler
    concurrency: int = 1
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


WorkerFactory = Callable[[config.ServerSettings, Bus], Awaitable[StageWorker]]


def worker_factory_for(capability: str, stage: str) -> WorkerFactory:
    try:
        module = importlib.import_module(f"tessera.{capability}.workers")
    except ModuleNotFoundError as exc:
        raise config.ConfigError(f"capability {capability!r} has no workers: {exc}") from None
    stages: dict[str, WorkerFactory] = module.STAGES
    if stage not in stages:
        raise config.ConfigError(f"{capability} has no stage {stage!r}; stages: {sorted(stages)}")
    return stages[stage]


@dataclass
class RunningWorker:
    """A started stage: its consumer loop, its health-only gRPC server and its NATS connection."""

    stage: StageWorker
    worker: Worker
    server: TesseraServer
    bus: Bus
    loop_task: asyncio.Future[None]

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING, let in-flight messages finish (or go back to the stream), then release everything."""
        try:
            await self.server.health.enter_graceful_shutdown()
            await self.worker.stop(grace_s)
        finally:
            self.loop_task.cancel()
            await self.server.server.stop(0)
            for closer in reversed(self.stage.on_close):
                await closer()
            await self.bus.close()


async def start_worker(capability: str, stage: str, settings: config.ServerSettings) -> RunningWorker:
    """Connect, provision the stage's streams and consumer, start its loop and a health-only gRPC server."""
    bus = await Bus.connect(settings.nats_url, f"{capability}-{stage}")
    stage_worker = await worker_factory_for(capability, stage)(settings, bus)
    for stream in stage_worker.streams:
        await bus.ensure(stream)
    await bus.ensure(stage_worker.consumer)
    worker = Worker(bus, stage_worker.consumer, stage_worker.handler, concurrency=stage_worker.concurrency)
    loop_task = asyncio.ensure_future(worker.run())
    server = await build_server(settings, [])  # grpc.health.v1 for probes; a worker serves no API
    return RunningWorker(stage_worker, worker, server, bus, loop_task)


async def run_worker(capability: str, stage: str) -> None:
    """Run one cascade stage until SIGTERM/SIGINT; on stop, in-flight messages finish or go back to the stream."""
    settings = config.load(config.ServerSettings)
    setup_logging(settings.log_level, settings.log_json)
    setup_tracing(f"tessera-{capability}-{stage}", trace_dir=settings.trace_dir)
    running = await start_worker(capability, stage, settings)
    running.server.install_signal_handlers()
    stop = asyncio.ensure_future(running.server.stop_requested())
    await asyncio.wait({stop, running.loop_task}, return_when=asyncio.FIRST_COMPLETED)
    await running.stop(settings.grace_s)


def main_worker(capability: str, stage: str) -> None:
    """``run_worker`` in its own event loop, then the spans still batched are exported (as ``main``)."""
    try:
        asyncio.run(run_worker(capability, stage))
    finally:
        shutdown_tracing()
