"""Model + data: numpy linear regression y = X w + b on random data (per-client partition)."""
import os

import numpy as np

DIM = int(os.environ.get("SPIKE_DIM", "20"))  # raise (e.g. 100000) to measure bytes/round
TRUE_W = np.linspace(-1, 1, DIM).astype(np.float32)


def init_params():
    return [np.zeros(DIM, dtype=np.float32), np.zeros(1, dtype=np.float32)]


def load_data(pid: int, n: int = 100):
    rng = np.random.default_rng(1000 + pid)
    X = rng.normal(size=(n, DIM)).astype(np.float32)
    y = X @ TRUE_W + 0.5 + 0.01 * rng.normal(size=n).astype(np.float32)
    return X, y


def train(params, X, y, epochs=5, lr=None, prox_mu=0.0):
    lr = lr or 0.05 * min(1.0, 20 / DIM)
    w, b = params[0].copy(), params[1].copy()
    w0, b0 = params[0], params[1]
    for _ in range(epochs):
        err = X @ w + b - y
        gw = X.T @ err / len(y) + prox_mu * (w - w0)   # FedProx proximal term
        gb = np.array([err.mean()]) + prox_mu * (b - b0)
        w -= lr * gw
        b -= lr * gb.astype(np.float32)
    return [w.astype(np.float32), b.astype(np.float32)]


def loss(params, X, y):
    return float(np.mean((X @ params[0] + params[1] - y) ** 2))


def quantize_int8(delta):
    """Symmetric per-tensor int8 quantisation -> (int8 array, float scale)."""
    scale = float(np.max(np.abs(delta))) / 127.0 or 1.0
    q = np.clip(np.round(delta / scale), -127, 127).astype(np.int8)
    return q, scale


def cfg(context) -> dict:
    """run_config (pyproject / `flwr run -c`) overridden by env SPIKE_CFG (JSON) for run_simulation()."""
    import json, os
    d = dict(context.run_config)
    d.update(json.loads(os.environ.get("SPIKE_CFG", "{}")))
    return d
