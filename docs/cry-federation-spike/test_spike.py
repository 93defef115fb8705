"""pytest test_spike.py -q   (uses ./venv; no Ray needed)."""
import json, subprocess, sys, os

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "venv", "bin", "python")


def _run(mode, clients, cfg=None):
    out = subprocess.run([PY, os.path.join(HERE, "run_sim.py"), "--backend", "thread", "--mode", mode,
                          "--clients", str(clients), "--cfg", json.dumps(cfg or {})],
                         capture_output=True, text=True, timeout=300)
    line = [l for l in out.stdout.splitlines() + out.stderr.splitlines() if l.startswith("SPIKE_RESULT")]
    assert line, out.stderr[-3000:]
    return json.loads(line[-1].split(" ", 1)[1])


def test_fedavg_sampling():
    r = _run("fedavg", 5, {"fraction-train": 0.6})
    assert r["final_loss"] < r["init_loss"]


def test_secaggplus_dropout_in_training_stage():
    r = _run("secagg", 5, {"drop-pid": 1, "drop-mode": "raise", "min-fit": 5})
    assert all(p["n_results"] == 4 and p["fitres_all_identical_to_aggregate"] for p in r["per_round"])
    assert all(p["max_abs_err_vs_plain_mean"] < 1e-4 for p in r["per_round"])


def test_secaggplus_dropout_in_setup_stage_halts_round():  # documents a flwr 1.42 limitation
    r = _run("secagg", 5, {"drop-pid": 1, "drop-mode": "raise", "drop-stage": "share_keys", "min-fit": 5})
    assert r["per_round"] == [] and r["final_loss"] == r["init_loss"]
