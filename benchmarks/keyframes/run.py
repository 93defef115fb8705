"""Keyframe-selection benchmark: UNIFORM vs EXHAUSTIVE_TOP_K vs FOCUS (lean and published) on long videos.

Everything runs in-process against a real ``tritonserver`` serving the real ``frame_relevance`` model (yolov3-tiny
detections re-weighted by MiniLM query-class similarity), started here on free ports. Every (question, strategy)
run is cold and independent: a fresh :class:`VideoFrameSource` without thumbnail cache (each strategy decodes
its own frames) and a :class:`TritonScorer` with the model's per-frame detection cache turned off (no strategy
benefits from another's detections). Wall time is end-to-end: probe + ``pipeline.select`` (decode, score, select).

Selections are scored with KFS-Bench's metrics (:mod:`tessera.keyframes.kfs_metrics`) against the questions'
ground-truth scenes; timestamps are ``index / fps`` seconds.

Usage::

    .venv/bin/python benchmarks/keyframes/run.py            # committed set -> benchmarks/results/keyframes.{json,md}
    .venv/bin/python benchmarks/keyframes/run.py --quick    # smoke: one 10-min video, 2 questions (not committed)
    .venv/bin/python benchmarks/keyframes/run.py --resume   # carry on after an interruption
    .venv/bin/python benchmarks/keyframes/replay.py         # then: untimed diagnostics added to the results
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import platform
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

from benchmarks.keyframes import generate, report

from tessera.keyframes import kfs_metrics, pipeline
from tessera.keyframes.api import TritonScorer
from tessera.keyframes.focus import FocusParams
from tessera.keyframes.frame_source import VideoFrameSource
from tessera.keyframes.video import probe
from tessera.runtime import model_repository
from tessera.runtime.errors import TesseraError
from tessera.runtime.inference import TritonClient
from tessera.runtime.processes import TritonServer
from tessera.runtime.stack import LocalStack

ROOT = generate.ROOT
RESULTS_DIR = ROOT / "benchmarks" / "results"
# Our own folder: build/bench/model_repository may be rebuilt by others while we run.
BENCH_BUILD = ROOT / "build" / "bench" / "keyframes"
# The scorer under test (--model): the service default, frame_relevance_open, or the detector, frame_relevance.
MODELS = ("frame_relevance_open", "frame_relevance")
MODEL = MODELS[0]

# Goals from the issue, measured (not tested) on 30-60 min videos sampled at 1 fps.
GOAL_MAX_SCORED_FRACTION = 0.05
GOAL_MIN_UKSS_RATIO = 0.9
GOAL_MIN_SPEEDUP = 10.0
GOAL_MIN_ORACLE_RATIO = 0.8  # exhaustive top-k's UKSS over the oracle's: the scorer's ceiling
# Questions per video in the full run. Exhaustive top-k scores every 1 fps frame (~40 ms each on 2 idle CPU cores,
# ~65 ms under load) and the published FOCUS schedule about 41 % of them: ~10 min per round of one question on
# each of the 4 videos when idle, so all 3 questions fit the ~45 min budget. If the machine is loaded (over ~45 min),
# run with --questions-per-video 2; the JSON config says what was run.
FULL_RUN_QUESTIONS_PER_VIDEO = 3
# A query counts as one "the model can see" when the exhaustive run's scores rank GT frames above the rest with
# this ROC AUC (a property of the scorer on that query, not of any selection).
VISIBLE_AUC = 0.75
METRICS = ("ukss", "kfr", "shr", "bsr", "bds")


@dataclass(frozen=True)
class Contender:
    name: str  # key in the results
    strategy: pipeline.Strategy
    focus: FocusParams | None = None


def contenders() -> list[Contender]:
    """Run order within a question: the FOCUS schedules first, so they pay any cold OS page cache, not exhaustive."""
    return [
        Contender("focus", pipeline.Strategy.FOCUS, FocusParams.lean()),  # the service default
        Contender("focus_published", pipeline.Strategy.FOCUS, FocusParams.published()),
        Contender("uniform", pipeline.Strategy.UNIFORM),
        Contender("exhaustive_top_k", pipeline.Strategy.EXHAUSTIVE_TOP_K),
    ]


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float  # CPU time of this process (decode, selection) + tritonserver and its model stub, during the run
    loadavg_1m: float  # system load just before the run (others may share the machine)
    started_at: str  # UTC, ISO 8601
    probe_ms: float
    num_candidates: int
    frames_scored: int
    frames_decoded: int
    phases_ms: dict[str, float]
    indices: list[int]
    scores: dict[int, float]
    kfs: kfs_metrics.KfsScores


@dataclass
class QuestionRecord:
    record: dict[str, Any]  # the KFS-Bench question
    runs: dict[str, RunResult] = field(default_factory=dict)


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc; 0 elsewhere)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        if current in tree:
            continue
        tree.add(current)
        frontier += [child for child, parent in parents.items() if parent == current]
    return sum(times.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def video_key(path: Path) -> str:
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def scenes_of(record: dict[str, Any]) -> list[kfs_metrics.Scene]:
    return [kfs_metrics.Scene(tuple((float(a), float(b)) for a, b in scene)) for scene in record["scenes"]]


async def run_one(
    contender: Contender,
    record: dict[str, Any],
    client: TritonClient,
    *,
    k: int,
    fps: float,
    max_side: int,
    batch_size: int,
    triton_pid: int | None = None,
) -> RunResult:
    """One cold, end-to-end selection (probe + decode + score + select), timed, then scored against the GT.

    Besides wall time it measures CPU time (ours plus the Triton process tree's), which a busy shared machine
    inflates far less than wall time.
    """
    path = ROOT / record["video"]
    source = VideoFrameSource(path, video_key(path), fps=fps, max_side=max_side, cache=None)
    scorer = TritonScorer(client, MODEL, feature_cache=False)
    load = os.getloadavg()[0]
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    server_cpu = tree_cpu_s(triton_pid) if triton_pid is not None else 0.0
    own_cpu = time.process_time()
    began = time.perf_counter()
    info = await asyncio.to_thread(probe, path)
    num_candidates = max(1, int(info.duration_s * fps))  # as the service computes it
    probe_ms = (time.perf_counter() - began) * 1000
    selection = await pipeline.select(
        contender.strategy,
        num_candidates=num_candidates,
        fps=fps,
        k=k,
        query=record["question"],
        source=source,
        scorer=scorer,
        focus_params=contender.focus,
        batch_size=batch_size,
    )
    wall = time.perf_counter() - began
    cpu = time.process_time() - own_cpu + (tree_cpu_s(triton_pid) - server_cpu if triton_pid is not None else 0.0)
    kfs = kfs_metrics.score_selection([i / fps for i in selection.indices], scenes_of(record))
    return RunResult(
        wall_s=wall,
        cpu_s=cpu,
        loadavg_1m=load,
        started_at=started_at,
        probe_ms=probe_ms,
        num_candidates=num_candidates,
        frames_scored=selection.frames_scored,
        frames_decoded=source.decoded,
        phases_ms=dict(selection.phases_ms),
        indices=list(selection.indices),
        scores=dict(selection.scores),
        kfs=kfs,
    )


# ----------------------------------------------------------------------------------------------- diagnostics


def roc_auc(positive: NDArray[np.float64], negative: NDArray[np.float64]) -> float | None:
    """P(score of a random GT frame > score of a random non-GT frame), ties counting one half."""
    if positive.size == 0 or negative.size == 0:
        return None
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, side="left")
    not_above = np.searchsorted(ordered, positive, side="right")
    return float((below + 0.5 * (not_above - below)).sum() / (positive.size * negative.size))


def score_diagnostics(record: dict[str, Any], exhaustive: RunResult, fps: float) -> dict[str, Any]:
    """How well the model's scores (all frames, from the exhaustive run) separate GT frames from the rest."""
    n = exhaustive.num_candidates
    times = np.arange(n, dtype=np.float64) / fps
    inside = np.zeros(n, dtype=bool)
    for scene in scenes_of(record):
        inside |= scene.contains(times)
    values = np.array([exhaustive.scores.get(i, 0.0) for i in range(n)], dtype=np.float64)
    pos, neg = values[inside], values[~inside]
    return {
        "gt_frame_fraction": float(inside.mean()),
        "gt_scenes": len(record["scenes"]),
        "auc": roc_auc(pos, neg),
        "mean_score_gt": float(pos.mean()) if pos.size else None,
        "mean_score_other": float(neg.mean()) if neg.size else None,
        "p95_score_gt": float(np.percentile(pos, 95)) if pos.size else None,
        "p95_score_other": float(np.percentile(neg, 95)) if neg.size else None,
        "frames_above_0.5_gt": int((pos > 0.5).sum()),
        "frames_above_0.5_other": int((neg > 0.5).sum()),
    }


def query_classes(questions: Sequence[str], repo: Path, top: int = 3) -> dict[str, list[tuple[str, float]]]:
    """The COCO classes the model weights a query by (its MiniLM softmax), to tell which queries it can see."""
    try:
        from sentence_transformers import SentenceTransformer

        from tessera.keyframes.relevance import class_weights
    except ImportError:
        return {}
    version = repo / MODEL / "1"
    config = model_repository.parse_config(repo / MODEL / "config.pbtxt")
    temperature = float(config.parameters["class_temperature"].string_value)
    classes = [c for c in (version / "yolo" / "coco.names").read_text().splitlines() if c.strip()]
    encoder = SentenceTransformer(str(version / "minilm"), device="cpu")
    class_vectors = encoder.encode([f"a photo of a {c}" for c in classes], normalize_embeddings=True)
    out: dict[str, list[tuple[str, float]]] = {}
    for question in dict.fromkeys(questions):
        vector = encoder.encode([question], normalize_embeddings=True)[0]
        weights = class_weights(np.asarray(class_vectors @ vector, dtype=np.float32), temperature)
        order = np.argsort(-weights)[:top]
        out[question] = [(classes[int(i)], round(float(weights[int(i)]), 3)) for i in order]
    return out


# ----------------------------------------------------------------------------------------------- aggregation


def summarize(questions: list[QuestionRecord], names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per strategy: the KFS metrics (kfs_metrics.aggregate), scored fraction, mean wall; plus the details."""
    strategies: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name in names:
        runs = [q.runs[name] for q in questions]
        metrics = kfs_metrics.aggregate([r.kfs for r in runs])
        strategies[name] = {
            **{m: metrics[m] for m in METRICS},
            "frames_scored_fraction": statistics.fmean(r.frames_scored / r.num_candidates for r in runs),
            "wall_s": statistics.fmean(r.wall_s for r in runs),
        }
        phases = sorted({p for r in runs for p in r.phases_ms})
        details[name] = {
            "questions": len(runs),
            "wall_s_total": math.fsum(r.wall_s for r in runs),
            "wall_s_median": statistics.median(r.wall_s for r in runs),
            "cpu_s": statistics.fmean(r.cpu_s for r in runs),
            "frames_scored_mean": statistics.fmean(r.frames_scored for r in runs),
            "frames_decoded_mean": statistics.fmean(r.frames_decoded for r in runs),
            "frames_decoded_total": sum(r.frames_decoded for r in runs),
            "frames_sampled_mean": statistics.fmean(r.num_candidates for r in runs),
            "phases_ms_mean": {
                "probe": statistics.fmean(r.probe_ms for r in runs),
                **{p: statistics.fmean(r.phases_ms.get(p, 0.0) for r in runs) for p in phases},
            },
            "ukss_arithmetic_mean": statistics.fmean(r.kfs.ukss for r in runs),
        }
    return strategies, details


def oracle_scores(questions: list[QuestionRecord], k: int, fps: float) -> dict[str, Any]:
    """KFS metrics of the ground-truth-aware selection (kfs_metrics.oracle_timestamps) on the same questions."""
    per_question = {}
    for q in questions:
        timestamps = kfs_metrics.oracle_timestamps(scenes_of(q.record), k, fps, float(q.record["duration"]))
        per_question[q.record["question_id"]] = kfs_metrics.score_selection(timestamps, scenes_of(q.record))
    metrics = kfs_metrics.aggregate(list(per_question.values()))
    return {
        **{m: metrics[m] for m in METRICS},
        "definition": "k grid frames inside the GT scenes, shared by scene length (at least one each), evenly "
        "spaced: what a selector that knows the ground truth picks",
        "per_question_ukss": {name: round(s.ukss, 4) for name, s in per_question.items()},
    }


def scorer_auc_mean(questions: list[QuestionRecord], fps: float) -> float | None:
    """Mean over questions of the scorer's ROC AUC (GT frames vs the rest, every frame scored): the scorer alone."""
    aucs = [
        score_diagnostics(q.record, q.runs["exhaustive_top_k"], fps)["auc"]
        for q in questions
        if "exhaustive_top_k" in q.runs
    ]
    known = [a for a in aucs if a is not None]
    return statistics.fmean(known) if known else None


def visible(question: QuestionRecord, fps: float) -> bool:
    """Whether the model's scores separate this question's GT frames from the rest (AUC >= VISIBLE_AUC)."""
    if "exhaustive_top_k" not in question.runs:
        return False
    auc = score_diagnostics(question.record, question.runs["exhaustive_top_k"], fps)["auc"]
    return auc is not None and auc >= VISIBLE_AUC


def ratios(questions: list[QuestionRecord], strategies: dict[str, Any], fps: float) -> dict[str, Any]:
    """FOCUS (each schedule) against exhaustive top-k, with the issue's goals checked."""
    exhaustive = strategies.get("exhaustive_top_k")
    if exhaustive is None:
        return {}
    seen = [q for q in questions if visible(q, fps)]
    seen_ukss = {
        name: kfs_metrics.aggregate([q.runs[name].kfs for q in seen])["ukss"] if seen else None for name in strategies
    }
    out: dict[str, Any] = {}
    for name in ("focus", "focus_published"):
        if name not in strategies:
            continue
        mine = strategies[name]
        per_question = [q.runs["exhaustive_top_k"].wall_s / q.runs[name].wall_s for q in questions]
        cpu_exhaustive = statistics.fmean(q.runs["exhaustive_top_k"].cpu_s for q in questions)
        cpu_mine = statistics.fmean(q.runs[name].cpu_s for q in questions)
        ukss_ratio = mine["ukss"] / exhaustive["ukss"] if exhaustive["ukss"] > 0 else None
        speedup = exhaustive["wall_s"] / mine["wall_s"]
        out[name] = {
            "ukss_vs_exhaustive": ukss_ratio,
            "speedup_vs_exhaustive": speedup,  # mean exhaustive wall / mean FOCUS wall over the same questions
            "speedup_per_question_min": min(per_question),
            "speedup_per_question_median": statistics.median(per_question),
            # The same in CPU seconds (ours + Triton's): much less sensitive to other load on a shared machine.
            "cpu_speedup_vs_exhaustive": cpu_exhaustive / cpu_mine if cpu_mine > 0 else None,
            "frames_scored_fraction": mine["frames_scored_fraction"],
            # The same UKSS ratio restricted to the queries the model can see (exhaustive AUC >= VISIBLE_AUC).
            "visible_queries": {
                "auc_threshold": VISIBLE_AUC,
                "questions": [q.record["question_id"] for q in seen],
                "ukss": seen_ukss[name],
                "ukss_exhaustive": seen_ukss["exhaustive_top_k"],
                "ukss_vs_exhaustive": (seen_ukss[name] or 0.0) / seen_ukss["exhaustive_top_k"]
                if seen_ukss["exhaustive_top_k"]
                else None,
            },
            "goals": {
                f"frames_scored_fraction <= {GOAL_MAX_SCORED_FRACTION}": mine["frames_scored_fraction"]
                <= GOAL_MAX_SCORED_FRACTION,
                f"ukss >= {GOAL_MIN_UKSS_RATIO}x exhaustive": ukss_ratio is not None
                and ukss_ratio >= GOAL_MIN_UKSS_RATIO,
                f"speedup >= {GOAL_MIN_SPEEDUP}x": speedup >= GOAL_MIN_SPEEDUP,
            },
        }
    return out


def per_question_json(
    questions: list[QuestionRecord], fps: float, classes: dict[str, list[tuple[str, float]]]
) -> list[dict[str, Any]]:
    out = []
    for q in questions:
        rec = q.record
        entry: dict[str, Any] = {
            "video_id": rec["video_id"],
            "question_id": rec["question_id"],
            "question": rec["question"],
            "label": rec.get("label"),
            "duration": rec["duration"],
            "model_classes": classes.get(rec["question"]),
        }
        if "exhaustive_top_k" in q.runs:
            entry["scores"] = score_diagnostics(rec, q.runs["exhaustive_top_k"], fps)
        entry["strategies"] = {
            name: {
                "ukss": r.kfs.ukss,
                "kfr": r.kfs.kfr,
                "shr": r.kfs.shr,
                "bsr": r.kfs.bsr,
                "bds": r.kfs.bds,
                "n_tp": r.kfs.n_tp,
                "hits_per_scene": list(r.kfs.hits_per_scene),
                "wall_s": r.wall_s,
                "cpu_s": r.cpu_s,
                "loadavg_1m_before": r.loadavg_1m,
                "started_at": r.started_at,
                "frames_sampled": r.num_candidates,
                "frames_scored": r.frames_scored,
                "frames_decoded": r.frames_decoded,
                "phases_ms": {"probe": r.probe_ms, **r.phases_ms},
                "selected_s": [i / fps for i in r.indices],
            }
            for name, r in q.runs.items()
        }
        out.append(entry)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "model_threads": int(os.environ.get("TESSERA_MODEL_THREADS", "2")),
    }


# ----------------------------------------------------------------------------------------------- main


class Triton:
    """Our own tritonserver (a runtime.stack.LocalStack with no services: free ports, its own repository under
    ``work``), restarted if it dies under us (a shared machine)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.stack: LocalStack | None = None
        self.server: TritonServer | None = None
        self.starts = 0

    def start(self) -> TritonServer:
        began = time.perf_counter()
        self.stack = LocalStack.on_free_ports(self.work, [], models=[MODEL])
        self.stack.start()
        assert self.stack.triton is not None
        self.server = self.stack.triton
        self.starts += 1
        took = time.perf_counter() - began
        print(f"[bench] tritonserver on {self.server.grpc_url} (ready in {took:.1f} s)", file=sys.stderr)
        return self.server

    def alive(self) -> bool:
        return self.server is not None and self.server.process.alive()

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        self.stack = None
        self.server = None


@dataclass(frozen=True)
class Settings:
    k: int
    fps: float
    max_side: int
    batch_size: int

    def key(self) -> str:
        return f"{MODEL}_k{self.k}_fps{self.fps:g}_side{self.max_side}_batch{self.batch_size}"


def _run_to_json(run: RunResult) -> dict[str, Any]:
    raw = dataclasses.asdict(run)
    raw["scores"] = {str(i): v for i, v in run.scores.items()}
    return raw


def _run_from_json(raw: dict[str, Any]) -> RunResult:
    kfs = dict(raw["kfs"])
    kfs["hits_per_scene"] = tuple(kfs["hits_per_scene"])
    fields = {**raw, "kfs": kfs_metrics.KfsScores(**kfs), "scores": {int(i): v for i, v in raw["scores"].items()}}
    return RunResult(**fields)


class Checkpoint:
    """Completed questions, one JSON line each, so an interrupted run resumes instead of starting over."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        if fresh and path.exists():
            path.unlink()

    def load(self) -> dict[str, QuestionRecord]:
        done: dict[str, QuestionRecord] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                raw = json.loads(line)
                runs = {name: _run_from_json(r) for name, r in raw["runs"].items()}
                done[raw["record"]["question_id"]] = QuestionRecord(raw["record"], runs)
        return done

    def add(self, entry: QuestionRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"record": entry.record, "runs": {name: _run_to_json(r) for name, r in entry.runs.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")


async def _warm(client: TritonClient, record: dict[str, Any], chosen: list[Contender], settings: Settings) -> None:
    """Untimed: the model's first forward pass, and one lean FOCUS selection (decoder, small batch shapes).

    The dry selection reads a little of a video that the FOCUS runs (first for each question) would read anyway.
    """
    await client.wait_ready([MODEL], timeout_s=120)
    warm = np.zeros((settings.batch_size, 240, 320, 3), dtype=np.uint8)
    await TritonScorer(client, MODEL, feature_cache=False).score(warm, "warm-up")
    dry = {**record, "question": "warm-up: a photo of something"}
    s = settings
    await run_one(chosen[0], dry, client, k=s.k, fps=s.fps, max_side=s.max_side, batch_size=s.batch_size)


async def _question(
    n: int, total: int, record: dict[str, Any], client: TritonClient, chosen: list[Contender], s: Settings, pid: int
) -> QuestionRecord:
    # The model memoises each query's class weights (one MiniLM encode); warm that too so it is not charged to
    # whichever strategy happens to run first.
    warm = np.zeros((1, 240, 320, 3), dtype=np.uint8)
    await TritonScorer(client, MODEL, feature_cache=False).score(warm, record["question"])
    entry = QuestionRecord(record)
    for contender in chosen:
        run = await run_one(
            contender, record, client, k=s.k, fps=s.fps, max_side=s.max_side, batch_size=s.batch_size, triton_pid=pid
        )
        entry.runs[contender.name] = run
        share = 100 * run.frames_scored / run.num_candidates
        print(
            f"[{n}/{total}] {record['question_id']} {contender.name:16s} "
            f"wall {run.wall_s:7.2f} s  cpu {run.cpu_s:7.2f} s  "
            f"scored {run.frames_scored:5d}/{run.num_candidates} ({share:5.2f} %)"
            f"  decoded {run.frames_decoded:6d}  UKSS {run.kfs.ukss:.3f}  KFR {run.kfs.kfr:.2f}"
            f"  load {run.loadavg_1m:.1f}",
            file=sys.stderr,
            flush=True,
        )
    return entry


async def bench(
    records: list[dict[str, Any]],
    triton: Triton,
    checkpoint: Checkpoint,
    settings: Settings,
    names: list[str] | None,
    retries: int = 3,
) -> list[QuestionRecord]:
    """Every question, all chosen strategies in a row; a question cut short by a Triton crash is redone whole."""
    chosen = [c for c in contenders() if names is None or c.name in names]
    done = checkpoint.load()
    results: list[QuestionRecord] = []
    todo = []
    for record in records:
        if record["question_id"] in done and all(c.name in done[record["question_id"]].runs for c in chosen):
            results.append(done[record["question_id"]])
        else:
            todo.append(record)
    if results:
        print(f"[bench] resuming: {len(results)} questions from {checkpoint.path}", file=sys.stderr)
    began = time.perf_counter()
    failures = 0
    position = 0
    while position < len(todo):
        server = triton.server if triton.alive() and triton.server is not None else triton.start()
        try:
            async with TritonClient(server.grpc_url, default_timeout_s=120.0) as client:
                await _warm(client, todo[position], chosen, settings)
                while position < len(todo):
                    n = len(results) + 1
                    entry = await _question(
                        n, len(records), todo[position], client, chosen, settings, server.process.pid
                    )
                    checkpoint.add(entry)
                    results.append(entry)
                    position += 1
                    elapsed = time.perf_counter() - began
                    left = elapsed / position * (len(todo) - position)
                    print(
                        f"[{n}/{len(records)}] done, {elapsed / 60:.1f} min elapsed, ~{left / 60:.1f} min left",
                        file=sys.stderr,
                    )
        except TesseraError as exc:
            if triton.alive() or failures >= retries:
                raise
            failures += 1
            print(f"[bench] tritonserver died ({exc}); restarting and redoing the question", file=sys.stderr)
            triton.stop()
    order = {r["question_id"]: i for i, r in enumerate(records)}
    return sorted(results, key=lambda q: order[q.record["question_id"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one 10-min video, 2 questions")
    parser.add_argument("--k", type=int, default=32, help="frames to select per question (default 32)")
    parser.add_argument("--fps", type=float, default=1.0, help="candidate grid sampling rate (default 1 fps)")
    parser.add_argument("--max-side", type=int, default=320, help="thumbnail size (service default 320)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per Triton request (service default 32)")
    parser.add_argument("--questions-per-video", type=int, help="use the first N questions of each video")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0], help="the scorer (default: the service's)")
    parser.add_argument("--strategies", nargs="+", choices=[c.name for c in contenders()], help="subset to run")
    parser.add_argument("--out", type=Path, help="results JSON (the .md goes beside it)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume", action="store_true", help="reuse the questions an interrupted run completed (its checkpoint)"
    )
    resume.add_argument("--fresh", action="store_true", help="measure every question anew (the default)")
    args = parser.parse_args(argv)
    global MODEL
    MODEL = args.model

    bench_set = generate.build_default(args.quick, args.seed)
    default_q = generate.QUICK_QUESTIONS_PER_VIDEO if args.quick else FULL_RUN_QUESTIONS_PER_VIDEO
    questions_per_video = args.questions_per_video or default_q
    out = args.out or (bench_set.data_dir / "results.json" if args.quick else RESULTS_DIR / "keyframes.json")
    settings = Settings(args.k, args.fps, args.max_side, args.batch_size)
    records: list[dict[str, Any]] = []
    for video in bench_set.videos:
        records += [q for q in bench_set.questions if q["video_id"] == video.video_id][:questions_per_video]

    repo = BENCH_BUILD / "model_repository"  # the stack builds it there; the query classes read its labels
    checkpoint = Checkpoint(bench_set.data_dir / f"checkpoint_{settings.key()}.jsonl", fresh=not args.resume)
    load_at_start = list(os.getloadavg())
    triton = Triton(BENCH_BUILD)
    try:
        questions = asyncio.run(bench(records, triton, checkpoint, settings, args.strategies))
    finally:
        triton.stop()
    loadavg = list(os.getloadavg())

    names = [c.name for c in contenders() if c.name in questions[0].runs]
    # Report order: the baselines, then FOCUS (lean = the service default), then the published schedule.
    order = ["uniform", "exhaustive_top_k", "focus", "focus_published"]
    names = [n for n in order if n in names]
    strategies, details = summarize(questions, names)
    print("[bench] mapping queries to model classes (diagnostics, after timing)", file=sys.stderr)
    classes = query_classes([q.record["question"] for q in questions], repo)
    videos = {q.record["video_id"] for q in questions}
    durations = [v.duration_s / 60 for v in bench_set.videos if v.video_id in videos]
    command = "benchmarks/keyframes/run.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    oracle = oracle_scores(questions, args.k, args.fps)
    exhaustive_ukss = strategies.get("exhaustive_top_k", {}).get("ukss")
    result: dict[str, Any] = {
        "oracle_ukss": oracle["ukss"],
        "exhaustive_vs_oracle": exhaustive_ukss / oracle["ukss"] if exhaustive_ukss is not None else None,
        "scorer_auc_mean": scorer_auc_mean(questions, args.fps),
        "videos": len(videos),
        "questions": len(questions),
        "strategies": strategies,
        "ratios": ratios(questions, strategies, args.fps),
        "oracle": oracle,
        "strategy_details": details,
        "config": {
            "command": command.strip(),
            "quick": args.quick,
            "tritonserver_starts": triton.starts,
            "checkpoint": f"{checkpoint.path.relative_to(ROOT)} (--resume reuses the questions it holds)",
            "durations_min": durations,
            "seed": args.seed,
            "questions_per_video": questions_per_video,
            "questions_per_video_generated": max(
                sum(q["video_id"] == v.video_id for q in bench_set.questions) for v in bench_set.videos
            ),
            "questions_note": f"the first {questions_per_video} question(s) of each video are run",
            "questions_file": str(bench_set.questions_path.relative_to(ROOT)),
            "k": args.k,
            "fps": args.fps,
            "max_side": args.max_side,
            "batch_size": args.batch_size,
            "model": MODEL,
            "run_order_per_question": [c.name for c in contenders() if c.name in names],
            "cold": "fresh VideoFrameSource(cache=None) and TritonScorer(feature_cache=False) per run; each run "
            "decodes and scores its own frames. Model and each query's text embedding are warmed before timing.",
            "wall_s": "probe + pipeline.select (decode, score, select), end to end, mean per question",
            "ukss": "kfs_metrics.aggregate: geometric mean of per-question UKSS clipped at 0.01; others arithmetic",
            "focus": {"schedule": "lean (service default)", **dataclasses.asdict(FocusParams.lean())},
            "focus_published": {"schedule": "published", **dataclasses.asdict(FocusParams.published())},
        },
        "machine": {**machine(), "loadavg_at_start": load_at_start, "loadavg_at_end": loadavg},
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "per_question": per_question_json(questions, args.fps, classes),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(report.markdown(result))
    print(f"[bench] wrote {out} and {md}", file=sys.stderr)
    print(md.read_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
