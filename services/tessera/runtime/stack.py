"""The local stack: nats-server, tritonserver and every service as a supervised process on one machine.

``tessera up`` runs ``serve_stack`` in the foreground (or detached); it writes ``<build>/stack/state.json`` once
everything is ready, which ``tessera status``, ``tessera down``, ``tessera demo`` and ``tessera call`` read.
A crashed service is restarted with exponential backoff; a stop goes services -> Triton -> NATS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tessera.runtime import model_repository
from tessera.runtime.config import split_list
from tessera.runtime.processes import (
    ManagedProcess,
    NatsServer,
    TritonServer,
    free_port,
    health_status,
    start_nats,
    start_triton,
)
from tessera.runtime.service import discover

log = logging.getLogger("tessera.stack")


class StackSettings(BaseSettings):
    """``TESSERA_STACK_*``: what the local stack runs and where."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_STACK_", extra="ignore")

    build_dir: Path = Path("build")
    # "<capability>" runs its gRPC service, "<capability>.<stage>" one of its cascade's workers; all by default.
    services: Annotated[list[str], NoDecode] = Field(default_factory=discover)
    # Triton models to build and load; empty: every model of every capability (and any already in the repository).
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    base_port: int = Field(50051, ge=0, le=65000, description="service i listens on base_port + i; 0 picks free ports")
    nats_port: int = Field(4222, ge=0)
    triton_grpc_port: int = Field(8001, ge=0)
    triton_http_port: int = Field(8000, ge=0)
    triton_metrics_port: int = Field(8002, ge=0)
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("build/media"), Path("build/test-media"), Path("benchmarks/data")]
    )
    ready_timeout_s: float = Field(300.0, gt=0)
    trace_dir: Path | None = Field(None, description="every process writes its finished spans here (JSON lines)")

    @field_validator("services", "models", "media_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    @property
    def state_file(self) -> Path:
        return self.build_dir / "stack" / "state.json"


@dataclass
class StackState:
    pid: int
    nats_url: str
    triton_grpc: str
    triton_http: str
    services: dict[str, str] = field(default_factory=dict)  # name -> host:port
    ready_s: float = 0.0
    ready: bool = False

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass
class SupervisedService:
    """One service process, restarted with exponential backoff (0.5 s doubling to 30 s) when it dies."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    restarts: int = 0
    process: ManagedProcess | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{self.name}", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        # "translation" is a gRPC service; "translation.asr" is a stage worker of the translation cascade.
        capability, _, stage = self.name.partition(".")
        command = ["work", capability, stage] if stage else ["serve", capability]
        argv = [sys.executable, "-m", "tessera.cli", *command]
        self.process = ManagedProcess(self.name, argv, self.log_path, env={**self.env, "TESSERA_PORT": str(self.port)})
        self.process.start()

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            assert self.process is not None and self.process.popen is not None
            started = time.monotonic()
            while self.process.popen.poll() is None and not self._stop.wait(0.2):
                pass
            if self._stop.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = 0.5  # it ran a good while: treat this as a fresh failure
            log.warning("%s exited with %s; restarting in %.1f s", self.name, self.process.popen.returncode, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None:
            self.process.stop(timeout_s=20)
        if self._thread is not None:
            self._thread.join(5)


class StackStopped(Exception):
    """A stop was requested while the stack was still starting."""


@dataclass
class LocalStack:
    settings: StackSettings
    env: dict[str, str] = field(default_factory=dict)  # more environment for every service (log level, grace...)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    nats: NatsServer | None = None
    triton: TritonServer | None = None
    services: list[SupervisedService] = field(default_factory=list)

    def start(self) -> StackState:
        began = time.monotonic()
        s = self.settings
        StackState(pid=os.getpid(), nats_url="", triton_grpc="", triton_http="").save(s.state_file)  # `down` works
        build = s.build_dir.resolve()
        logs = build / "stack" / "logs"
        repo = build / "model_repository"
        models = s.models or None
        model_repository.build(repo, only=models)  # cheap (weights are hard-linked), and never stale
        self.nats = start_nats(build / "stack" / "jetstream", logs / "nats.log", s.nats_port)
        self.triton = start_triton(
            repo,
            build / "triton",
            logs / "triton.log",
            grpc_port=s.triton_grpc_port,
            http_port=s.triton_http_port,
            metrics_port=s.triton_metrics_port,
            timeout_s=s.ready_timeout_s,
            models=models,
        )
        env = {
            **self.env,
            "TESSERA_NATS_URL": self.nats.url,
            "TESSERA_TRITON_URL": self.triton.grpc_url,
            "TESSERA_MEDIA_ROOTS": ",".join(str(p.resolve()) for p in s.media_roots),
        }
        if s.trace_dir is not None:
            env["TESSERA_TRACE_DIR"] = str(s.trace_dir.resolve())
        for i, name in enumerate(s.services):
            port = s.base_port + i if s.base_port else free_port()
            service = SupervisedService(name, port, env, logs / f"{name}.log")
            service.start()
            self.services.append(service)
        deadline = time.monotonic() + s.ready_timeout_s
        for service in self.services:
            address = f"127.0.0.1:{service.port}"
            while health_status(address, "") != "SERVING":  # "" turns SERVING once its models are ready
                if self.stop_requested.is_set():
                    raise StackStopped("stop requested while starting")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{service.name} not SERVING after {s.ready_timeout_s:.0f} s; see {service.log_path}"
                    )
                time.sleep(0.2)
        state = StackState(
            pid=os.getpid(),
            nats_url=self.nats.url,
            triton_grpc=self.triton.grpc_url,
            triton_http=f"127.0.0.1:{self.triton.http_port}",
            services={svc.name: f"127.0.0.1:{svc.port}" for svc in self.services},
            ready_s=round(time.monotonic() - began, 2),
            ready=True,
        )
        state.save(s.state_file)
        return state

    @classmethod
    def on_free_ports(
        cls,
        build_dir: Path,
        services: list[str],
        models: list[str] | None = None,
        env: dict[str, str] | None = None,
        media_roots: list[Path] | None = None,
        trace_dir: Path | None = None,
    ) -> LocalStack:
        """A private stack (benchmarks, load tests): every port picked free, its state and logs under ``build_dir``."""
        settings = StackSettings(
            build_dir=build_dir,
            services=services,
            models=models or [],
            base_port=0,
            nats_port=0,
            triton_grpc_port=0,
            triton_http_port=0,
            triton_metrics_port=0,
            ready_timeout_s=300.0,
            trace_dir=trace_dir,
        )
        if media_roots is not None:
            settings.media_roots = media_roots
        return cls(settings, env=dict(env or {}))

    def address(self, name: str) -> str:
        """host:port of service ``name`` ("translation", "translation.asr")."""
        for service in self.services:
            if service.name == name:
                return f"127.0.0.1:{service.port}"
        raise KeyError(f"the stack runs no {name!r} (has {[svc.name for svc in self.services]})")

    def pids(self) -> dict[str, int]:
        """Process id of nats, triton and each service, by name: for reading their CPU time from /proc."""
        out = {svc.name: svc.process.pid for svc in self.services if svc.process is not None}
        if self.nats is not None:
            out["nats"] = self.nats.process.pid
        if self.triton is not None:
            out["triton"] = self.triton.process.pid
        return out

    def check_alive(self) -> None:
        """Raise when a service died or was restarted: a measurement across a restart measures something else."""
        for service in self.services:
            running = service.process is not None and service.process.alive()
            if service.restarts or not running:
                raise RuntimeError(f"{service.name} exited (restarts {service.restarts}); see {service.log_path}")

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        if self.triton is not None:
            self.triton.stop()
        if self.nats is not None:
            self.nats.stop()
        with contextlib.suppress(FileNotFoundError):
            self.settings.state_file.unlink()


def serve_stack(settings: StackSettings, on_ready: Callable[[StackState], None] | None = None) -> None:
    """Start everything, call ``on_ready``, then keep serving until SIGTERM/SIGINT."""
    stack = LocalStack(settings)
    stop = stack.stop_requested
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            state = stack.start()
        except StackStopped:
            return
        log.info("stack ready in %.1f s: %s", state.ready_s, state.services)
        if on_ready is not None:
            on_ready(state)
        while not stop.wait(1.0):
            pass
    finally:
        stack.stop()
