"""The platform under test, all our own processes on free ports: nats-server, tritonserver (asr, mt, tts), the three
cascade workers and the translation gateway, each a separate process so its CPU time can be read from /proc.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import tritonclient.grpc.aio as triton_aio

from tessera.runtime import model_repository, service
from tessera.runtime.bus import Bus
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer, TritonServer, free_port, start_nats, start_triton
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc

STAGES = ("asr", "mt", "tts")


@dataclass
class Stack:
    work: Path
    nats: NatsServer | None = None
    triton: TritonServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    gateway_port: int = 0

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    def start(self) -> None:
        repo = self.work / "model_repository"
        model_repository.build(repo, only=list(STAGES))
        self.nats = start_nats(self.work / "nats", self.work / "logs" / "nats.log")
        self.triton = start_triton(
            repo, self.work / "triton", self.work / "logs" / "triton.log", models=list(STAGES), timeout_s=300
        )
        env = {
            **os.environ,
            "TESSERA_NATS_URL": self.nats.url,
            "TESSERA_TRITON_URL": self.triton.grpc_url,
            "TESSERA_GRACE_S": "2",
            "TESSERA_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }
        for stage in STAGES:
            self._spawn(stage, ["work", "translation", stage], {**env, "TESSERA_PORT": "0"})
        self.gateway_port = free_port()
        self._spawn("gateway", ["serve", "translation"], {**env, "TESSERA_PORT": str(self.gateway_port)})

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.work / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", *args], env=env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()

    def pids(self) -> dict[str, int]:
        assert self.nats is not None and self.triton is not None
        out = {"nats": self.nats.process.pid, "triton": self.triton.process.pid}
        out.update({name: proc.pid for name, proc in self.procs.items()})
        return out

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.work / 'logs' / (name + '.log')}")

    async def wait_serving(self, timeout_s: float = 300) -> None:
        """The gateway answers CreateConference once Triton's models are ready (and it read their languages)."""
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.gateway) as channel:
            stub = pb_grpc.ConferenceServiceStub(channel)
            while True:
                self.check_alive()
                try:
                    await stub.CreateConference(pb.CreateConferenceRequest(conference_id="ready-probe"), timeout=2)
                    await stub.EndConference(pb.EndConferenceRequest(conference_id="ready-probe"), timeout=2)
                    return
                except grpc.aio.AioRpcError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)

    async def describe(self) -> dict[str, dict[str, int]]:
        """Handler slots of each worker (from the worker factories themselves) and Triton instances per model."""
        assert self.nats is not None and self.triton is not None
        settings = ServerSettings.model_validate(
            {"port": 0, "nats_url": self.nats.url, "triton_url": self.triton.grpc_url}
        )
        logging.getLogger("tessera.runtime.bus").setLevel(logging.ERROR)  # no "disconnected" line on close
        bus = await Bus.connect(self.nats.url, "translation-benchmark-probe")
        slots: dict[str, int] = {}
        try:
            for stage in STAGES:
                worker = await service.worker_factory_for("translation", stage)(settings, bus)
                slots[stage] = worker.concurrency
                for closer in worker.on_close:
                    await closer()
        finally:
            await bus.close()
        instances: dict[str, int] = {}
        raw = triton_aio.InferenceServerClient(self.triton.grpc_url)
        try:
            for model in STAGES:
                config = (await raw.get_model_config(model, as_json=True))["config"]
                instances[model] = sum(int(group.get("count", 1)) for group in config.get("instance_group", []))
        finally:
            await raw.close()
        return {"worker_concurrency": slots, "triton_instances": instances}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.triton is not None:
            self.triton.stop()
        if self.nats is not None:
            self.nats.stop()
