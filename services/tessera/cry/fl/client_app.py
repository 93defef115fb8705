"""The family's device: Flower ClientApp. It trains the adapters on the family's own recordings (FedProx) and
uploads only the delta, through SecAgg+ (8-bit stochastic quantisation, masked in Z_m) and the packing codec.

Audio never leaves the device: ``fit`` returns the adapter delta, which ``secaggplus_mod`` masks before anything is
sent. ``Behaviour`` lets tests and benchmarks run hostile devices beside honest ones.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.client import Client, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import NDArrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from tessera.cry import federation, nets
from tessera.cry.fl import coordinator, data, wire
from tessera.cry.fl.settings import FederationSettings
from tessera.runtime import config


class Behaviour(enum.Enum):
    HONEST = "honest"
    POISONED = "poisoned"  # a huge, sign-flipped delta (clipped by SecAgg+, then the coordinator's gate)
    MALFORMED = "malformed"  # truncated masked vector bytes
    OVERSIZED = "oversized"  # a masked vector padded with megabytes


class DeviceDropped(RuntimeError):
    """Fault injection: the device goes away mid-round (after key sharing, before its masked upload)."""


@functools.cache
def _base_state(settings_json: str) -> dict[str, torch.Tensor]:
    net, _ = coordinator.load_base(FederationSettings.model_validate_json(settings_json))
    return {k: v.clone() for k, v in net.state_dict().items()}


class FamilyDevice(NumPyClient):
    def __init__(self, partition: int, settings: FederationSettings, behaviour: Behaviour) -> None:
        self.partition = partition
        self.settings = settings
        self.behaviour = behaviour

    def fit(self, parameters: NDArrays, config: Mapping[str, Any]) -> tuple[NDArrays, int, dict[str, Any]]:
        if config.get("drop"):
            raise DeviceDropped(f"family {self.partition} dropped out of round {config.get('round')}")
        net = nets.CryNet(nets.Architecture())
        net.load_state_dict(_base_state(self.settings.model_dump_json()))
        names = nets.adapter_names(net)
        federation.load_adapters(net, dict(zip(names, parameters, strict=True)))
        batch = data.device_batch(self.partition)
        seed = int(config.get("round", 0)) * 1000 + self.partition
        rng = np.random.default_rng(seed)
        keep = rng.permutation(len(batch.labels))[: int(self.settings.max_weight)]
        delta, loss = federation.local_update(
            net,
            batch.mel[keep],
            batch.labels[keep],
            epochs=self.settings.local_epochs,
            mu=self.settings.proximal_mu,
            lr=self.settings.lr,
            batch=self.settings.batch,
            seed=seed,
        )
        values = [delta[n] for n in names]
        if not all(np.all(np.isfinite(v)) for v in values):  # a diverged device sends nothing rather than NaN
            raise federation.UpdateRejected(f"family {self.partition}: local update is not finite")
        if self.behaviour is Behaviour.POISONED:
            values = [-1000.0 * v for v in values]
        return values, len(keep), {"loss": float(loss), "partition": self.partition}


def _hostile_wire_mod(
    behaviour: Behaviour,
) -> Callable[[Message, Context, Callable[[Message, Context], Message]], Message]:
    def mod(message: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        reply = call_next(message, context)
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS) if not reply.has_error() else None
        if configs is not None and Key.MASKED_PARAMETERS in configs:
            blobs = [bytes(b) for b in cast(list[bytes], configs[Key.MASKED_PARAMETERS])]
            if behaviour is Behaviour.MALFORMED:
                blobs[1] = blobs[1][: len(blobs[1]) // 2]
            else:
                blobs.append(b"\x01" + (4 * 1024 * 1024).to_bytes(4, "little") + bytes(8 * 1024 * 1024))
            configs[Key.MASKED_PARAMETERS] = blobs
        return reply

    return mod


def make_client_app(settings: FederationSettings, behaviours: Mapping[int, Behaviour] | None = None) -> ClientApp:
    """A ClientApp whose device for partition p behaves as ``behaviours[p]`` (honest by default)."""
    chosen = dict(behaviours or {})

    def client_fn(context: Context) -> Client:
        partition = int(context.node_config["partition-id"])
        return FamilyDevice(partition, settings, chosen.get(partition, Behaviour.HONEST)).to_client()

    mods: list[Any] = [wire.packed_masked_vectors_mod, secaggplus_mod]
    if any(b in (Behaviour.MALFORMED, Behaviour.OVERSIZED) for b in chosen.values()):
        hostile = {p for p, b in chosen.items() if b in (Behaviour.MALFORMED, Behaviour.OVERSIZED)}

        def per_device(message: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
            partition = int(context.node_config["partition-id"])
            if partition in hostile:
                return _hostile_wire_mod(chosen[partition])(message, context, call_next)
            return call_next(message, context)

        mods.insert(0, per_device)
    return ClientApp(client_fn=client_fn, mods=mods)


# Flower's deployment engine (`flwr run`, SuperNodes on devices) loads this: settings from TESSERA_CRY_FL_*.
app = make_client_app(config.load(FederationSettings))
