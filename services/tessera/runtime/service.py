"""Run one capability as a process: settings, logs, tracing, its dependencies, the server, drain on SIGTERM.

A capability provides ``async def create(settings) -> Capability``; ``tessera serve <name>`` finds it in
``tessera.<name>.api`` and hands it to ``run``. Nothing here knows any capability.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tessera.runtime import config
from tessera.runtime.inference import TritonClient
from tessera.runtime.server import ServiceRegistration, TesseraServer, build_server
from tessera.runtime.telemetry import setup_logging, setup_tracing

log = logging.getLogger("tessera.service")


@dataclass
class Capability:
    """What a capability's api.create returns: its gRPC services and how to release what it holds."""

    name: str
    services: list[ServiceRegistration]
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_start: list[Callable[[TesseraServer], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self.on_close):
            try:
                await closer()
            except Exception:  # closing must go on past one failure
                log.exception("error while closing %s", self.name)


def serving_when_models_ready(
    triton: TritonClient, service: str, models: list[str], timeout_s: float = 600.0
) -> Callable[[TesseraServer], Awaitable[None]]:
    """An on_start hook: the service reports NOT_SERVING until its Triton models are ready."""

    async def hook(server: TesseraServer) -> None:
        server.unready.add(service)
        await server.set_serving(False, service)
        await server.set_serving(False, "")

        async def wait() -> None:
            try:
                await triton.wait_ready(models, timeout_s)
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
    for hook in capability.on_start:
        await hook(server)
    return capability, server


async def run(name: str) -> None:
    """Serve ``name`` until SIGTERM/SIGINT, then drain and release resources."""
    settings = config.load(config.ServerSettings)
    setup_logging(settings.log_level, settings.log_json)
    setup_tracing(f"tessera-{name}")
    capability, server = await start(name, settings)
    server.install_signal_handlers()
    try:
        await server.wait()
    finally:
        await capability.close()


def main(name: str) -> None:
    asyncio.run(run(name))
