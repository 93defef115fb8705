"""Run a load profile against a Tessera stack on loopback and write the reports.

    python -m loadtest [--profile loadtest/profiles/smoke.yaml] [--stack-state build/stack/state.json]
                       [--out loadtest/results] [--baseline loadtest/baseline.json] [--write-baseline]

Without ``--stack-state`` it starts its own stack (nats-server, Triton, the profile's services) on free ports under
``build/loadtest/stack`` and stops it at the end. Writes ``<out>/summary.json``, ``report.md``, ``latency.png`` and
``cpu_profile.json`` (the CPU-class profiles measured here, read by ``tessera plan``). Exits 1 when a check against
the baseline regresses (``--no-fail`` reports only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from loadtest import report, stack, traces
from loadtest import scenarios as scenarios_lib
from loadtest.engine import RunResult, closed_loop, open_loop
from loadtest.scenarios import Scenario
from loadtest.scenarios.keyframes import MEDIA_DIR, OverheadProbe, scenario_video
from loadtest.validate import fifo_service_times, validate

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTIONS = {
    "keyframes": "SelectKeyframes on a generated multi-scene video (hot caches after a cold warm-up pass); latency "
    "from the scheduled send time.",
    "frame_relevance": "The frame_relevance model alone, straight through tritonclient with its detection cache off "
    "(one thumbnail per request): the bare Triton station the planner sizes.",
    "monitoring": "Camera frames (JPEG of real video) on long-lived Ingest streams, one room per camera; a request is "
    "one frame, done when its detections come back from the detector worker; shed frames are errors.",
    "translation": "Conference utterances of real speech (real-time paced) into the ASR -> MT -> TTS cascade; one "
    "request is one utterance; segment rows are per segment and listener language.",
    "triage": "Assess on synthetic fundus photographs (one per grade, PNG, encoded once; cold warm-up pass first): "
    "decode, triage_captioner, triage_reasoner and the audit record; a referral as not a fundus is an error.",
    "triage_captioner": "The triage captioner alone, straight through tritonclient (one 256 px fundus photograph in "
    "the normalised frame per request).",
    "triage_reasoner": "The triage reasoner alone, straight through tritonclient (one findings text per request, as "
    "the captioner wrote it).",
    "cry": "Classify on 3.5 s clips of a held-out family's synthetic cries (one per reason, PCM16 16 kHz, encoded "
    "once; cold warm-up pass first): decode, segmentation, one cry_classifier call per segment.",
    "cry_classifier": "The cry classifier alone, straight through tritonclient (one 3 s segment of 16 kHz audio per "
    "request).",
}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.began = time.monotonic()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.began)


async def run_overhead(target: stack.Target, options: dict[str, Any], video_minutes: float) -> dict[str, Any]:
    video = scenario_video(video_minutes)
    query = video.questions[0].question if video.questions else "Find every scene that contains a person."
    probe = OverheadProbe(target, video, query)
    await probe.setup()
    try:
        timings = await probe.measure(int(options.get("calls", 400)), int(options.get("warmup", 50)))
        relevance = await per_frame_cost(probe)
    finally:
        await probe.close()
    dist = {name: report.distribution(values) for name, values in timings.items()}
    phases = {name: report.percentile(values, 50) for name, values in probe.phases.items()}
    library = {}
    if "add_sub_runtime" in dist:
        library = {
            "runtime_minus_direct_p50_ms": dist["add_sub_runtime"]["p50"] - dist["add_sub_direct"]["p50"],
            "runtime_minus_direct_p99_ms": dist["add_sub_runtime"]["p99"] - dist["add_sub_direct"]["p99"],
        }
    return {
        "library_add_sub": library,
        "definition": (
            "overhead = p50 (p99) of SelectKeyframes(STRATEGY_UNIFORM, k=1) on a cached video minus p50 (p99) of "
            "the identical frame_relevance inference (same thumbnail, same query) sent straight to Triton with "
            "tritonclient.grpc.aio; both interleaved call by call at concurrency 1 in this run. EvaluateSelection "
            "(no model, no media) shows the floor of a unary call through the service's gRPC stack; add_sub rows "
            "time the Triton client layer alone (tessera.runtime.inference vs tritonclient, trivial model)."
        ),
        "calls": len(timings["service"]),
        "latency_ms": dist,
        "overhead_p50_ms": dist["service"]["p50"] - dist["direct"]["p50"],
        "overhead_p99_ms": dist["service"]["p99"] - dist["direct"]["p99"],
        "ratio_p50": dist["service"]["p50"] / dist["direct"]["p50"],
        "phases_p50_ms": phases,
        "frame_relevance_uncached": relevance,
    }


async def per_frame_cost(probe: OverheadProbe, calls: int = 6, frames: int = 4) -> dict[str, float]:
    """frame_relevance with its detection cache off: the model's real per-frame CPU cost (CPU profile)."""
    import numpy as np
    from tritonclient.grpc import InferInput, InferRequestedOutput

    assert probe.triton is not None and probe.frames is not None
    batch = np.repeat(probe.frames, frames, axis=0)
    times = []
    for _ in range(calls):
        inputs = [InferInput("FRAMES", list(batch.shape), "UINT8"), InferInput("QUERY", [frames, 1], "BYTES")]
        inputs[0].set_data_from_numpy(batch)
        inputs[1].set_data_from_numpy(np.array([[probe.query.encode()]] * frames, dtype=np.object_))
        began = time.perf_counter()
        await probe.triton.infer(
            "frame_relevance", inputs, outputs=[InferRequestedOutput("SCORES")], parameters={"feature_cache": False}
        )
        times.append((time.perf_counter() - began) * 1000)
    per_frame = [t / frames for t in times[1:]]
    mean = sum(per_frame) / len(per_frame)
    var = sum((v - mean) ** 2 for v in per_frame) / max(1, len(per_frame) - 1)
    return {"per_frame_ms": mean, "scv": var / mean**2, "frames_per_call": frames, "calls": len(per_frame)}


