"""ServerApps.

* `app`        : Message-API ServerApp, FedAvg or FedProx (run-config `strategy`), client sampling via
                 fraction-train; with `int8=true` the strategy decodes int8 deltas.
* `secagg_app` : legacy-compat ServerApp: LegacyContext + DefaultWorkflow(fit_workflow=SecAggPlusWorkflow)
                 + legacy flwr.server.strategy.FedAvg (SecAgg+ is only available as a legacy workflow).
"""
import json
import os
import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerConfig
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from spikeapp.task import cfg, init_params, load_data, loss, train

RESULT_FILE = os.environ.get("SPIKE_RESULT_FILE", "")


def _global_loss(params, n_clients=8):
    return float(np.mean([loss(params, *load_data(p)) for p in range(n_clients)]))


def _dump(d):
    print("SPIKE_RESULT " + json.dumps(d), flush=True)
    if RESULT_FILE:
        with open(RESULT_FILE, "a") as f:
            f.write(json.dumps(d) + "\n")


# ---------------------------------------------------------------- Message API
class Int8FedAvg(FedAvg):
    """FedAvg whose clients send int8 deltas {q0, q1, ..., scales}; decode -> float, average, apply."""

    def configure_train(self, server_round, arrays, config, grid):
        self._current = arrays.to_numpy_ndarrays()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        if not valid:
            return None, None
        tot = 0.0
        acc = [np.zeros_like(c, dtype=np.float64) for c in self._current]
        for m in valid:
            ar = m.content["arrays"]
            scales = ar["scales"].numpy()
            n = float(m.content["metrics"]["num-examples"])
            for i in range(len(acc)):
                acc[i] += n * ar[f"q{i}"].numpy().astype(np.float64) * scales[i]
            tot += n
        new = [(c + a / tot).astype(np.float32) for c, a in zip(self._current, acc)]
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return ArrayRecord(new), metrics


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = cfg(context)
    num_rounds = int(rc.get("num-rounds", 2))
    frac = float(rc.get("fraction-train", 1.0))
    kw = dict(fraction_train=frac, fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    if bool(rc.get("int8", False)):
        strategy = Int8FedAvg(**kw)
    elif rc.get("strategy", "fedavg") == "fedprox":
        strategy = FedProx(proximal_mu=float(rc.get("proximal-mu", 0.1)), **kw)
    else:
        strategy = FedAvg(**kw)
    t0 = time.time()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(init_params()),
        num_rounds=num_rounds,
        timeout=float(rc.get("round-timeout", 60.0)),
    )
    final = result.arrays.to_numpy_ndarrays()
    _dump({"mode": "message-api", "rounds": num_rounds, "secs": time.time() - t0,
           "init_loss": _global_loss(init_params()), "final_loss": _global_loss(final),
           "train_metrics": {k: dict(v) for k, v in result.train_metrics_clientapp.items()}})


# ---------------------------------------------------------------- SecAgg+
class SecAggFedAvg(LegacyFedAvg):
    """Legacy FedAvg that (optionally) treats the aggregate as a delta and checks what the server sees."""

    def __init__(self, send_delta=False, int8=False, int8_scale=0.01, **kw):
        super().__init__(**kw)
        self.send_delta, self.int8, self.int8_scale = send_delta, int8, int8_scale
        self.log = []

    def configure_fit(self, server_round, parameters, client_manager):
        self._current = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        # With SecAggPlusWorkflow every FitRes.parameters has been *replaced* by the unmasked
        # aggregate -> the strategy never sees an individual update.
        arrs = [parameters_to_ndarrays(r.parameters) for _, r in results]
        all_same = all(all(np.array_equal(a, b) for a, b in zip(arrs[0], x)) for x in arrs)
        pids = sorted(int(r.metrics["pid"]) for _, r in results)
        # reference: recompute plain weighted mean of what these clients would have sent (test only)
        ref = [train(self._current, *load_data(p)) for p in pids]
        if self.send_delta:
            ref = [[n - c for n, c in zip(r, self._current)] for r in ref]
        if self.int8:
            ref = [[np.clip(np.round(x / self.int8_scale), -127, 127) for x in r] for r in ref]
        ref_mean = [np.mean([r[i] for r in ref], axis=0) for i in range(len(ref[0]))]
        agg = arrs[0]
        err = max(float(np.max(np.abs(a - b))) for a, b in zip(agg, ref_mean))
        self.log.append({"round": server_round, "n_results": len(results), "n_failures": len(failures),
                         "pids": pids, "fitres_all_identical_to_aggregate": all_same,
                         "max_abs_err_vs_plain_mean": err})
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if self.send_delta and params is not None:
            delta = parameters_to_ndarrays(params)
            if self.int8:  # aggregate is the mean of int8 codes -> rescale with the shared scale
                delta = [d * self.int8_scale for d in delta]
            params = ndarrays_to_parameters([c + d for c, d in zip(self._current, delta)])
        return params, metrics


secagg_app = ServerApp()


@secagg_app.main()
def secagg_main(grid: Grid, context: Context) -> None:
    rc = cfg(context)
    num_rounds = int(rc.get("num-rounds", 2))
    send_delta = bool(rc.get("send-delta", True))
    int8 = bool(rc.get("int8", False))
    int8_scale = float(rc.get("int8-scale", 0.01))
    strategy = SecAggFedAvg(
        send_delta=send_delta, int8=int8, int8_scale=int8_scale,
        fraction_fit=float(rc.get("fraction-train", 1.0)), fraction_evaluate=0.0,
        min_fit_clients=int(rc.get("min-fit", 3)), min_available_clients=int(rc.get("min-fit", 3)),
        initial_parameters=ndarrays_to_parameters(init_params()),
        on_fit_config_fn=lambda r: {"send-delta": send_delta, "int8": int8, "int8-scale": int8_scale},
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=num_rounds), strategy=strategy)
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=float(rc.get("num-shares", 1.0)),          # float = fraction of sampled clients
            reconstruction_threshold=float(rc.get("recon-threshold", 0.6)),
            max_weight=float(rc.get("max-weight", 1000.0)),         # >= num_examples of any client
            clipping_range=float(rc.get("clipping-range", 8.0)),
            quantization_range=int(rc.get("quantization-range", 2**22)),
            modulus_range=2**32,
            timeout=float(rc.get("secagg-timeout", 20.0)),
        )
    )
    t0 = time.time()
    workflow(grid, legacy)
    final = parameters_to_ndarrays(
        __import__("flwr").compat.common.recorddict_compat.arrayrecord_to_parameters(
            legacy.state.array_records["parameters"], keep_input=True))
    _dump({"mode": "secagg+", "rounds": num_rounds, "secs": time.time() - t0,
           "init_loss": _global_loss(init_params()), "final_loss": _global_loss(final),
           "per_round": strategy.log})
