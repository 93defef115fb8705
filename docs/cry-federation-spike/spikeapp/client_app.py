"""ClientApps.

* `app`        : Message-API ClientApp (new style, @app.train) - plain FedAvg/FedProx,
                 optionally sends int8-quantised deltas (run-config `int8=true`).
* `secagg_app` : legacy NumPyClient wrapped in ClientApp(client_fn, mods=[secaggplus_mod]).
                 SecAgg+ mod needs the legacy "fitres.*" record layout -> use NumPyClient.
Drop-out simulation: env/run-config `drop_pid` = partition id that fails; `drop_mode`
= "raise" | "sleep" (sleep `drop_sleep` seconds).
"""
import os
import time

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_to_proto

from spikeapp.task import cfg, init_params, load_data, loss, quantize_int8, train

LOG_SIZES = os.environ.get("SPIKE_LOG_SIZES", "0") == "1"
SIZE_FILE = os.environ.get("SPIKE_SIZE_FILE", "")


def wire_size_mod(msg, ctxt, call_next):
    """Log protobuf-serialised size of the reply content (flwr's message_size_mod crashes with
    secaggplus_mod: ConfigRecord.count_bytes() does v[0] on empty lists -> IndexError)."""
    out = call_next(msg, ctxt)
    stage = ""
    if "secaggplus_configs" in msg.content.config_records:  # stage is popped by the inner mod
        stage = ctxt.state.config_records.get("secaggplus_state", {}).get("current_stage", "")
    nbytes = recorddict_to_proto(out.content).ByteSize()
    line = f"SPIKE_SIZE node={ctxt.node_id} type={msg.metadata.message_type} stage={stage} out_bytes={nbytes}"
    print(line, flush=True)
    if SIZE_FILE:
        with open(SIZE_FILE, "a") as f:
            f.write(line + "\n")
    return out


def _pid(context: Context) -> int:
    return int(context.node_config.get("partition-id", context.node_id % 1000))


def _maybe_drop(context: Context, stage="collect_masked_vectors"):
    c = cfg(context)
    drop_pid = int(c.get("drop-pid", -1))
    if drop_pid < 0 or _pid(context) != drop_pid or c.get("drop-stage", "collect_masked_vectors") != stage:
        return
    mode = cfg(context).get("drop-mode", "raise")
    if mode == "raise":
        raise RuntimeError(f"client {drop_pid} simulated crash")
    time.sleep(float(cfg(context).get("drop-sleep", 30.0)))


# ---------------------------------------------------------------- new Message API
app = ClientApp(mods=[wire_size_mod] if LOG_SIZES else [])


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    _maybe_drop(context)
    pid = _pid(context)
    X, y = load_data(pid)
    glob = msg.content["arrays"].to_numpy_ndarrays()
    mu = float(msg.content["config"].get("proximal-mu", 0.0)) if "config" in msg.content else 0.0
    new = train(glob, X, y, prox_mu=mu)
    metrics = {"train_loss": loss(new, X, y), "num-examples": len(y)}
    if bool(cfg(context).get("int8", False)):
        # send int8 deltas + per-tensor scales (float32) - decoded by the server strategy
        qs, scales = zip(*[quantize_int8(n - g) for n, g in zip(new, glob)])
        # ArrayRecord(dict) needs flwr Array values (a dict of raw ndarrays is rejected); int8 is kept as int8
        arrays = ArrayRecord({f"q{i}": Array(q) for i, q in enumerate(qs)})
        arrays["scales"] = Array(np.array(scales, dtype=np.float32))
    else:
        arrays = ArrayRecord(new)
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)}), reply_to=msg)


@app.evaluate()
def eval_fn(msg: Message, context: Context) -> Message:
    X, y = load_data(_pid(context))
    p = msg.content["arrays"].to_numpy_ndarrays()
    m = MetricRecord({"eval_loss": loss(p, X, y), "num-examples": len(y)})
    return Message(RecordDict({"metrics": m}), reply_to=msg)


# ---------------------------------------------------------------- SecAgg+ (legacy client)
class LinClient(NumPyClient):
    def __init__(self, context: Context):
        self.context = context
        self.pid = _pid(context)
        self.X, self.y = load_data(self.pid)

    def fit(self, parameters, config):
        _maybe_drop(self.context)
        new = train(parameters, self.X, self.y)
        # send the *delta* (small range -> fits SecAgg+ clipping_range) -- server adds it back
        if config.get("send-delta", False):
            out = [n - p for n, p in zip(new, parameters)]
        else:
            out = new
        if config.get("int8", False):
            # int8 with a SHARED, server-chosen scale (per-client scales cannot be summed securely).
            # SecAgg+ casts these to float, multiplies by num_examples/max_weight, re-quantises to
            # [0, quantization_range) and uploads int64 masked values -> no bandwidth saving.
            s = float(config["int8-scale"])
            out = [np.clip(np.round(o / s), -127, 127).astype(np.int8) for o in out]
        return out, len(self.y), {"pid": self.pid}

    def evaluate(self, parameters, config):
        return loss(parameters, self.X, self.y), len(self.y), {}


def client_fn(context: Context):
    return LinClient(context).to_client()


def stage_dropout_mod(msg, ctxt, call_next):
    """Simulate a drop-out in a given SecAgg+ stage (setup/share_keys/unmask); training stage is in fit()."""
    sc = msg.content.config_records.get("secaggplus_configs")
    if sc is not None and sc.get("stage") != "collect_masked_vectors":
        _maybe_drop(ctxt, stage=sc.get("stage"))
    return call_next(msg, ctxt)


secagg_app = ClientApp(
    client_fn=client_fn,
    mods=([wire_size_mod] if LOG_SIZES else []) + [stage_dropout_mod, secaggplus_mod],
)
