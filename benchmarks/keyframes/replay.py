"""Offline replay of the selection strategies on recorded per-frame scores: why FOCUS wins or misses (untimed).

The model is deterministic, so a strategy's choices depend only on the scores of the frames it asks for. This
script records every 1 fps frame's score for every question once (an untimed pass through the same Triton model,
with the per-frame detection cache on, so each video is detected once), then re-runs ``pipeline.select`` with an
in-memory source/scorer that answers from those recordings. That gives, without decoding again:

* a check that the replay reproduces the timed run's selections (same UKSS per question);
* where FOCUS probed: how many ground-truth scenes got at least one scored frame, in the coarse pass and in all;
* the spread over FOCUS seeds (one seed on a dozen questions is a noisy estimate);
* the lean schedule at larger budgets, to show what coverage it would take to match exhaustive top-k.

Usage (after ``run.py``; starts Triton only if the recordings are missing)::

    .venv/bin/python benchmarks/keyframes/replay.py            # adds "replay" to benchmarks/results/keyframes.json
    .venv/bin/python benchmarks/keyframes/replay.py --quick    # the smoke set's results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a script: make the repository root importable for `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.keyframes import generate, report, run

from tessera.keyframes import kfs_metrics, pipeline
from tessera.keyframes.api import TritonScorer
from tessera.keyframes.focus import FocusParams, FocusSearch
from tessera.keyframes.frame_source import VideoFrameSource
from tessera.keyframes.video import probe
from tessera.runtime import model_repository
from tessera.runtime.inference import TritonClient

SEEDS = tuple(range(10))
LEAN_BUDGETS = (0.10, 0.20)  # the 5 % default is the "focus" row


@dataclass
class Recorded:
    """A FrameSource and Scorer in one: frames are placeholders, scores come from the recording."""

    scores: NDArray[np.float32]
    asked: list[int] = field(default_factory=list)
    _last: list[int] = field(default_factory=list)

    async def frames(self, indices: Sequence[int]) -> NDArray[np.uint8]:
        self._last = list(indices)
        self.asked += self._last
        return np.zeros((len(indices), 1, 1, 3), dtype=np.uint8)

    async def score(self, frames: NDArray[np.uint8], query: str) -> NDArray[np.float32]:
        return self.scores[self._last]


# ----------------------------------------------------------------------------------------------- recording


def recording_path(data_dir: Path, fps: float, max_side: int) -> Path:
    return data_dir / "scores" / f"{run.MODEL}_fps{fps:g}_side{max_side}.npz"


async def _record(
    records: list[dict[str, Any]], url: str, *, fps: float, max_side: int, batch_size: int
) -> dict[str, NDArray[np.float32]]:
    out: dict[str, NDArray[np.float32]] = {}
    async with TritonClient(url, default_timeout_s=120.0) as client:
        await client.wait_ready([run.MODEL], timeout_s=120)
        scorer = TritonScorer(client, run.MODEL, feature_cache=True)  # untimed: detect each frame once
        by_video: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_video.setdefault(record["video"], []).append(record)
        for video, group in by_video.items():
            path = run.ROOT / video
            n = max(1, int(probe(path).duration_s * fps))
            source = VideoFrameSource(path, run.video_key(path), fps=fps, max_side=max_side, cache=None)
            values = {r["question_id"]: np.zeros(n, dtype=np.float32) for r in group}
            began = time.perf_counter()
            for start in range(0, n, batch_size):
                chunk = list(range(start, min(n, start + batch_size)))
                frames = await source.frames(chunk)
                for r in group:
                    values[r["question_id"]][chunk] = await scorer.score(frames, r["question"])
            print(f"[replay] recorded {video}: {n} frames in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            out.update(values)
    return out


def from_checkpoint(
    bench_set: generate.BenchSet, records: list[dict[str, Any]], *, fps: float, max_side: int
) -> dict[str, NDArray[np.float32]] | None:
    """Every frame's score from run.py's checkpoint (its exhaustive runs), when it holds every question."""
    # Any k and batch size: the exhaustive run's scores do not depend on them.
    pattern = f"checkpoint_{run.MODEL}_k*_fps{fps:g}_side{max_side}_batch*.jsonl"
    for candidate in sorted(bench_set.data_dir.glob(pattern)):
        done = run.Checkpoint(candidate, fresh=False).load()
        out = {}
        for record in records:
            entry = done.get(record["question_id"])
            exhaustive = entry.runs.get("exhaustive_top_k") if entry else None
            if exhaustive is None or len(exhaustive.scores) != exhaustive.num_candidates:
                break
            values = np.zeros(exhaustive.num_candidates, dtype=np.float32)
            for i, v in exhaustive.scores.items():
                values[i] = v
            out[record["question_id"]] = values
        else:
            return out
    return None


def load_or_record(
    bench_set: generate.BenchSet, records: list[dict[str, Any]], *, fps: float, max_side: int, batch_size: int
) -> dict[str, NDArray[np.float32]]:
    path = recording_path(bench_set.data_dir, fps, max_side)
    if path.exists():
        with np.load(path) as saved:
            stored = {name: saved[name] for name in saved.files}
        if all(r["question_id"] in stored for r in records):
            return stored
    timed = from_checkpoint(bench_set, records, fps=fps, max_side=max_side)
    if timed is not None:  # the timed run's exhaustive pass already scored every frame
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **timed)
        return timed
    repo = run.BENCH_BUILD / "model_repository"
    model_repository.build(repo, only=[run.MODEL])
    triton = run.Triton(run.BENCH_BUILD)
    server = triton.start()
    try:
        scores = asyncio.run(_record(records, server.grpc_url, fps=fps, max_side=max_side, batch_size=batch_size))
    finally:
        triton.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **scores)
    return scores


# ----------------------------------------------------------------------------------------------- replay


@dataclass
class Replayed:
    indices: list[int]
    asked: list[int]
    kfs: kfs_metrics.KfsScores


def replay_one(
    strategy: pipeline.Strategy,
    params: FocusParams | None,
    scores: NDArray[np.float32],
    record: dict[str, Any],
    *,
    k: int,
    fps: float,
    batch_size: int,
) -> Replayed:
    recorded = Recorded(scores)
    selection = asyncio.run(
        pipeline.select(
            strategy,
            num_candidates=len(scores),
            fps=fps,
            k=k,
            query=record["question"],
            source=recorded,
            scorer=recorded,
            focus_params=params,
            batch_size=batch_size,
        )
    )
    kfs = kfs_metrics.score_selection([i / fps for i in selection.indices], run.scenes_of(record))
    return Replayed(list(selection.indices), recorded.asked, kfs)


def probed_scenes(indices: Sequence[int], record: dict[str, Any], fps: float) -> int:
    """GT scenes with at least one of ``indices`` inside (the metric's closed, +1 s extended segments)."""
    times = np.asarray(indices, dtype=np.float64) / fps
    return sum(bool(scene.contains(times).any()) for scene in run.scenes_of(record))


def auc(record: dict[str, Any], values: NDArray[np.float32], fps: float) -> float | None:
    """ROC AUC of the recorded scores for GT membership (run.roc_auc over every frame)."""
    times = np.arange(len(values), dtype=np.float64) / fps
    inside = np.zeros(len(values), dtype=bool)
    for scene in run.scenes_of(record):
        inside |= scene.contains(times)
    v = values.astype(np.float64)
    return run.roc_auc(v[inside], v[~inside])


def frames_in_gt(indices: Sequence[int], record: dict[str, Any], fps: float) -> int:
    """How many of ``indices`` lie inside any GT scene."""
    times = np.asarray(indices, dtype=np.float64) / fps
    inside = np.zeros(times.shape, dtype=bool)
    for scene in run.scenes_of(record):
        inside |= scene.contains(times)
    return int(inside.sum())


def analyse(
    records: list[dict[str, Any]],
    scores: dict[str, NDArray[np.float32]],
    live: dict[str, Any],
    *,
    k: int,
    fps: float,
    batch_size: int,
) -> dict[str, Any]:
    schedules = {"focus": FocusParams.lean(), "focus_published": FocusParams.published()}
    per_question: list[dict[str, Any]] = []
    # Dataset UKSS per (schedule, seed) and per (lean budget, seed), and exhaustive's once.
    seed_scores: dict[str, list[list[kfs_metrics.KfsScores]]] = {name: [[] for _ in SEEDS] for name in schedules}
    budget_scores: dict[float, list[list[kfs_metrics.KfsScores]]] = {b: [[] for _ in SEEDS] for b in LEAN_BUDGETS}
    exhaustive_scores: list[kfs_metrics.KfsScores] = []
    matches = 0
    compared = 0
    for record in records:
        qid = record["question_id"]
        values = scores[qid]
        entry: dict[str, Any] = {"question_id": qid, "gt_scenes": len(record["scenes"])}
        exhaustive = replay_one(
            pipeline.Strategy.EXHAUSTIVE_TOP_K, None, values, record, k=k, fps=fps, batch_size=batch_size
        )
        exhaustive_scores.append(exhaustive.kfs)
        entry["exhaustive_top_k"] = {"ukss": exhaustive.kfs.ukss}
        uniform = replay_one(pipeline.Strategy.UNIFORM, None, values, record, k=k, fps=fps, batch_size=batch_size)
        for name, replayed in (("exhaustive_top_k", exhaustive), ("uniform", uniform)):
            live_sel = live.get(qid, {}).get(name)
            if live_sel is not None:
                compared += 1
                matches += [i / fps for i in replayed.indices] == live_sel
        for name, base in schedules.items():
            runs = []
            for s, seed in enumerate(SEEDS):
                params = FocusParams.lean(seed=seed) if name == "focus" else FocusParams.published(seed=seed)
                replayed = replay_one(
                    pipeline.Strategy.FOCUS, params, values, record, k=k, fps=fps, batch_size=batch_size
                )
                seed_scores[name][s].append(replayed.kfs)
                runs.append(replayed)
                if seed == base.seed:
                    live_sel = live.get(qid, {}).get(name)
                    if live_sel is not None:
                        compared += 1
                        matches += [i / fps for i in replayed.indices] == live_sel
            coarse = FocusSearch(len(values), fps, k, base).coarse_requests()
            first = runs[0]
            entry[name] = {
                "ukss_seed0": first.kfs.ukss,
                "ukss_over_seeds": {
                    "mean": statistics.fmean(r.kfs.ukss for r in runs),
                    "min": min(r.kfs.ukss for r in runs),
                    "max": max(r.kfs.ukss for r in runs),
                },
                "frames_scored": len(first.asked),
                "gt_scenes_probed_by_coarse_seed0": probed_scenes(coarse, record, fps),
                "gt_scenes_probed_seed0": probed_scenes(first.asked, record, fps),
                "gt_scenes_probed_mean_over_seeds": statistics.fmean(probed_scenes(r.asked, record, fps) for r in runs),
                "scored_frames_in_gt_seed0": frames_in_gt(first.asked, record, fps),
            }
        for budget in LEAN_BUDGETS:
            for s, seed in enumerate(SEEDS):
                params = FocusParams.lean(budget_fraction=budget, seed=seed)
                replayed = replay_one(
                    pipeline.Strategy.FOCUS, params, values, record, k=k, fps=fps, batch_size=batch_size
                )
                budget_scores[budget][s].append(replayed.kfs)
        per_question.append(entry)
        print(f"[replay] {qid} analysed", file=sys.stderr)

    # The queries the model can see: its scores rank GT frames above the rest (as in run.py's visible subset).
    seen = [
        i
        for i, record in enumerate(records)
        if (auc(record, scores[record["question_id"]], fps) or 0.0) >= run.VISIBLE_AUC
    ]

    def spread(per_seed: list[list[kfs_metrics.KfsScores]], only: list[int] | None = None) -> dict[str, Any]:
        pick = list(range(len(records))) if only is None else only
        if not pick:
            return {}
        base = kfs_metrics.aggregate([exhaustive_scores[i] for i in pick])["ukss"]
        dataset = [kfs_metrics.aggregate([s[i] for i in pick])["ukss"] for s in per_seed]
        ratio = [u / base for u in dataset] if base > 0 else []
        return {
            "exhaustive_ukss": base,
            "ukss_per_seed": dataset,
            "ukss_mean": statistics.fmean(dataset),
            "ukss_vs_exhaustive_per_seed": ratio,
            "ukss_vs_exhaustive_mean": statistics.fmean(ratio) if ratio else None,
            "seeds_reaching_0.9x": sum(r >= run.GOAL_MIN_UKSS_RATIO for r in ratio),
        }

    return {
        "what": "strategies re-run offline through pipeline.select on recorded per-frame scores (untimed)",
        "seeds": list(SEEDS),
        "replay_matches_timed_run": f"{matches}/{compared} selections identical",
        "exhaustive_ukss": kfs_metrics.aggregate(exhaustive_scores)["ukss"],
        "focus_seeds": {name: spread(per_seed) for name, per_seed in seed_scores.items()},
        "focus_lean_budgets": {f"{b:g}": spread(per_seed) for b, per_seed in budget_scores.items()},
        "visible_queries": {
            "auc_threshold": run.VISIBLE_AUC,
            "questions": [records[i]["question_id"] for i in seen],
            "focus_seeds": {name: spread(per_seed, seen) for name, per_seed in seed_scores.items()},
            "focus_lean_budgets": {f"{b:g}": spread(per_seed, seen) for b, per_seed in budget_scores.items()},
        },
        "per_question": per_question,
    }


def scorer_summary(
    records: list[dict[str, Any]], scores: dict[str, NDArray[np.float32]], *, k: int, fps: float, batch_size: int
) -> dict[str, Any]:
    """One scorer on the questions, untimed: per question its AUC, exhaustive top-k's and lean FOCUS's UKSS."""
    per_question = {}
    exhaustive, lean = [], []
    for record in records:
        values = scores[record["question_id"]]
        best = replay_one(pipeline.Strategy.EXHAUSTIVE_TOP_K, None, values, record, k=k, fps=fps, batch_size=batch_size)
        focus = replay_one(
            pipeline.Strategy.FOCUS, FocusParams.lean(), values, record, k=k, fps=fps, batch_size=batch_size
        )
        exhaustive.append(best.kfs)
        lean.append(focus.kfs)
        per_question[record["question_id"]] = {
            "auc": auc(record, values, fps),
            "ukss_exhaustive_top_k": best.kfs.ukss,
            "ukss_focus": focus.kfs.ukss,
        }
    aucs = [q["auc"] for q in per_question.values() if q["auc"] is not None]
    return {
        "auc_mean": statistics.fmean(aucs) if aucs else None,
        "ukss_exhaustive_top_k": kfs_metrics.aggregate(exhaustive)["ukss"],
        "ukss_focus": kfs_metrics.aggregate(lean)["ukss"],
        "per_question": per_question,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="replay the smoke run's results")
    parser.add_argument("--results", type=Path, help="results JSON written by run.py (updated in place)")
    parser.add_argument(
        "--compare",
        nargs="*",
        choices=run.MODELS,
        default=[],
        help="other scorers to record and replay on the same questions (AUC, exhaustive and FOCUS UKSS)",
    )
    args = parser.parse_args(argv)
    bench_set = generate.build_default(args.quick)
    results_path = args.results or (
        bench_set.data_dir / "results.json" if args.quick else run.RESULTS_DIR / "keyframes.json"
    )
    result = json.loads(results_path.read_text())
    cfg = result["config"]
    run.MODEL = cfg["model"]
    k, fps, max_side, batch_size = cfg["k"], cfg["fps"], cfg["max_side"], cfg["batch_size"]
    wanted = [q["question_id"] for q in result["per_question"]]
    records = [q for q in bench_set.questions if q["question_id"] in wanted]
    scores = load_or_record(bench_set, records, fps=fps, max_side=max_side, batch_size=batch_size)
    live = {
        q["question_id"]: {name: s["selected_s"] for name, s in q["strategies"].items()} for q in result["per_question"]
    }
    result["replay"] = analyse(records, scores, live, k=k, fps=fps, batch_size=batch_size)
    scorers = {cfg["model"]: scorer_summary(records, scores, k=k, fps=fps, batch_size=batch_size)}
    for other in (m for m in args.compare if m != cfg["model"]):
        run.MODEL = other
        other_scores = load_or_record(bench_set, records, fps=fps, max_side=max_side, batch_size=batch_size)
        scorers[other] = scorer_summary(records, other_scores, k=k, fps=fps, batch_size=batch_size)
    run.MODEL = cfg["model"]
    result["replay"]["scorers"] = scorers
    results_path.write_text(json.dumps(result, indent=1) + "\n")
    md = results_path.with_suffix(".md")
    md.write_text(report.markdown(result))
    print(f"[replay] updated {results_path} and {md}", file=sys.stderr)
    print(report.replay_markdown(result["replay"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
