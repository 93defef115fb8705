"""What every Triton python-backend ``model.py`` shares: config parameters, the request loop, input reading.

``triton_python_backend_utils`` exists only inside Triton's stub process, so it is imported when first needed,
never at import time: this module imports anywhere (unit tests install a stand-in under that name).

A model subclasses :class:`TritonModel`, names itself and implements ``infer(request) -> {output: array}``;
``execute`` answers each request in order. A ``ValueError`` or ``TypeError`` is the request's fault
(INVALID_ARG, "<model>: <message>"); any other exception fails that request only, "<model>: <Type>: <message>"
with Triton's default code (INTERNAL), and the model keeps serving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

Request = Any  # pb_utils.InferenceRequest
Response = Any  # pb_utils.InferenceResponse
Outputs = Mapping[str, NDArray[Any]]
T = TypeVar("T")


def pb_utils() -> Any:
    """The stub's ``triton_python_backend_utils`` module."""
    import triton_python_backend_utils

    return triton_python_backend_utils


class ModelParameters:
    """A model's ``parameters`` (config.pbtxt string values) with typed reads; a bad value fails the load."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ModelParameters:
        """From the ``args`` Triton passes to ``initialize``."""
        config = json.loads(args["model_config"])
        return cls({k: v["string_value"] for k, v in config.get("parameters", {}).items()})

    def text(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def integer(self, name: str, default: int) -> int:
        return self._typed(name, default, int, "an integer")

    def number(self, name: str, default: float) -> float:
        return self._typed(name, default, float, "a number")

    def flag(self, name: str, default: bool) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"config parameter {name!r}: {value!r} is not a boolean")

    def items(self, name: str, sep: str = ",", default: str = "") -> list[str]:
        """A separated list, each item stripped, empty items dropped."""
        return [item.strip() for item in self.text(name, default).split(sep) if item.strip()]

    def _typed(self, name: str, default: T, kind: Callable[[str], T], what: str) -> T:
        value = self.values.get(name)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"config parameter {name!r}: {value!r} is not {what}") from None


def model_threads(default: int) -> int:
    """CPU threads for a model's runtime: ``TESSERA_MODEL_THREADS``, else ``default``."""
    return int(os.environ.get("TESSERA_MODEL_THREADS", str(default)))


def input_array(request: Request, name: str) -> NDArray[Any]:
    tensor = pb_utils().get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name} missing")
    array: NDArray[Any] = tensor.as_numpy()
    return array


def input_texts(request: Request, name: str, errors: str = "strict") -> list[str]:
    """A bytes (TYPE_STRING) input, flattened and decoded as UTF-8 (a decode error is the request's fault)."""
    values = input_array(request, name).reshape(-1)
    return [v.decode("utf-8", errors) if isinstance(v, bytes) else str(v) for v in values]


def input_text(request: Request, name: str) -> str:
    """The first (usually the only) string of a bytes input."""
    texts = input_texts(request, name)
    if not texts:
        raise ValueError(f"input {name} is empty")
    return texts[0]


def text_output(text: str) -> NDArray[np.object_]:
    """One UTF-8 string as a TYPE_STRING [1] output."""
    return np.array([text.encode("utf-8")], dtype=np.object_)


def respond(requests: Iterable[Request], model_name: str, infer: Callable[[Request], Outputs]) -> list[Response]:
    """One response per request, in order; a failing request gets an error response, the others still run."""
    pb = pb_utils()
    responses = []
    for request in requests:
        try:
            outputs = infer(request)
            responses.append(pb.InferenceResponse([pb.Tensor(name, array) for name, array in outputs.items()]))
        except (ValueError, TypeError) as exc:  # the request's fault: INVALID_ARGUMENT for the client
            error = pb.TritonError(f"{model_name}: {exc}", pb.TritonError.INVALID_ARG)
            responses.append(pb.InferenceResponse(error=error))
        except Exception as exc:  # a failure must not take the model down; INTERNAL maps to UNAVAILABLE
            error = pb.TritonError(f"{model_name}: {type(exc).__name__}: {exc}")
            responses.append(pb.InferenceResponse(error=error))
    return responses


class TritonModel:
    """Base of a ``TritonPythonModel``: set ``name``, implement ``initialize`` and ``infer``."""

    name: ClassVar[str]

    def infer(self, request: Request) -> Outputs:
        raise NotImplementedError

    def execute(self, requests: list[Request]) -> list[Response]:
        return respond(requests, self.name, self.infer)
