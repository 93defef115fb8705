"""runtime.triton_python: config parameters, the request loop's error mapping, input reading.

``triton_python_backend_utils`` only exists inside Triton's stub process (it wraps the stub's C++ module), so these
tests install a small stand-in under that name. The seven real models run this code in real tritonserver in the
integration and e2e tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tessera.runtime import triton_python
from tessera.runtime.triton_python import (
    ModelParameters,
    TritonModel,
    input_array,
    input_text,
    input_texts,
    model_threads,
    respond,
    text_output,
)


@dataclass
class FakeTensor:
    name: str
    array: Any

    def as_numpy(self) -> Any:
        return self.array


@dataclass
class FakeError:
    message: str
    code: int = 13  # INTERNAL, Triton's default

    INTERNAL = 13
    INVALID_ARG = 3


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor] = field(default_factory=list)
    error: FakeError | None = None


@dataclass
class FakeRequest:
    inputs: dict[str, Any]


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.TritonError = FakeError  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]

    def get_input_tensor_by_name(request: FakeRequest, name: str) -> FakeTensor | None:
        return FakeTensor(name, request.inputs[name]) if name in request.inputs else None

    module.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def args_with(parameters: dict[str, str]) -> dict[str, str]:
    config = {"name": "m", "parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return {"model_config": json.dumps(config), "model_instance_kind": "CPU"}


def test_import_does_not_need_the_stub_module() -> None:
    code = "import sys, tessera.runtime.triton_python; assert 'triton_python_backend_utils' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_parameters_typed_reads_and_defaults() -> None:
    params = ModelParameters.from_args(
        args_with({"px": "320", "t": "0.05", "on": "True", "off": "0", "langs": " en, es ,,fr ", "classes": "a|b c"})
    )
    assert params.integer("px", 1) == 320 and params.integer("missing", 7) == 7
    assert params.number("t", 1.0) == pytest.approx(0.05) and params.number("missing", 0.5) == 0.5
    assert params.flag("on", False) is True and params.flag("off", True) is False and params.flag("x", True)
    assert params.items("langs") == ["en", "es", "fr"]
    assert params.items("missing") == [] and params.items("missing", default="en") == ["en"]
    assert params.items("classes", "|") == ["a", "b c"]
    assert params.text("classes") == "a|b c" and params.text("missing") == "" and params.text("missing", "d") == "d"
    assert ModelParameters.from_args({"model_config": json.dumps({"name": "m"})}).values == {}


def test_a_bad_parameter_fails_the_load_naming_it() -> None:
    params = ModelParameters({"px": "big", "t": "x", "on": "maybe"})
    with pytest.raises(ValueError, match="'px': 'big' is not an integer"):
        params.integer("px", 1)
    with pytest.raises(ValueError, match="'t': 'x' is not a number"):
        params.number("t", 1.0)
    with pytest.raises(ValueError, match="'on': 'maybe' is not a boolean"):
        params.flag("on", False)


def test_model_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_threads(2) == 2
    monkeypatch.setenv("TESSERA_MODEL_THREADS", "4")
    assert model_threads(2) == 4


def test_inputs(pb: types.ModuleType) -> None:
    request = FakeRequest(
        {
            "X": np.arange(3, dtype=np.float32),
            "LANG": np.array([b"es"], dtype=np.object_),
            "Q": np.array([[b"a cat"], [b"\xff dog"], ["plain"]], dtype=np.object_),
            "EMPTY": np.array([], dtype=np.object_),
        }
    )
    np.testing.assert_array_equal(input_array(request, "X"), [0, 1, 2])
    assert input_text(request, "LANG") == "es"
    assert input_texts(request, "Q", errors="replace") == ["a cat", "\ufffd dog", "plain"]
    with pytest.raises(UnicodeDecodeError):  # a ValueError: the request's fault
        input_texts(request, "Q")
    with pytest.raises(ValueError, match="input MISSING missing"):
        input_array(request, "MISSING")
    with pytest.raises(ValueError, match="input EMPTY is empty"):
        input_text(request, "EMPTY")
    out = text_output("olé")
    assert out.dtype == np.object_ and out.tolist() == ["olé".encode()]


def test_respond_answers_each_request_in_order_and_maps_errors(pb: types.ModuleType) -> None:
    def infer(request: FakeRequest) -> dict[str, Any]:
        x = input_array(request, "X")
        if x.size == 0:
            raise ValueError("X must not be empty")
        if x.dtype != np.float32:
            raise TypeError("X must be float32")
        if x[0] < 0:
            raise RuntimeError("boom")
        return {"Y": x * 2, "N": np.array([x.size], np.int32)}

    requests = [
        FakeRequest({"X": np.ones(2, np.float32)}),
        FakeRequest({"X": np.zeros(0, np.float32)}),
        FakeRequest({"X": np.ones(2, np.int64)}),
        FakeRequest({"X": -np.ones(1, np.float32)}),
        FakeRequest({}),
        FakeRequest({"X": np.full(3, 2, np.float32)}),
    ]
    ok, empty, wrong_type, crash, missing, last = respond(requests, "mymodel", infer)
    assert ok.error is None and [t.name for t in ok.output_tensors] == ["Y", "N"]
    np.testing.assert_array_equal(ok.output_tensors[0].array, [2, 2])
    assert (empty.error.message, empty.error.code) == ("mymodel: X must not be empty", FakeError.INVALID_ARG)
    assert (wrong_type.error.message, wrong_type.error.code) == ("mymodel: X must be float32", FakeError.INVALID_ARG)
    assert (crash.error.message, crash.error.code) == ("mymodel: RuntimeError: boom", FakeError.INTERNAL)
    assert (missing.error.message, missing.error.code) == ("mymodel: input X missing", FakeError.INVALID_ARG)
    assert last.error is None and last.output_tensors[1].array.tolist() == [3]  # a failure does not stop the rest


def test_base_class_execute_uses_its_name(pb: types.ModuleType) -> None:
    class Doubler(TritonModel):
        name = "doubler"

        def infer(self, request: Any) -> dict[str, Any]:
            return {"Y": input_array(request, "X") * 2}

    ok, bad = Doubler().execute([FakeRequest({"X": np.ones(1)}), FakeRequest({})])
    assert ok.output_tensors[0].array.tolist() == [2.0]
    assert bad.error.message == "doubler: input X missing"
    with pytest.raises(NotImplementedError):
        TritonModel().infer(FakeRequest({}))
    assert triton_python.pb_utils() is pb