async def run_scenario(
    name: str, options: dict[str, Any], target: stack.Target, budget: Budget
) -> tuple[dict[str, Any], dict[str, list[RunResult]], Scenario]:
    create = scenarios_lib.factory(name)
    if create is None:
        raise SystemExit(f"unknown scenario {name!r}; known: {scenarios_lib.known()}")
    scenario = await create(target, options)
    began = time.perf_counter()
    await scenario.setup()
    setup_s = time.perf_counter() - began
    levels: list[dict[str, Any]] = []
    runs: dict[str, list[RunResult]] = {"closed": [], "open": []}
    skipped: list[str] = []
    cpu_before = {p: stack.cpu_seconds(pid) for p, pid in target.pids.items()}
    window_began_ns = time.time_ns()
    try:
        closed = options.get("closed_loop") or {}
        for concurrency in closed.get("concurrency", []):
            label = f"closed c={concurrency:g}"
            if budget.left() < float(closed["duration_s"]) + 5:
                skipped.append(label)
                continue
            run = await closed_loop(
                scenario.once, int(concurrency), float(closed["duration_s"]), int(closed["max_requests"])
            )
            runs["closed"].append(run)
            levels.append(report.summarize_run(run, label))
            _progress(name, levels[-1])
        opened = options.get("open_loop") or {}
        top = report.capacity(levels)
        for label, rate, fraction in open_levels(opened, options, top):
            if rate <= 0 or budget.left() < float(opened["duration_s"]) + float(opened.get("drain_s", 30)) / 2:
                skipped.append(label)
                continue
            run = await open_loop(
                scenario.once,
                rate,
                float(opened["duration_s"]),
                int(opened["max_requests"]),
                drain_s=float(opened.get("drain_s", 30)),
                arrivals=str(opened.get("arrivals", "poisson")),
            )
            runs["open"].append(run)
            levels.append(
                report.summarize_run(run, label)
                | {"load_fraction": fraction, "arrivals": str(opened.get("arrivals", "poisson"))}
            )
            _progress(name, levels[-1])
    finally:
        cpu_after = {p: stack.cpu_seconds(pid) for p, pid in target.pids.items()}
        extras = scenario.extras()
        await scenario.close()
    requests = sum(len(r.samples) for rs in runs.values() for r in rs)
    cpu = {p: cpu_after[p] - cpu_before[p] for p in cpu_before}
    result = {
        "description": DESCRIPTIONS.get(name, ""),
        "setup_s": setup_s,
        "capacity_rps": report.capacity(levels),
        "levels": levels,
        "skipped": skipped,
        "cpu_s_by_process": cpu,
        "requests": requests,
        "_window_ns": [window_began_ns, time.time_ns()],
        **extras,
    }
    return result, runs, scenario


