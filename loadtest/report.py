"""Statistics of runs, comparison with a saved baseline, and the Markdown and PNG reports (pure but the plot)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.engine import RunResult

PERCENTILES = (50, 90, 95, 99)
STAGES = ("asr_ms", "mt_ms", "tts_ms", "queue_ms")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict[str, float]:
    out = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out["max"] = max(values) if values else math.nan
    out["mean"] = math.fsum(values) / len(values) if values else math.nan
    out["count"] = float(len(values))
    return out


def summarize_run(run: RunResult, label: str) -> dict[str, Any]:
    """Throughput, latency percentiles (from the scheduled time) and errors by status code for one load level."""
    ok = [s for s in run.samples if s.status == "OK"]
    statuses = Counter(s.status for s in run.samples)
    total = len(run.samples)
    summary: dict[str, Any] = {
        "label": label,
        "mode": run.mode,
        "level": run.level,
        "requests": total,
        "ok": len(ok),
        "throughput_rps": len(ok) / run.window_s,
        "window_s": run.window_s,
        "error_rate": (total - len(ok)) / total if total else 0.0,
        "status_codes": dict(sorted(statuses.items())),
        "latency_ms": distribution([s.latency_ms for s in ok]),
        "service_ms": distribution([s.service_ms for s in ok]),
    }
    segments = [seg for s in run.samples if isinstance(s.detail, dict) for seg in s.detail.get("segments", [])]
    if segments:
        summary["segments"] = segment_summary(segments)
    return summary


def segment_summary(segments: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-segment end-of-speech-to-first-audio and the cascade's per-stage breakdown."""
    items = list(segments)
    return {
        "count": len(items),
        "e2e_ms": distribution([float(s["e2e_ms"]) for s in items]),
        "stages_ms": {stage: distribution([float(s[stage]) for s in items]) for stage in (*STAGES, "total_ms")},
    }


def capacity(levels: Sequence[Mapping[str, Any]]) -> float:
    """The highest closed-loop throughput measured (requests per second)."""
    return max((float(lv["throughput_rps"]) for lv in levels if lv["mode"] == "closed"), default=0.0)


# -- baseline comparison -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    metric: str
    baseline: float
    current: float
    regressed: bool
    rule: str


def _latency_check(metric: str, base: float, cur: float, threshold: float, floor_ms: float) -> Check:
    limit = max(base * (1 + threshold), base + floor_ms)
    return Check(metric, base, cur, cur > limit, f"<= max(baseline x {1 + threshold:g}, baseline + {floor_ms:g} ms)")


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    floor_ms: float = 1.0,
    error_rate_slack: float = 0.01,
) -> list[Check]:
    """Checks of the current summary against a baseline summary; a check regresses past the threshold.

    Latency (p50 per level, a tail for closed-loop levels, segment p50/p95, service overhead p50): worse than
    ``baseline x (1 + threshold)`` and by more than ``floor_ms``. The tail is p99 when both runs of the level have
    at least ``TAIL_P99_MIN_REQUESTS`` requests, else p90 (a p99 of a few hundred samples rests on a handful of
    requests). Open-loop tails are reported, not gated: a queue's tail at a random arrival pattern swings by 2x
    between runs of the same code on a shared machine, while its p50 and the closed loop's tail hold.
    Throughput: below ``baseline x (1 - threshold)``. Error rate: above the
    baseline's by more than ``error_rate_slack``. Levels are matched by label; a level missing on either side is
    skipped (never a silent pass of the whole comparison: at least the overhead is always compared).
    """
    checks: list[Check] = []
    for key in ("overhead_p50_ms",):
        if _finite(baseline.get(key)) and _finite(current.get(key)):
            checks.append(_latency_check(key, float(baseline[key]), float(current[key]), threshold, floor_ms))
    base_scen = baseline.get("scenarios") or {}
    for name, scen in (current.get("scenarios") or {}).items():
        base_levels = {lv["label"]: lv for lv in (base_scen.get(name) or {}).get("levels", [])}
        for level in scen.get("levels", []):
            base = base_levels.get(level["label"])
            if base is None or not base.get("ok"):
                continue
            where = f"{name}/{level['label']}"
            for q in ("p50", _tail(base, level)) if level["mode"] == "closed" else ("p50",):
                b, c = base["latency_ms"][q], level["latency_ms"][q]
                if _finite(b) and _finite(c):
                    checks.append(_latency_check(f"{where} latency {q}", b, c, threshold, floor_ms))
            if "segments" in base and "segments" in level:
                for q in ("p50", "p95"):
                    b, c = base["segments"]["e2e_ms"][q], level["segments"]["e2e_ms"][q]
                    if _finite(b) and _finite(c):
                        checks.append(_latency_check(f"{where} segment e2e {q}", b, c, threshold, floor_ms))
            if level["mode"] == "closed":
                b, c = float(base["throughput_rps"]), float(level["throughput_rps"])
                checks.append(
                    Check(f"{where} throughput", b, c, c < b * (1 - threshold), f">= baseline x {1 - threshold:g}")
                )
            b, c = float(base["error_rate"]), float(level["error_rate"])
            checks.append(
                Check(f"{where} error rate", b, c, c > b + error_rate_slack, f"<= baseline + {error_rate_slack:g}")
            )
    return checks


