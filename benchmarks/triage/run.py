"""Triage benchmark: caption-then-text against vision-direct (the ablation of arXiv 2512.13747), calibration,
abstention, out-of-distribution referral and latency, in one run.

1. Ablation and label efficiency. For n = 100, 300 and 1000 training images (repo-made, seeded, disjoint from the
   test set), both pathways are trained from scratch with the same images, the same optimiser and the same number
   of steps, on the same lesion trunk (tessera.triage.nets): caption-then-text = the captioner (lesion heatmaps,
   trained on the lesion annotations) -> findings text -> the text reasoner; vision-direct = the trunk with a
   per-quadrant pooled classifier, trained on the grades. Each is temperature-scaled on its own validation set.
   Scored on 600 test images: macro-F1 over the five grades, and on adjacent-grade pairs (the test cases of the two
   grades, predictions outside the pair count as wrong; mean over the four pairs).
2. Operating points of the served models (build/trained, `make models`): ECE on the test set, the accuracy-coverage
   curve of the refer threshold, and the share of held-out non-fundus photographs referred (opencv-doc's pictures
   and scikit-image pictures never used in training, random crops of them, plus the whole pictures).
3. Latency per assessment through the real service: nats-server, tritonserver with triage_captioner and
   triage_reasoner, and the triage service started with runtime.stack.LocalStack on free ports; sequential Assess
   calls on test images, against the in-process compute of the same two networks (the service's overhead ratio).

Usage::

    .venv/bin/python benchmarks/triage/run.py           # -> benchmarks/results/triage.{json,md,png}
    .venv/bin/python benchmarks/triage/run.py --quick   # smoke: n = 100 only, smaller sets (to a temp dir)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from tessera.runtime.stack import LocalStack
from tessera.triage import calibration, findings, grading, nets, training
from tessera.triage.client import TriageClient
from tessera.triage.contracts import MODELS
from tessera.triage.grading import CLASSES

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
OPENCV_DOC = ROOT / "build" / "media" / "opencv-doc"
TRAINED = ROOT / "build" / "trained" / "triage"
SIZES = (100, 300, 1000)
ADJACENT = [(CLASSES[i], CLASSES[i + 1]) for i in range(len(CLASSES) - 1)]


def adjacent_f1(predicted: NDArray[np.int64], labels: NDArray[np.int64]) -> dict[str, float]:
    """Per adjacent pair: macro-F1 over the two grades on the test cases of those grades."""
    out = {}
    for a, b in ADJACENT:
        ia, ib = CLASSES.index(a), CLASSES.index(b)
        keep = (labels == ia) | (labels == ib)
        truth = np.where(labels[keep] == ia, 0, 1)
        pred = np.where(predicted[keep] == ia, 0, np.where(predicted[keep] == ib, 1, 2))  # 2: outside the pair
        out[f"{a}|{b}"] = round(calibration.macro_f1(pred, truth, 2), 4)
    return out


def scores(probs: NDArray[np.float64], labels: NDArray[np.int64]) -> dict[str, Any]:
    predicted = probs.argmax(axis=1)
    pairs = adjacent_f1(predicted, labels)
    return {
        "macro_f1": round(calibration.macro_f1(predicted, labels, len(CLASSES)), 4),
        "adjacent_macro_f1": round(float(np.mean(list(pairs.values()))), 4),
        "adjacent_pairs": pairs,
        "accuracy": round(float((predicted == labels).mean()), 4),
        "ece": round(calibration.ece(probs, labels), 4),
    }


def non_fundus(count: int, seed: int) -> NDArray[np.uint8]:
    """Held-out negatives: opencv-doc's photographs and held-out scikit-image pictures, cropped and whole."""
    pictures = training.picture_sources(training.HELD_OUT_NEGATIVES)
    for path in sorted(OPENCV_DOC.glob("*.jpg")) + sorted(OPENCV_DOC.glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None and min(image.shape[:2]) >= 64:
            pictures.append(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.uint8))
    whole = [np.asarray(cv2.resize(p, (256, 256), interpolation=cv2.INTER_AREA), np.uint8) for p in pictures]
    crops = training.negatives(count, seed, pictures, lookalikes=0.0)
    return np.concatenate([np.stack(whole), crops])