def open_levels(
    opened: dict[str, Any], options: dict[str, Any], capacity: float
) -> list[tuple[str, float, float | None]]:
    """(label, arrivals per second, fraction of capacity) of each open-loop level.

    ``load_fractions`` are fractions of the highest closed-loop throughput; ``cameras`` (with the scenario's
    ``fps``) are absolute rates: N cameras at a given frame rate, the way a monitoring deployment is specified.
    """
    out: list[tuple[str, float, float | None]] = []
    for fraction in opened.get("load_fractions", []):
        out.append((f"open {fraction:g}x", capacity * float(fraction), float(fraction)))
    fps = float(options.get("fps", 0) or 0)
    for cameras in opened.get("cameras", []):
        rate = float(cameras) * fps
        out.append((f"open {cameras:g} cam x {fps:g} fps", rate, rate / capacity if capacity > 0 else None))
    return out


def _progress(name: str, level: dict[str, Any]) -> None:
    lat = level["latency_ms"]
    seg = level.get("segments", {}).get("e2e_ms", {})
    extra = f" segment e2e p50 {seg['p50']:.0f} p95 {seg['p95']:.0f}" if seg else ""
    print(
        f"  {name:<12} {level['label']:<14} {level['requests']:>5} req {level['throughput_rps']:8.2f}/s "
        f"err {level['error_rate'] * 100:4.1f}% p50 {lat['p50']:8.1f} p99 {lat['p99']:8.1f} ms{extra}",
        flush=True,
    )