TAIL_P99_MIN_REQUESTS = 1000


def _tail(base: Mapping[str, Any], level: Mapping[str, Any]) -> str:
    enough = min(int(base.get("requests", 0)), int(level.get("requests", 0))) >= TAIL_P99_MIN_REQUESTS
    return "p99" if enough else "p90"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


# -- Markdown --------------------------------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return f"{value:.1f}" if _finite(value) else "-"


def stage_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per-stage breakdown from the stack's trace files (``loadtest.traces``): cascade stages, then gRPC methods."""
    if not rows:
        return []
    lines = [
        "",
        "Per stage, from the traces the stack's processes wrote during this scenario (all its levels): a cascade "
        "stage's queue is from the publish to the start of handling; process is the handler's span. A streaming "
        "RPC's span lasts the whole stream.",
        "",
        "| stage | kind | service | spans | queue p50 ms | queue p95 ms | process p50 ms | process p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        queue = row.get("queue_ms") or {}
        proc = row["process_ms"]
        lines.append(
            f"| {row['stage']} | {row['kind']} | {row['service']} | {row['spans']} | {_ms(queue.get('p50'))} | "
            f"{_ms(queue.get('p95'))} | {_ms(proc['p50'])} | {_ms(proc['p95'])} |"
        )
    return lines


def markdown(summary: Mapping[str, Any], checks: Sequence[Check] | None = None) -> str:
    lines = ["# Load test report", ""]
    machine = summary.get("machine", {})
    lines += [
        f"Profile `{summary.get('profile')}`, {summary.get('duration_s', 0):.0f} s, "
        f"{machine.get('cpus')} CPUs, load average before {machine.get('load_average_before')} / "
        f"after {machine.get('load_average_after')}. Traffic to loopback only.",
        "",
        "## Service overhead over direct Triton (unary)",
        "",
    ]
    ov = summary.get("overhead") or {}
    if ov:
        lines += [
            ov.get("definition", ""),
            "",
            "| path | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for name, d in ov.get("latency_ms", {}).items():
            lines.append(f"| {name} | {_ms(d['p50'])} | {_ms(d['p90'])} | {_ms(d['p99'])} | {_ms(d['max'])} |")
        lines += [
            "",
            f"**overhead p50 {_ms(summary.get('overhead_p50_ms'))} ms, p99 {_ms(summary.get('overhead_p99_ms'))} ms** "
            f"(goal: <= 1 ms p50; ratio p50 service/direct {ov.get('ratio_p50', math.nan):.2f}). "
            f"Service-reported phases (median ms): "
            + ", ".join(f"{k} {_ms(v)}" for k, v in (ov.get("phases_p50_ms") or {}).items()),
            "",
        ]
        lib = ov.get("library_add_sub") or {}
        if lib:
            lines += [
                f"Triton client layer alone (add_sub, `tessera.runtime.inference` minus `tritonclient`): p50 "
                f"{lib['runtime_minus_direct_p50_ms']:.3f} ms, p99 {lib['runtime_minus_direct_p99_ms']:.3f} ms.",
                "",
            ]
    for name, scen in (summary.get("scenarios") or {}).items():
        lines += [f"## {name}", "", scen.get("description", ""), ""]
        if scen.get("error"):
            lines += [f"**FAILED**: {scen['error']}", ""]
            continue
        lines += [
            "| level | requests | ok/s | err % | codes | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in scen.get("levels", []):
            lat = lv["latency_ms"]
            codes = ", ".join(f"{k}: {v}" for k, v in lv["status_codes"].items())
            lines.append(
                f"| {lv['label']} | {lv['requests']} | {lv['throughput_rps']:.2f} | {lv['error_rate'] * 100:.1f} | "
                f"{codes} | {_ms(lat['p50'])} | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {_ms(lat['max'])} |"
            )
        segs = [lv for lv in scen.get("levels", []) if "segments" in lv]
        if segs:
            lines += [
                "",
                "Per segment and listener language: end of speech to first synthesised audio (client clock, from "
                "the schedule) and the gateway's LatencyBreakdown (mean ms).",
                "",
                "| level | segments | e2e p50 | e2e p90 | e2e p95 | e2e p99 | e2e max | asr | mt | tts | queue |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for lv in segs:
                s = lv["segments"]
                e = s["e2e_ms"]
                st = s["stages_ms"]
                lines.append(
                    f"| {lv['label']} | {s['count']} | {_ms(e['p50'])} | {_ms(e['p90'])} | {_ms(e['p95'])} | "
                    f"{_ms(e['p99'])} | {_ms(e['max'])} | " + " | ".join(_ms(st[k]["mean"]) for k in STAGES) + " |"
                )
        lines += stage_table(scen.get("stages_from_traces") or [])
        lines.append("")
    stations = summary.get("validation") or {}
    if stations:
        lines += ["## Planner validation: predicted vs measured p95", ""]
        first = next(iter(stations.values()))
        lines += [first.get("method", ""), ""]
    for name, val in stations.items():
        lines += [
            f"### {name}: c = {val['servers']} servers, service mean {_ms(val['service_mean_ms'])} ms "
            f"(scv {val['service_scv']:.2f}; p95 {_ms(val['service_p95_ms'])} ms log-normal, "
            f"{_ms(val.get('service_p95_measured_ms'))} ms measured) from {val.get('service_profile_from')}, "
            f"servers from {val.get('servers_from', 'the fit')}, saturation {val['max_throughput_rps']:.1f}/s",
            "",
            "| arrivals/s | utilisation | predicted p95 ms | measured p95 ms | error | service mean at this load ms "
            "| predicted from it ms | error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in val.get("points", []):
            same = p.get("same_load_rel_error")
            lines.append(
                f"| {p['rate_per_s']:.1f} | {p['utilisation']:.2f} | {_ms(p['predicted_p95_ms'])} | "
                f"{_ms(p['measured_p95_ms'])} | {p['rel_error'] * 100:+.1f}% | "
                f"{_ms(p.get('same_load_service_mean_ms'))} | {_ms(p.get('same_load_predicted_p95_ms'))} | "
                + (f"{same * 100:+.1f}% |" if same is not None and _finite(same) else "- |")
            )
        lines.append("")
    if stations:
        same_worst = max(
            (v.get("same_load_max_abs_rel_error", math.nan) for v in stations.values()),
            key=lambda x: x if _finite(x) else -1.0,
            default=math.nan,
        )
        lines += [
            f"**planner_p95_rel_error {summary.get('planner_p95_rel_error', math.nan):.3f}** (worst |error| over every "
            "point of every station; goal 0.25). The right-hand columns re-run the same M/G/c with the service time "
            "recovered from each point's own run: their worst |error|, "
            f"{same_worst:.3f}, is mostly the queueing model's; the difference is the profile's (service time that "
            "changes with load on these CPU models). Under heavier load Triton batches queued requests, which the "
            "recursion (one request at a time) cannot see, so those columns are a diagnostic, not a second goal.",
            "",
        ]
    if checks is not None:
        bad = [c for c in checks if c.regressed]
        lines += ["## Against the baseline", ""]
        if not checks:
            lines.append("No baseline to compare with.")
        else:
            lines.append(f"{len(checks)} checks, {len(bad)} regressed.")
            if bad:
                lines += ["", "| metric | baseline | now | rule |", "|---|---|---|---|"]
                lines += [f"| {c.metric} | {c.baseline:.3g} | {c.current:.3g} | {c.rule} |" for c in bad]
        lines.append("")
    return "\n".join(lines)


# -- plot ------------------------------------------------------------------------------------------------------------


def plot(summary: Mapping[str, Any], path: Path) -> None:
    """Latency (p50/p99 and segment e2e) against achieved throughput per scenario, and the planner validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list((summary.get("scenarios") or {}).items())
    stations = [v for v in (summary.get("validation") or {}).values() if v.get("points")]
    rows = 2 if stations else 1
    cols = max(1, len(scenarios), len(stations))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for row, used in ((0, len(scenarios)), (rows - 1, len(stations) if stations else len(scenarios))):
        for ax in axes[row][used:]:
            ax.set_visible(False)
    for ax, (name, scen) in zip(axes[0], scenarios, strict=False):
        utterance_s = float((scen.get("conference") or {}).get("utterance_s") or 0)
        for mode, marker in (("closed", "o"), ("open", "s")):
            levels = [lv for lv in scen.get("levels", []) if lv["mode"] == mode and lv["ok"]]
            if not levels:
                continue
            x = [lv["throughput_rps"] * (utterance_s or 1.0) for lv in levels]
            if all("segments" in lv for lv in levels):
                for q, style in (("p50", "-"), ("p95", "--")):
                    y = [lv["segments"]["e2e_ms"][q] for lv in levels]
                    ax.plot(x, y, style, marker=marker, label=f"{mode} loop, segment e2e {q}")
            else:
                for q, style in (("p50", "-"), ("p99", "--")):
                    ax.plot(x, [lv["latency_ms"][q] for lv in levels], style, marker=marker, label=f"{mode} {q}")
        ax.set_title(name)
        ax.set_xlabel(
            "conferences speaking (utterances/s x utterance length)" if utterance_s else "throughput (requests/s)"
        )
        lows = [line.get_ydata().min() for line in ax.get_lines()]
        highs = [line.get_ydata().max() for line in ax.get_lines()]
        if lows and min(lows) > 0 and max(highs) / min(lows) > 20:
            ax.set_yscale("log")
        ax.set_ylabel("latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, val in zip(axes[rows - 1], stations, strict=False):
        pts = val["points"]
        x = [p["rate_per_s"] for p in pts]
        ax.plot(x, [p["measured_p95_ms"] for p in pts], "o-", label="measured p95")
        ax.plot(x, [p["predicted_p95_ms"] for p in pts], "s--", label=f"planner p95 (M/G/{val['servers']})")
        if val.get("curve"):
            cx = [c["rate_per_s"] for c in val["curve"]]
            ax.plot(cx, [c["predicted_p95_ms"] for c in val["curve"]], ":", color="gray", label="planner curve")
        ax.set_title(f"planner validation: {val.get('scenario', '')} (open loop)")
        ax.set_xlabel("arrivals/s")
        ax.set_ylabel("p95 latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
