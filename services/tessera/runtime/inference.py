"""Async Triton client (KServe v2 over gRPC) that checks inputs against the model's own config.

A service knows only a model's name and its tensors; everything about where and how the model runs is Triton's.
Failures come back as Tessera errors: a server that is down or a model that is not ready is UNAVAILABLE, a tensor
the model refuses is INVALID_ARGUMENT, a call that outlives the deadline is DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tessera.runtime import deadlines
from tessera.runtime.errors import DeadlineExceeded, InvalidArgument, TesseraError, Unavailable

_CONFIG_TO_WIRE = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
}
_WIRE_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # wire name: FP32, UINT8, BYTES...
    dims: tuple[int, ...]  # without the batch dimension; -1 is any size
    optional: bool = False


@dataclass(frozen=True)
class ModelContract:
    """What a model accepts and returns, read from its config.pbtxt through Triton."""

    name: str
    max_batch_size: int
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    parameters: dict[str, str]  # config.pbtxt parameters: where a model declares what it serves (languages...)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelContract:
        def specs(entries: list[dict[str, Any]]) -> dict[str, TensorSpec]:
            return {
                e["name"]: TensorSpec(
                    e["name"],
                    _CONFIG_TO_WIRE.get(e.get("data_type", ""), e.get("data_type", "")),
                    tuple(int(d) for d in e.get("dims", [])),
                    bool(e.get("optional", False)),
                )
                for e in entries
            }

        return cls(
            name=config["name"],
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=specs(config.get("input", [])),
            outputs=specs(config.get("output", [])),
            parameters={k: str(v.get("string_value", "")) for k, v in config.get("parameters", {}).items()},
        )

    def check(self, inputs: dict[str, NDArray[Any]]) -> None:
        """Raise InvalidArgument (field = model.input) for a missing, unknown or ill-shaped tensor."""
        for name in inputs:
            if name not in self.inputs:
                raise InvalidArgument(f"model {self.name} has no input {name!r}", field=f"{self.name}.{name}")
        for name, spec in self.inputs.items():
            field = f"{self.name}.{name}"
            if name not in inputs:
                if spec.optional:
                    continue
                raise InvalidArgument(f"model {self.name} needs input {name!r}", field=field)
            array = inputs[name]
            expected = _WIRE_TO_NUMPY.get(spec.datatype)
            bytes_ok = spec.datatype == "BYTES" and array.dtype.kind in "OSU"
            if expected is not None and array.dtype.type is not np.dtype(expected).type and not bytes_ok:
                raise InvalidArgument(f"{spec.datatype} expected, got {array.dtype}", field=field)
            shape = array.shape[1:] if self.max_batch_size > 0 else array.shape
            if self.max_batch_size > 0 and (array.ndim == 0 or array.shape[0] < 1):
                raise InvalidArgument("batch dimension must be >= 1", field=field)
            if len(shape) != len(spec.dims) or any(d not in (-1, s) for d, s in zip(spec.dims, shape, strict=True)):
                raise InvalidArgument(f"shape {list(array.shape)} does not match dims {list(spec.dims)}", field=field)


def _map_error(model: str, exc: InferenceServerException) -> TesseraError:
    status = str(exc.status() or "")
    message = exc.message() or str(exc)
    if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
        return DeadlineExceeded(f"model {model} did not answer in time")
    if "INVALID_ARGUMENT" in status:
        return InvalidArgument(f"model {model} refused the request: {message}", field=model)
    return Unavailable(f"model {model} unavailable: {message}")


class TritonClient:
    """One connection to Triton; safe to share across tasks of one event loop."""

    def __init__(self, url: str, *, default_timeout_s: float = 30.0, max_message_bytes: int = 256 * 1024 * 1024):
        self.url = url
        self.default_timeout_s = default_timeout_s
        channel_args = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._client = triton_aio.InferenceServerClient(url, channel_args=channel_args)
        self._contracts: dict[str, ModelContract] = {}

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def wait_ready(self, models: list[str], timeout_s: float = 120.0) -> None:
        """Block until the server and every named model are ready, or raise Unavailable naming the laggards."""
        deadline = time.monotonic() + timeout_s
        pending = list(models)
        while True:
            try:
                if await self._client.is_server_live(client_timeout=2.0):
                    pending = [m for m in pending if not await self._client.is_model_ready(m, client_timeout=2.0)]
                    if not pending:
                        return
            except InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"Triton at {self.url}: models not ready after {timeout_s:.0f} s: {pending}")
            await asyncio.sleep(0.2)

    async def contract(self, model: str) -> ModelContract:
        if model not in self._contracts:
            try:
                response = await self._client.get_model_config(model, as_json=True, client_timeout=5.0)
            except InferenceServerException as exc:
                raise _map_error(model, exc) from None
            self._contracts[model] = ModelContract.from_config(response["config"])
        return self._contracts[model]

    async def infer(
        self,
        model: str,
        inputs: dict[str, NDArray[Any]],
        *,
        outputs: list[str] | None = None,
        timeout_s: float | None = None,
        parameters: dict[str, str | int | bool] | None = None,
    ) -> dict[str, NDArray[Any]]:
        """Run one request; the timeout never outlives the caller's gRPC deadline."""
        contract = await self.contract(model)
        contract.check(inputs)
        timeout = deadlines.bounded(timeout_s or self.default_timeout_s)
        if timeout <= 0:
            raise DeadlineExceeded(f"no time left to call model {model}")
        request = []
        for name, array in inputs.items():
            spec = contract.inputs[name]
            tensor = InferInput(name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array.astype(np.object_) if spec.datatype == "BYTES" else array)
            request.append(tensor)
        wanted = outputs or list(contract.outputs)
        try:
            result = await self._client.infer(
                model,
                request,
                outputs=[InferRequestedOutput(name) for name in wanted],
                client_timeout=timeout,
                parameters=parameters,
            )
        except InferenceServerException as exc:
            raise _map_error(model, exc) from None
        return {name: result.as_numpy(name) for name in wanted}