def cpu_profile(scenarios: dict[str, Any], overhead: dict[str, Any]) -> dict[str, Any]:
    """CPU-class cost profiles measured in this run, in the planner's table format."""
    models: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    stamp = time.strftime("%Y-%m-%d")
    rel = overhead.get("frame_relevance_uncached")
    if rel:
        models["frame_relevance"] = {
            "unit": "frames",
            "profiles": {
                "cpu": {
                    "per_unit_ms": rel["per_frame_ms"],
                    "scv": rel["scv"],
                    "measured": True,
                    "source": f"measured by make loadtest {stamp}: reference yolov3-tiny + MiniLM, detection cache "
                    f"off, {rel['frames_per_call']} frames per call",
                }
            },
        }
    kf = scenarios.get("keyframes")
    if kf:
        costs["keyframes_decode_ms_per_scored_frame"] = {
            "value": kf["decode_ms_per_scored_frame"],
            "source": f"measured by make loadtest {stamp}: cold selections, decode phase / frames scored",
        }
        cpu = kf["cpu_s_by_process"].get("keyframes")
        if cpu is not None and kf["requests"]:
            costs["keyframes_ms_per_query"] = {
                "value": cpu * 1000 / kf["requests"],
                "source": f"measured by make loadtest {stamp}: keyframes service CPU per hot query",
            }
    tr = scenarios.get("translation")
    if tr:
        segs = [s for lv in tr["levels"] for s in lv.get("_segments", [])]
        if segs:
            import statistics

            def stage(key: str, units: str) -> dict[str, Any]:
                pairs = [(float(s[units]), float(s[key])) for s in segs if s.get(units)]
                fixed, per_unit = linear_fit(pairs)
                means = [fixed + per_unit * x for x, _ in pairs]
                ratios = [y / m for (_, y), m in zip(pairs, means, strict=True) if m > 0]
                scv = statistics.pvariance(ratios) / statistics.fmean(ratios) ** 2 if len(ratios) > 1 else 0.0
                return {"fixed_ms": fixed, "per_unit_ms": per_unit, "scv": scv, "measured": True}

            refs = {
                "asr": ("audio_s", "faster-whisper tiny.en int8 (reference, English only)"),
                "mt": ("tokens", "Apertium warm null-flush pipelines (reference, rule-based)"),
                "tts": ("audio_s", "Piper (en) / espeak-ng (reference)"),
            }
            unit_key = {"audio_s": "segment_s", "tokens": "tokens"}
            for model, (unit, what) in refs.items():
                prof = stage(f"{model}_ms", unit_key[unit])
                prof["source"] = f"measured by make loadtest {stamp}: {what}, per {unit}, from LatencyBreakdown"
                models[model] = {"unit": unit, "profiles": {"cpu": prof}}
            costs["mean_segment_s"] = {
                "value": statistics.fmean(s["segment_s"] for s in segs),
                "source": f"measured by make loadtest {stamp}: VAD segments of {tr['conference']['languages']}",
            }
        cpu = tr["cpu_s_by_process"].get("translation")
        if cpu is not None and tr.get("speech_s_sent"):
            costs["gateway_ms_per_speech_s"] = {
                "value": cpu * 1000 / tr["speech_s_sent"],
                "source": f"measured by make loadtest {stamp}: gateway CPU per second of speech received, "
                f"{tr['conference']['participants']} participants (fan-out included)",
            }
            costs["gateway_ms_per_listener_segment"] = {
                "value": 0.0,
                "source": "included in gateway_ms_per_speech_s (measured at the load test's participant count)",
            }
    mon = scenarios.get("monitoring")
    if mon and mon.get("requests"):
        stages = ("monitoring", "monitoring.detector", "monitoring.fusion")
        cpu = sum(mon["cpu_s_by_process"].get(p, 0.0) for p in stages)
        costs["monitoring_ms_per_frame"] = {
            "value": cpu * 1000 / mon["requests"],
            "source": f"measured by make loadtest {stamp}: gateway, detector and fusion workers' CPU per ingested "
            "frame (JPEG decode, publish, fusion; the detector model itself runs in Triton)",
        }
    cry = scenarios.get("cry")
    if cry:
        models |= _direct_models(cry, {"cry_classifier": "audio_s"}, stamp)
        cpu = cry["cpu_s_by_process"].get("cry")
        if cpu is not None and cry.get("audio_s_sent"):
            costs["cry_ms_per_audio_s"] = {
                "value": cpu * 1000 / cry["audio_s_sent"],
                "source": f"measured by make loadtest {stamp}: cry service CPU per second of audio classified "
                "(decode, resampling, segmentation, gRPC; the classifier itself runs in Triton)",
            }
    tri = scenarios.get("triage")
    if tri:
        models |= _direct_models(tri, {"triage_captioner": "images", "triage_reasoner": "assessments"}, stamp)
        if tri.get("decode_ms_per_image") is not None:
            costs["triage_decode_ms_per_image"] = {
                "value": tri["decode_ms_per_image"],
                "source": f"measured by make loadtest {stamp}: the service's decode and orientation of one "
                f"photograph (photos.decode + fundus.orient, thread CPU time; {tri['request']['images']})",
            }
        cpu = tri["cpu_s_by_process"].get("triage")
        if cpu is not None and tri.get("requests"):
            images = tri["request"]["images_per_request"]
            decode_ms = float(tri.get("decode_ms_per_image") or 0.0)
            costs["triage_ms_per_assessment"] = {
                "value": max(0.0, cpu * 1000 / tri["requests"] - images * decode_ms),
                "source": f"measured by make loadtest {stamp}: triage service CPU per Assess of {images} image(s), "
                "less their decode (triage_decode_ms_per_image): gRPC, checks, model calls, audit publish",
            }
    return {"generated": stamp, "models": models, "cpu_costs": costs}


def _direct_models(result: dict[str, Any], units: dict[str, str], stamp: str) -> dict[str, Any]:
    """CPU-class profiles of a capability's models from its scenario's direct-Triton calls (concurrency 1): each
    call's time against its units (``units``: model -> the unit its calls are counted in)."""
    import statistics

    models: dict[str, Any] = {}
    for model, unit in units.items():
        calls = (result.get("direct_triton") or {}).get(model) or []
        pairs = [(float(c[unit]), float(c["ms"])) for c in calls]
        if len(pairs) < 2:
            continue
        fixed, per_unit = linear_fit(pairs)
        means = [fixed + per_unit * x for x, _ in pairs]
        ratios = [y / m for (_, y), m in zip(pairs, means, strict=True) if m > 0]
        models[model] = {
            "unit": unit,
            "profiles": {
                "cpu": {
                    "fixed_ms": fixed,
                    "per_unit_ms": per_unit,
                    "scv": statistics.pvariance(ratios) / statistics.fmean(ratios) ** 2,
                    "measured": True,
                    "source": f"measured by make loadtest {stamp}: reference model alone through tritonclient, "
                    f"concurrency 1, {len(pairs)} calls of {sorted({int(x) for x, _ in pairs})} {unit}",
                }
            },
        }
    return models


