"""Statistics, the baseline comparison (it must be able to fail) and the reports."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from loadtest.engine import RunResult, Sample
from loadtest.report import compare, distribution, markdown, percentile, plot, summarize_run
from loadtest.run import cpu_profile, linear_fit


def _run(latencies_ms: list[float], statuses: list[str] | None = None, mode: str = "closed") -> RunResult:
    run = RunResult(mode, 2)
    t = 100.0
    for i, ms in enumerate(latencies_ms):
        status = statuses[i] if statuses else "OK"
        run.samples.append(Sample(t, t + 0.001, t + ms / 1000, status))
        t += 0.1
    run.started_s, run.ended_s = 100.0, t
    return run


def test_percentiles_interpolate_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    d = distribution([1.0, 2.0, 3.0])
    assert d["max"] == 3.0 and d["mean"] == 2.0 and d["count"] == 3


def test_summary_counts_errors_by_status_and_uses_scheduled_latency() -> None:
    run = _run([10.0] * 8 + [50.0, 50.0], ["OK"] * 7 + ["UNAVAILABLE", "DEADLINE_EXCEEDED", "OK"])
    level = summarize_run(run, "closed c=2")
    assert level["requests"] == 10 and level["ok"] == 8
    assert level["error_rate"] == pytest.approx(0.2)
    assert level["status_codes"] == {"DEADLINE_EXCEEDED": 1, "OK": 8, "UNAVAILABLE": 1}
    assert level["throughput_rps"] == pytest.approx(8 / 1.0)
    assert level["latency_ms"]["max"] == pytest.approx(50.0) and level["service_ms"]["max"] == pytest.approx(49.0)


def _summary(
    p50: float = 10.0,
    p99: float = 40.0,
    rps: float = 100.0,
    errors: float = 0.0,
    p90: float = 12.0,
    requests: int = 2000,
) -> dict[str, Any]:
    level = summarize_run(_run([p50] * 98 + [p99] * 2), "closed c=2")
    level["latency_ms"]["p50"], level["latency_ms"]["p90"], level["latency_ms"]["p99"] = p50, p90, p99
    level["requests"] = requests
    level["throughput_rps"], level["error_rate"] = rps, errors
    return {"overhead_p50_ms": 0.5, "scenarios": {"keyframes": {"levels": [level]}}}


def test_identical_runs_do_not_regress() -> None:
    checks = compare(_summary(), _summary())
    assert checks and not any(c.regressed for c in checks)
    assert {c.metric for c in checks} >= {"overhead_p50_ms", "keyframes/closed c=2 latency p50"}


@pytest.mark.parametrize(
    ("current", "metric"),
    [
        (_summary(p50=20.0), "keyframes/closed c=2 latency p50"),
        (_summary(p99=100.0), "keyframes/closed c=2 latency p99"),
        (_summary(rps=40.0), "keyframes/closed c=2 throughput"),
        (_summary(errors=0.05), "keyframes/closed c=2 error rate"),
    ],
)
def test_a_regression_past_the_threshold_is_flagged(current: dict[str, Any], metric: str) -> None:
    bad = [c.metric for c in compare(current, _summary(), threshold=0.5) if c.regressed]
    assert bad == [metric]


def test_the_tail_checked_is_the_one_the_sample_count_supports() -> None:
    few = compare(_summary(p99=400.0, requests=300), _summary(requests=300))
    assert not any(c.regressed for c in few)  # a p99 of 300 samples is not checked ...
    assert "keyframes/closed c=2 latency p90" in {c.metric for c in few}
    slow = compare(_summary(p90=40.0, requests=300), _summary(requests=300))
    assert [c.metric for c in slow if c.regressed] == ["keyframes/closed c=2 latency p90"]  # ... its p90 is
    opened = _summary(p90=40.0, p99=400.0)
    opened["scenarios"]["keyframes"]["levels"][0]["mode"] = "open"
    base = _summary()
    base["scenarios"]["keyframes"]["levels"][0]["mode"] = "open"
    assert not any(c.regressed for c in compare(opened, base))  # open-loop tails are reported, not gated


def test_small_absolute_changes_and_improvements_pass() -> None:
    base = _summary(p50=0.4, p99=1.0)
    noisy = _summary(p50=0.9, p99=1.9)  # more than +50%, but under the 1 ms floor
    assert not any(c.regressed for c in compare(noisy, base, threshold=0.5, floor_ms=1.0))
    assert not any(c.regressed for c in compare(_summary(p50=5.0, rps=300.0), _summary()))


def test_overhead_regression_and_missing_levels() -> None:
    worse = copy.deepcopy(_summary())
    worse["overhead_p50_ms"] = 3.0
    assert [c.metric for c in compare(worse, _summary()) if c.regressed] == ["overhead_p50_ms"]
    other = _summary()
    other["scenarios"]["keyframes"]["levels"][0]["label"] = "closed c=64"
    assert [c.metric for c in compare(other, _summary())] == ["overhead_p50_ms"]  # unmatched level: skipped


def test_markdown_and_plot(tmp_path: Path) -> None:
    summary = _summary()
    summary["scenarios"]["keyframes"]["levels"].append(
        summarize_run(_run([12.0] * 20, mode="open"), "open 0.5x") | {"load_fraction": 0.5}
    )
    summary["validation"] = {
        "keyframes": {
            "scenario": "keyframes",
            "method": "m",
            "servers": 2,
            "service_mean_ms": 9.0,
            "service_scv": 0.2,
            "service_p95_ms": 10.0,
            "max_throughput_rps": 100.0,
            "points": [
                {"rate_per_s": 5.0, "utilisation": 0.5, "predicted_p95_ms": 11, "measured_p95_ms": 10, "rel_error": 0.1}
            ],
        }
    }
    summary["planner_p95_rel_error"] = 0.1
    text = markdown(summary, compare(summary, summary))
    assert "| closed c=2 |" in text and "| open 0.5x |" in text and "+10.0%" in text and "0 regressed" in text
    pytest.importorskip("matplotlib")
    plot(summary, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_linear_fit_and_cpu_profile() -> None:
    fixed, per_unit = linear_fit([(1.0, 150.0), (2.0, 250.0), (4.0, 450.0)])
    assert fixed == pytest.approx(50.0) and per_unit == pytest.approx(100.0)
    assert linear_fit([(1.0, 300.0), (2.0, 100.0)]) == pytest.approx((200.0, 0.0))
    seg = {"asr_ms": 150.0, "mt_ms": 5.0, "tts_ms": 20.0, "segment_s": 1.0, "tokens": 4.0}
    segs = [seg, seg | {"asr_ms": 250.0, "segment_s": 2.0, "tokens": 8.0, "mt_ms": 9.0}]
    scenarios = {
        "translation": {
            "levels": [{"_segments": segs}],
            "conference": {"languages": ["en", "es"], "participants": 3},
            "cpu_s_by_process": {"translation": 2.0},
            "speech_s_sent": 20.0,
        }
    }
    out = cpu_profile(scenarios, {})
    asr = out["models"]["asr"]["profiles"]["cpu"]
    assert asr["per_unit_ms"] == pytest.approx(100.0) and asr["fixed_ms"] == pytest.approx(50.0)
    assert asr["source"].startswith("measured")
    assert out["cpu_costs"]["gateway_ms_per_speech_s"]["value"] == pytest.approx(100.0)


def test_cpu_profile_of_triage() -> None:
    captioner = [{"images": 1.0, "ms": 15.0}, {"images": 4.0, "ms": 45.0}] * 3  # 5 ms + 10 ms per image
    scenarios = {
        "triage": {
            "levels": [],
            "request": {"images_per_request": 2, "images": "5 synthetic fundus photographs"},
            "cpu_s_by_process": {"triage": 2.4, "triton": 9.0},
            "requests": 100,
            "decode_ms_per_image": 4.0,
            "direct_triton": {
                "triage_captioner": captioner,
                "triage_reasoner": [{"assessments": 1.0, "ms": 5.0}] * 4,
            },
        }
    }
    out = cpu_profile(scenarios, {})
    cap = out["models"]["triage_captioner"]
    assert cap["unit"] == "images" and cap["profiles"]["cpu"]["measured"]
    assert cap["profiles"]["cpu"]["fixed_ms"] == pytest.approx(5.0)
    assert cap["profiles"]["cpu"]["per_unit_ms"] == pytest.approx(10.0)
    assert cap["profiles"]["cpu"]["scv"] == pytest.approx(0.0, abs=1e-12)
    reasoner = out["models"]["triage_reasoner"]["profiles"]["cpu"]
    assert reasoner["per_unit_ms"] == pytest.approx(5.0) and reasoner["fixed_ms"] == 0.0
    costs = out["cpu_costs"]
    assert costs["triage_decode_ms_per_image"]["value"] == pytest.approx(4.0)
    # 2.4 CPU-s of the service over 100 assessments = 24 ms each, less 2 images x 4 ms of decode
    assert costs["triage_ms_per_assessment"]["value"] == pytest.approx(16.0)
    assert all(c["source"].startswith("measured") for c in costs.values())


def test_open_levels_from_fractions_and_from_cameras() -> None:
    from loadtest.run import open_levels

    levels = open_levels({"load_fractions": [0.5], "cameras": [1, 4]}, {"fps": 5}, capacity=40.0)
    assert levels == [("open 0.5x", 20.0, 0.5), ("open 1 cam x 5 fps", 5.0, 0.125), ("open 4 cam x 5 fps", 20.0, 0.5)]
    assert open_levels({"cameras": [2]}, {"fps": 5}, capacity=0.0) == [("open 2 cam x 5 fps", 10.0, None)]


def test_stage_table_lists_queue_and_processing() -> None:
    from loadtest.report import stage_table

    rows = [
        {
            "kind": "stage",
            "stage": "monitoring_detector",
            "service": "d",
            "spans": 9,
            "queue_ms": {"p50": 1.5, "p95": 4.0},
            "process_ms": {"p50": 40.0, "p95": 60.0},
        },
        {
            "kind": "rpc",
            "stage": "/x/Y",
            "service": "g",
            "spans": 2,
            "queue_ms": None,
            "process_ms": {"p50": 1.0, "p95": 2.0},
        },
    ]
    table = "\n".join(stage_table(rows))
    assert "| monitoring_detector | stage | d | 9 | 1.5 | 4.0 | 40.0 | 60.0 |" in table
    assert "| /x/Y | rpc | g | 2 | - | - | 1.0 | 2.0 |" in table
    assert stage_table([]) == []