def ablation(n: int, test: training.FundusSet, config: training.TrainConfig, seed: int) -> dict[str, Any]:
    train = training.fundus_set(n, seed)
    validation = training.fundus_set(200, seed + 1)
    negative = training.negatives(300, seed + 2, training.picture_sources(training.TRAIN_NEGATIVES))
    rotated = training.rotated_fundus(60, seed + 3)
    began = time.perf_counter()
    captioner = training.train_captioner(train, negative, rotated, config, seed)
    found, _ = training.caption(captioner, train.frames)
    rows, labels = training.reasoner_data(train, found, seed)
    reasoner = training.train_reasoner(rows, labels, config, seed)
    text_s = time.perf_counter() - began
    began = time.perf_counter()
    vision = training.train_vision_direct(train, config, seed)
    vision_s = time.perf_counter() - began

    def text_logits(data: training.FundusSet) -> NDArray[np.float32]:
        return training.reason(reasoner, training.caption(captioner, data.frames)[0])

    def calibrated(logits_val: NDArray[np.float32], logits_test: NDArray[np.float32]) -> NDArray[np.float64]:
        return calibration.softmax(logits_test, calibration.fit_temperature(logits_val, validation.labels))

    text = calibrated(text_logits(validation), text_logits(test))
    direct = calibrated(training.vision_logits(vision, validation.frames), training.vision_logits(vision, test.frames))
    return {
        "train_images": n,
        "caption_then_text": {**scores(text, test.labels), "train_s": round(text_s, 1)},
        "vision_direct": {**scores(direct, test.labels), "train_s": round(vision_s, 1)},
        "parameters": {
            "captioner_lesion_trunk": nets.parameters(captioner.trunk) + nets.parameters(captioner.heatmaps),
            "captioner_gate": nets.parameters(captioner.gate),
            "reasoner": nets.parameters(reasoner),
            "vision_direct": nets.parameters(vision),
        },
    }