def wait_until_quiet(threshold: float, max_wait_s: float, poll_s: float = 60.0) -> dict[str, Any]:
    """Poll the 1-minute load average (other benchmarks share this machine) until it drops below ``threshold``."""
    began = time.monotonic()
    while True:
        load = stack.load_average()
        waited = time.monotonic() - began
        if load[0] < threshold or waited >= max_wait_s:
            return {"threshold": threshold, "waited_s": round(waited, 1), "reached": load[0] < threshold}
        print(f"load average {load[0]} >= {threshold}: waiting ({waited:.0f}/{max_wait_s:.0f} s)", flush=True)
        time.sleep(min(poll_s, max(1.0, max_wait_s - waited)))


async def main_async(args: argparse.Namespace, profile: dict[str, Any], quiet: dict[str, Any]) -> int:
    budget = Budget(float(profile.get("max_total_s", 270)))
    load_before = stack.load_average()
    print(f"load average before: {load_before} ({os.cpu_count()} CPUs)", flush=True)
    scen_opts: dict[str, dict[str, Any]] = profile.get("scenarios") or {}
    kf_minutes = float((scen_opts.get("keyframes") or {}).get("video_minutes", 1))
    if "keyframes" in scen_opts:
        scenario_video(kf_minutes)  # generate (or reuse) before the stack starts: not part of any measurement
    began = time.monotonic()
    trace_dir: Path | None = None
    if args.stack_state:
        target = stack.attach(Path(args.stack_state))
    else:
        print("starting a stack on free loopback ports ...", flush=True)
        trace_dir = ROOT / "build" / "loadtest" / "traces"
        shutil.rmtree(trace_dir, ignore_errors=True)
        target = stack.start(
            ROOT / "build" / "loadtest" / "stack",
            list(profile.get("services") or []),
            [ROOT / "build" / "media", ROOT / "build" / "test-media", MEDIA_DIR],
            trace_dir=trace_dir,
        )
        print(f"stack ready in {time.monotonic() - began:.1f} s", flush=True)
    scenarios: dict[str, Any] = {}
    runs: dict[str, dict[str, list[RunResult]]] = {}
    overhead: dict[str, Any] = {}
    try:
        if "keyframes" in scen_opts:
            overhead = await run_overhead(target, profile.get("overhead") or {}, kf_minutes)
            print(
                f"  overhead     p50 {overhead['overhead_p50_ms']:.3f} ms p99 {overhead['overhead_p99_ms']:.3f} ms "
                f"(service p50 {overhead['latency_ms']['service']['p50']:.2f}, direct "
                f"{overhead['latency_ms']['direct']['p50']:.2f})",
                flush=True,
            )
        for name, options in scen_opts.items():
            if scenarios_lib.factory(name) is None:
                raise SystemExit(f"unknown scenario {name!r}; known: {scenarios_lib.known()}")
            try:
                scenarios[name], runs[name], _ = await run_scenario(name, options, target, budget)
            except Exception as exc:  # one broken scenario must not cost the others' results
                print(f"  {name:<12} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                scenarios[name] = {"error": f"{type(exc).__name__}: {exc}", "levels": []}
                runs[name] = {"closed": [], "open": []}
    finally:
        target.stop()  # the processes flush their spans as they exit
    spans = traces.read_spans(trace_dir) if trace_dir is not None and trace_dir.exists() else []
    for scen in scenarios.values():
        window = scen.pop("_window_ns", None)
        if spans and window:
            scen["stages_from_traces"] = traces.stage_breakdown(spans, (window[0], window[1]))
    for name, scen in scenarios.items():  # keep per-segment rows out of the summary, but use them for profiles
        for level, run in zip(scen["levels"], [r for m in ("closed", "open") for r in runs[name][m]], strict=True):
            level["_segments"] = [
                seg for s in run.samples if isinstance(s.detail, dict) for seg in s.detail.get("segments", [])
            ]
    profile_out = cpu_profile({n: sc for n, sc in scenarios.items() if "error" not in sc}, overhead)
    for scen in scenarios.values():
        for level in scen["levels"]:
            level.pop("_segments", None)
    validation: dict[str, Any] = {}
    for name in profile.get("validate") or ["keyframes"]:
        name_runs = runs.get(name)
        if name_runs and name_runs["closed"] and name_runs["open"]:
            validation[name] = planner_validation(
                name_runs, scenarios[name], float(profile.get("calibration_max", 0.15)), name
            )
    detector = validation.get("object_detector")
    if detector:  # the detector station's service time is the CPU-class per-frame cost cameras are planned with
        profile_out["models"]["detector"] = {
            "unit": "frames",
            "profiles": {
                "cpu": {
                    "per_unit_ms": detector["service_mean_ms"],
                    "scv": detector["service_scv"],
                    "measured": True,
                    "source": f"measured by make loadtest {profile_out['generated']}: object_detector (yolov3-tiny, "
                    f"one 640 px frame per request) alone, {detector['service_profile_from']}",
                }
            },
        }
    worst = max((v["max_abs_rel_error"] for v in validation.values()), default=math.nan)
    load_after = stack.load_average()
    summary: dict[str, Any] = {
        "overhead_p50_ms": overhead.get("overhead_p50_ms", math.nan),
        "overhead_p99_ms": overhead.get("overhead_p99_ms", math.nan),
        "planner_p95_rel_error": worst,
        "scenarios": scenarios,
        # the same prediction with each point's own service times: the queueing model's error alone
        "planner_queueing_p95_rel_error": max(
            (
                v["same_load_max_abs_rel_error"]
                for v in validation.values()
                if math.isfinite(v["same_load_max_abs_rel_error"])
            ),
            default=math.nan,
        ),
        "overhead": overhead,
        "validation": validation,
        "goals": {
            "overhead_p50_ms_max": 1.0,
            "planner_p95_rel_error_max": 0.25,
            "overhead_met": bool(overhead and overhead["overhead_p50_ms"] <= 1.0),
            "planner_met": bool(validation) and worst <= 0.25,
        },
        "profile": _relative(Path(args.profile)),
        "duration_s": time.monotonic() - budget.began,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_before": list(load_before),
            "quiet_wait": quiet,
            "load_average_after": list(load_after),
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    checks = write_outputs(args, profile, summary, profile_out)
    regressions = [c for c in checks or [] if c.regressed]
    for c in regressions:
        print(f"REGRESSION {c.metric}: {c.baseline:.3g} -> {c.current:.3g} ({c.rule})", file=sys.stderr)
    failed = [name for name, scen in scenarios.items() if "error" in scen]
    return 1 if failed or (regressions and not args.no_fail) else 0


def planner_validation(
    runs: dict[str, list[RunResult]], scenario: dict[str, Any], calibration_max: float, name: str
) -> dict[str, Any]:
    """Profile the local station from its lightest open-loop run, then predict the heavier runs' p95.

    The lightest open-loop run (at most ``calibration_max`` of capacity) is the service-time profile and is not
    among the validated points: measured open-loop, it keeps the stalls a random arrival meets (back-to-back
    closed-loop calls keep the model's threads hot and understate them). For a one-server station (a Triton model
    with one instance) the service times come out of that run exactly, waits removed (``fifo_service_times``);
    otherwise its latencies are used as they are. Without such a run: the closed loop at concurrency 1.
    """
    fractions = [lv.get("load_fraction") for lv in scenario["levels"] if lv["mode"] == "open"]
    instances = scenario.get("instances")
    lightest = min(range(len(runs["open"])), key=lambda i: runs["open"][i].level)
    if fractions[lightest] is not None and fractions[lightest] <= calibration_max:
        calibration = runs["open"][lightest]
        validated = [r for i, r in enumerate(runs["open"]) if i != lightest]
        ok = [s for s in calibration.samples if s.status == "OK"]
        if instances == 1:
            samples = [v * 1000 for v in fifo_service_times([(s.sent_s, s.done_s) for s in ok])]
            how = "service times by FIFO recursion"
        else:
            samples = [s.latency_ms for s in ok]
            how = "latencies"
        source = f"open loop at {fractions[lightest]:g}x capacity ({calibration.level:.1f}/s, {how})"
    else:
        calibration = min(runs["closed"], key=lambda r: r.level)
        validated = runs["open"]
        source = "closed loop at concurrency 1"
        samples = [s.service_ms for s in calibration.samples if s.status == "OK"]
    arrivals = next((lv.get("arrivals") for lv in scenario["levels"] if lv["mode"] == "open"), "poisson")
    same_load = None
    if instances == 1:
        same_load = [
            [v * 1000 for v in fifo_service_times([(s.sent_s, s.done_s) for s in r.samples if s.status == "OK"])]
            for r in validated
        ]
    result = validate(
        samples,
        scenario["capacity_rps"],
        [(r.level, report.percentile([s.latency_ms for s in r.samples if s.status == "OK"], 95)) for r in validated],
        arrival_scv=1.0 if arrivals == "poisson" else 0.0,
        scenario=name,
        max_servers=os.cpu_count(),
        servers=int(instances) if instances else None,
        same_load_service_ms=same_load,
    )
    result["service_profile_from"] = source
    result["servers_from"] = "the model's instance count" if instances else "Little's law at saturation"
    return result


def linear_fit(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = fixed + per_unit * x`` with both terms >= 0 (per-unit only when the fit says < 0)."""
    if not pairs:
        return 0.0, 0.0
    n = len(pairs)
    mx = sum(x for x, _ in pairs) / n
    my = sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    if sxx > 0:
        per_unit = sum((x - mx) * (y - my) for x, y in pairs) / sxx
        fixed = my - per_unit * mx
        if per_unit >= 0 and fixed >= 0:
            return fixed, per_unit
        if per_unit < 0:
            return my, 0.0
    return 0.0, my / mx if mx > 0 else 0.0


def write_outputs(
    args: argparse.Namespace, profile: dict[str, Any], summary: dict[str, Any], profile_out: dict[str, Any]
) -> list[report.Check] | None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    baseline_path = Path(args.baseline)
    checks: list[report.Check] | None = None
    if baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
        checks = report.compare(summary, baseline, threshold=float(profile.get("regression_threshold", 0.5)))
        summary["baseline_comparison"] = {
            "baseline": str(baseline_path),
            "threshold": float(profile.get("regression_threshold", 0.5)),
            "checks": len(checks),
            "regressions": [c.__dict__ for c in checks if c.regressed],
        }
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=1) + "\n")
    (out / "cpu_profile.json").write_text(json.dumps(_clean(profile_out), indent=1) + "\n")
    (out / "report.md").write_text(report.markdown(summary, checks))
    try:
        report.plot(summary, out / "latency.png")
    except ImportError:
        print("matplotlib is not installed: no latency.png", file=sys.stderr)
    if args.write_baseline:
        baseline_path.write_text(json.dumps(_clean(summary), indent=1) + "\n")
        print(f"baseline written: {baseline_path}")
    print(
        f"overhead p50 {summary['overhead_p50_ms']:.3f} ms (goal <= 1), planner p95 error "
        f"{summary['planner_p95_rel_error']:.3f} (goal <= 0.25); {summary['duration_s']:.0f} s; reports in {out}/"
    )
    return checks


def _relative(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _clean(value: Any) -> Any:
    """JSON without NaN/Infinity (null instead)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=str(ROOT / "loadtest" / "profiles" / "smoke.yaml"))
    parser.add_argument("--stack-state", help="attach to a running stack (its state.json) instead of starting one")
    parser.add_argument("--out", default=str(ROOT / "loadtest" / "results"))
    parser.add_argument("--baseline", default=str(ROOT / "loadtest" / "baseline.json"))
    parser.add_argument("--write-baseline", action="store_true", help="save this run as the new baseline")
    parser.add_argument("--no-fail", action="store_true", help="report regressions without failing")
    parser.add_argument(
        "--quiet-wait-s", type=float, default=0.0, help="first wait up to this long for the load average to drop"
    )
    parser.add_argument("--quiet-load", type=float, default=1.0, help="the 1-minute load average that counts as quiet")
    args = parser.parse_args(argv)
    profile = yaml.safe_load(Path(args.profile).read_text())
    quiet = wait_until_quiet(args.quiet_load, args.quiet_wait_s) if args.quiet_wait_s > 0 else {}
    return asyncio.run(main_async(args, profile, quiet))


if __name__ == "__main__":
    raise SystemExit(main())
