"""The platform under test, the local stack on free ports: nats-server, tritonserver (asr, mt, tts), the three
cascade workers and the translation gateway, each a separate process so its CPU time can be read from /proc.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc.aio as triton_aio

from tessera.runtime import service
from tessera.runtime.bus import Bus
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer, TritonServer
from tessera.runtime.stack import LocalStack

STAGES = ("asr", "mt", "tts")


@dataclass
class Stack:
    """``runtime.stack.LocalStack`` on free ports, with the benchmark's short process names (gateway, asr, mt, tts)."""

    work: Path
    local: LocalStack | None = None

    @property
    def nats(self) -> NatsServer | None:
        return self.local.nats if self.local is not None else None

    @property
    def triton(self) -> TritonServer | None:
        return self.local.triton if self.local is not None else None

    @property
    def gateway(self) -> str:
        assert self.local is not None
        return self.local.address("translation")

    def start(self) -> None:
        """Returns once every worker and the gateway serve health (the gateway after Triton's models are ready)."""
        self.local = LocalStack.on_free_ports(
            self.work,
            [*(f"translation.{stage}" for stage in STAGES), "translation"],
            models=list(STAGES),
            env={"TESSERA_GRACE_S": "2", "TESSERA_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"},
        )
        self.local.start()

    def pids(self) -> dict[str, int]:
        assert self.local is not None
        short = {"translation": "gateway", **{f"translation.{stage}": stage for stage in STAGES}}
        return {short.get(name, name): pid for name, pid in self.local.pids().items()}

    def check_alive(self) -> None:
        assert self.local is not None
        self.local.check_alive()

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
        if self.local is not None:
            self.local.stop()