def served_operating_points(test: training.FundusSet, negatives: NDArray[np.uint8]) -> dict[str, Any]:
    """The served captioner and reasoner as the service runs them, including its referral policy: refer when the
    grade is unstable under the captioner's faint/possible lesions (grading.grade_range), or when the calibrated
    confidence is below the refer threshold."""
    provenance = json.loads((TRAINED / "triage.json").read_text())
    captioner, reasoner = nets.Captioner(), nets.Reasoner()
    training.load_state(captioner, TRAINED / "captioner.pt")
    training.load_state(reasoner, TRAINED / "reasoner.pt")
    found, in_dist = training.caption(captioner, test.frames)
    probs = calibration.softmax(training.reason(reasoner, found), provenance["temperature"])
    correct = probs.argmax(1) == test.labels
    confidence = probs.max(axis=1)

    def is_unstable(fs: list[findings.Finding]) -> bool:
        cited = [grading.CitedFinding(f.id, f.kind, f.location, f.count, f.faint, f.possible) for f in fs]
        lowest, highest = grading.grade_range(cited)
        return lowest != highest

    unstable = np.array([is_unstable(fs) for fs in found])
    threshold = provenance["refer_threshold"]
    decided = ~unstable & (confidence >= threshold)
    # The service's order of referral: unstable grades first, then by calibrated confidence.
    order_key = confidence - unstable.astype(np.float64)
    policy_curve = _coverage_curve(order_key, correct)
    confidence_curve = calibration.accuracy_coverage(probs, test.labels)
    _, negative_scores = training.caption(captioner, negatives)
    ood = provenance["ood_threshold"]
    return {
        "scores": scores(probs, test.labels),
        "accuracy_full_coverage": round(float(correct.mean()), 4),
        "accuracy_at_90_coverage": round(_at(policy_curve, 0.9)["accuracy"], 4),
        "accuracy_at_90_coverage_by_confidence_only": round(calibration.at_coverage(confidence_curve, 0.9).accuracy, 4),
        "unstable_fraction": round(float(unstable.mean()), 4),
        "accuracy_stable": round(float(correct[~unstable].mean()), 4),
        "accuracy_unstable": round(float(correct[unstable].mean()), 4) if unstable.any() else None,
        "refer_threshold": threshold,
        "service_policy": {
            "coverage": round(float(decided.mean()), 4),
            "accuracy_of_decided": round(float(correct[decided].mean()), 4),
        },
        "curve": policy_curve[:: max(1, len(policy_curve) // 50)],
        "confidence_curve": [
            {"coverage": round(p.coverage, 4), "accuracy": round(p.accuracy, 4)}
            for p in confidence_curve[:: max(1, len(confidence_curve) // 50)]
        ],
        "ood_threshold": ood,
        "non_fundus_images": len(negatives),
        "non_fundus_referred": round(float((negative_scores < ood).mean()), 4),
        "fundus_wrongly_referred_as_ood": round(float((in_dist < ood).mean()), 4),
        "model_digests": provenance["digests"],
    }


def _coverage_curve(order_key: NDArray[np.float64], correct: NDArray[np.bool_]) -> list[dict[str, float]]:
    """Accuracy of the decided cases as the lowest-ranked ones are referred first, one point per coverage."""
    order = np.argsort(-order_key, kind="stable")
    n = len(order)
    return [
        {"coverage": round(kept / n, 4), "accuracy": round(float(correct[order[:kept]].mean()), 4)}
        for kept in range(n, 0, -1)
    ]


def _at(curve: list[dict[str, float]], coverage: float) -> dict[str, float]:
    return min((p for p in curve if p["coverage"] >= coverage - 1e-9), key=lambda p: p["coverage"])


async def latency(test: training.FundusSet, calls: int) -> dict[str, Any]:
    captioner, reasoner = nets.Captioner(), nets.Reasoner()
    training.load_state(captioner, TRAINED / "captioner.pt")
    training.load_state(reasoner, TRAINED / "reasoner.pt")
    local = []
    for i in range(calls):
        began = time.perf_counter()
        found, _ = training.caption(captioner, test.frames[i : i + 1])
        training.reason(reasoner, found)
        local.append((time.perf_counter() - began) * 1000)
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        stack = LocalStack.on_free_ports(
            Path(tmp), ["triage"], models=list(MODELS), env={"TESSERA_LOG_LEVEL": "WARNING"}
        )
        try:
            await asyncio.to_thread(stack.start)
            async with TriageClient.connect(stack.address("triage"), timeout_s=60) as client:
                for _ in range(5):
                    await client.assess([test.frames[0]])  # warm: connections, Triton instances
                wall = []
                server = []
                for i in range(calls):
                    image = test.frames[i % len(test.frames)]
                    began = time.perf_counter()
                    reply = await client.assess([image])
                    wall.append((time.perf_counter() - began) * 1000)
                    server.append(reply.latency_ms)
        finally:
            stack.stop()

    def pct(values: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}

    return {
        "calls": calls,
        "client_ms": pct(wall),
        "server_ms": pct(server),
        "in_process_models_ms": pct(local),
        "service_over_in_process_p50": round(float(np.percentile(wall, 50) / np.percentile(local, 50)), 2),
        "note": "client_ms includes PNG encoding of the 256x256 image, gRPC, decode, both Triton calls and the "
        "audit publish (JetStream ack, file storage)",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [row["train_images"] for row in result["ablation"]]
    for key, label in (("caption_then_text", "caption-then-text"), ("vision_direct", "vision-direct")):
        left.plot(sizes, [row[key]["macro_f1"] for row in result["ablation"]], marker="o", label=f"{label} (all)")
        left.plot(
            sizes, [row[key]["adjacent_macro_f1"] for row in result["ablation"]], marker="x", ls="--",
            label=f"{label} (adjacent pairs)",
        )  # fmt: skip
    left.set(xscale="log", xlabel="training images", ylabel="macro-F1", title="label efficiency", ylim=(0, 1))
    left.legend(fontsize=8)
    curve = result["served"]["curve"]
    right.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve])
    confidence = result["served"]["confidence_curve"]
    right.plot([p["coverage"] for p in confidence], [p["accuracy"] for p in confidence], ls="--")
    right.legend(["unstable first, then confidence", "confidence only"], fontsize=8)
    right.set(xlabel="coverage (decided fraction)", ylabel="accuracy of decided", title="referral")
    right.invert_xaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Triage benchmark",
        "",
        "Synthetic fundus images (skimage's retina photograph with drawn lesions); decision support, not a diagnosis.",
        f"`{result['command']}` on {result['machine']}, {result['seconds']} s.",
        "",
        "## Goals",
        "",
        "- caption-then-text minus vision-direct, macro-F1 at 300 images: "
        f"**{result['text_minus_vision_macro_f1_at_300']}** "
        f"(adjacent pairs: {result['text_minus_vision_adjacent_f1_at_300']}); goal >= 0.05",
        f"- ECE of the served pipeline: **{result['ece']}**; goal <= 0.05",
        "- accuracy at 90% coverage minus at full coverage: "
        f"**{result['accuracy_gain_at_90_coverage']}**; goal >= 0.05",
        f"- non-fundus photographs referred: **{result['ood_referred_rate']}**; goal >= 0.99",
        "",
        "## Ablation and label efficiency (test set of "
        f"{result['test_images']} images; equal trunk, images, optimiser and steps)",
        "",
        "| training images | pathway | macro-F1 | adjacent-pair macro-F1 | accuracy | ECE | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["ablation"]:
        for key in ("caption_then_text", "vision_direct"):
            s = row[key]
            lines.append(
                f"| {row['train_images']} | {key.replace('_', '-')} | {s['macro_f1']} | {s['adjacent_macro_f1']} | "
                f"{s['accuracy']} | {s['ece']} | {s['train_s']} |"
            )
    served = result["served"]
    lat = result["latency"]
    lines += [
        "",
        "## Served models",
        "",
        f"- macro-F1 {served['scores']['macro_f1']}, accuracy {served['scores']['accuracy']}, "
        f"ECE {served['scores']['ece']}",
        f"- accuracy at full coverage {served['accuracy_full_coverage']}; at 90% coverage "
        f"{served['accuracy_at_90_coverage']} referring unstable grades first, "
        f"{served['accuracy_at_90_coverage_by_confidence_only']} by calibrated confidence alone",
        f"- unstable grades (the rules give another grade without the faint lesions or with the possible ones): "
        f"{served['unstable_fraction']} of cases, accuracy {served['accuracy_unstable']} on them against "
        f"{served['accuracy_stable']} on the stable ones",
        f"- the service's policy (refer unstable, or confidence below {served['refer_threshold']}): coverage "
        f"{served['service_policy']['coverage']}, "
        f"accuracy of decided {served['service_policy']['accuracy_of_decided']}",
        f"- {served['non_fundus_images']} held-out non-fundus photographs: {served['non_fundus_referred']} referred; "
        f"fundus images wrongly referred as not fundus: {served['fundus_wrongly_referred_as_ood']}",
        "",
        "## Latency per assessment (sequential, one image)",
        "",
        f"- client p50 {lat['client_ms']['p50']} ms, p95 {lat['client_ms']['p95']} ms; server-side p50 "
        f"{lat['server_ms']['p50']} ms; the two networks in-process p50 {lat['in_process_models_ms']['p50']} ms "
        f"(service / in-process: {lat['service_over_in_process_p50']}x)",
        "",
        "![curves](triage.png)",
        "",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    began = time.perf_counter()
    config = training.TrainConfig()
    if args.quick:
        config = replace(config, steps=150)
    test = training.fundus_set(150 if args.quick else 600, 4242)
    sizes: tuple[int, ...] = (100,) if args.quick else SIZES
    rows = []
    if args.reuse_ablation:  # section 1 from the committed results (it trains its own networks from scratch)
        rows = json.loads((RESULTS / "triage.json").read_text())["ablation"]
        sizes = ()
    for n in sizes:
        row = ablation(n, test, config, seed=5000 + n)
        print(
            f"n={n}: caption-then-text {row['caption_then_text']['macro_f1']} "
            f"(adjacent {row['caption_then_text']['adjacent_macro_f1']}), vision-direct "
            f"{row['vision_direct']['macro_f1']} (adjacent {row['vision_direct']['adjacent_macro_f1']})",
            flush=True,
        )
        rows.append(row)
    served = served_operating_points(test, non_fundus(100 if args.quick else 400, 777))
    print(f"served: {served['scores']}, non-fundus referred {served['non_fundus_referred']}", flush=True)
    lat = await latency(test, 20 if args.quick else 100)
    print(f"latency: {lat['client_ms']}", flush=True)
    at = next((row for row in rows if row["train_images"] == 300), rows[-1])
    return {
        "text_minus_vision_macro_f1_at_300": round(
            at["caption_then_text"]["macro_f1"] - at["vision_direct"]["macro_f1"], 4
        ),
        "text_minus_vision_adjacent_f1_at_300": round(
            at["caption_then_text"]["adjacent_macro_f1"] - at["vision_direct"]["adjacent_macro_f1"], 4
        ),
        "ece": served["scores"]["ece"],
        "accuracy_gain_at_90_coverage": round(served["accuracy_at_90_coverage"] - served["accuracy_full_coverage"], 4),
        "ood_referred_rate": served["non_fundus_referred"],
        "test_images": len(test.labels),
        "ablation": rows,
        "served": served,
        "latency": lat,
        "command": " ".join(["benchmarks/triage/run.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU only",
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--reuse-ablation",
        action="store_true",
        help="keep section 1 (ablation, label efficiency) from benchmarks/results/triage.json; rerun 2 and 3",
    )
    args = parser.parse_args()
    if not (TRAINED / "triage.json").exists():
        raise SystemExit(f"{TRAINED} missing: run `make models`")
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="triage-quick-")) if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    (out_dir / "triage.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "triage.md").write_text(markdown(result))
    plot(result, out_dir / "triage.png")
    print(f"-> {out_dir / 'triage.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
