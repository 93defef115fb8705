"""benchmarks/results/translation.md from the result dict."""

from __future__ import annotations

from typing import Any


def _yes(met: object) -> str:
    if met is None:
        return "not measured in this mode"
    return "met" if met else "**missed**"


def markdown(r: dict[str, Any]) -> str:
    lat, rtf, cfg, goals = r["latency"], r["rtf_detail"], r["config"], r["goals"]
    lines = [
        "# Conference translation: latency, scaling with N, RTF",
        "",
        f"Mode `{cfg['mode']}`, generated {r['generated']} in {r['duration_s']:.0f} s on {r['machine']['cpus']} CPUs "
        f"({r['machine']['cpu_model']}), load average at the end {r['machine']['load_average_end']}. "
        "Real models on Triton (faster-whisper tiny.en int8, Apertium, Piper en_US / espeak-ng), real JetStream, "
        "gateway and workers as separate processes; speakers stream moonshine-voice recordings in real time.",
        "",
        "## Latency (3 languages: en speaker, es + ca listeners)",
        "",
        f"Recordings {', '.join(cfg['latency_clips'])}: {lat['segments']} segments, {lat['samples']} "
        "(segment, listener) samples. Latency = the listener's receipt of the first synthesised chunk minus the "
        "gateway's segment cut (end of speech).",
        "",
        "| | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| end of speech -> first audio at the listener | {lat['p50_ms']} | {lat['p95_ms']} |",
        f"| same, gateway's LatencyBreakdown.total_ms | {lat['gateway_total_p50_ms']} | "
        f"{lat['gateway_total_p95_ms']} |",
        f"| model compute on the path (ASR + MT + TTS) | {lat['model_path_p50_ms']} | {lat['model_path_p95_ms']} |",
        f"| model queueing (stage busy with earlier work) | {lat['model_wait_p50_ms']} | {lat['model_wait_p95_ms']} |",
        f"| **platform overhead** (total - model compute - model queueing) | {lat['overhead_p50_ms']} | "
        f"**{lat['overhead_p95_ms']}** |",
        f"| naive overhead (total - own ASR + MT + TTS) | {lat['naive_overhead_p50_ms']} | "
        f"{lat['naive_overhead_p95_ms']} |",
        f"| first listener per segment: total | {lat['first_listener_per_segment']['total_p50_ms']} | "
        f"{lat['first_listener_per_segment']['total_p95_ms']} |",
        f"| first listener per segment: platform overhead | {lat['first_listener_per_segment']['overhead_p50_ms']} | "
        f"{lat['first_listener_per_segment']['overhead_p95_ms']} |",
        "",
        "Stages (p50 / p95 ms): "
        + ", ".join(f"{k} {lat['stages_p50_ms'][k]} / {lat['stages_p95_ms'][k]}" for k in lat["stages_p50_ms"])
        + ". Platform overhead by hop (p50 / p95 ms): "
        + ", ".join(
            f"{k} {lat['overhead_by_hop_p50_ms'][k]} / {lat['overhead_by_hop_p95_ms'][k]}"
            for k in lat["overhead_by_hop_p50_ms"]
        )
        + ".",
        "",
        "## Scaling (3 languages, same recording for every N)",
        "",
        f"Recording {cfg['scaling_clip']} ({cfg['scaling_speech_s']} s). CPU = every platform process (nats-server, "
        "tritonserver + stubs, 3 workers, gateway) per second of speech streamed; the client process is excluded "
        "(its own column). Gated all-pairs: measured where marked m, else extrapolated from per-call costs (x). "
        "Continuous all-pairs: computed (c). Non-model CPU: gateway, workers, nats-server and tritonserver itself "
        "(what delivery to more listeners can grow); the rest is the model stubs. Latency: end of speech (cut) to "
        "the first chunk read by each es/ca listener; fan-out: the part after the gateway started delivering it "
        "(gateway queues, gRPC, and this one client process reading all N streams on the same 2 cores).",
        "",
        "| N | calls/seg | gated calls/seg | continuous calls/seg (c) | CPU s/speech s | gated CPU s/s | "
        "gated / cascade | continuous CPU s/s (c) | non-model CPU s/s | latency p50 / p95 ms | "
        "of which fan-out p50 / p95 ms | client CPU s/s | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["scaling"]:
        mark = "m" if row["gated_pairs_measured"] else "x"
        subset = row["gated_pairs_measured_segments"]
        if row["gated_pairs_measured"] and subset and subset.split(" of ")[0] != subset.split(" of ")[1]:
            mark += f", {subset} seg"
        lines.append(
            f"| {row['participants']} | {row['model_calls_per_segment']:g} | "
            f"{row['gated_pairs_model_calls_per_segment']:g} ({mark}) | "
            f"{row['continuous_pairs_model_calls_per_segment']:g} | {row['cpu_s_per_speech_s']:.3f} | "
            f"{row['gated_pairs_cpu_s_per_speech_s']:.2f} ({mark}) | {row['cpu_ratio_gated_over_cascade']:g}x | "
            f"{row['continuous_pairs_cpu_s_per_speech_s']:g} | {row['non_model_cpu_s_per_speech_s']:.3f} | "
            f"{row['latency_p50_ms']:.0f} / "
            f"{row['latency_p95_ms']:.0f} | {row['fanout_p50_ms']:.0f} / {row['fanout_p95_ms']:.0f} | "
            f"{row['client_cpu_s_per_speech_s']:.3f} | "
            f"{row['load_average_before'][0]} |"
        )
    lines += [
        "",
        "## Real-time factor",
        "",
        f"**RTF {r['rtf']}** (Triton model compute seconds per second of speech; by model: "
        + ", ".join(f"{m} {v}" for m, v in rtf["by_model"].items())
        + f"). Wall-clock RTF {rtf['wall']}; platform CPU {rtf['platform_cpu_s_per_speech_s']} s per speech s "
        f"= {rtf['platform_cpu_cores_used']} of the machine's cores. {rtf['how']}",
        "",
        "## Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
    ]
    for name, goal in goals.items():
        extra = {k: v for k, v in goal.items() if k not in ("measured", "met")}
        detail = f" ({', '.join(f'{k}: {v}' for k, v in extra.items())})" if extra else ""
        lines.append(f"| {name} | {goal['measured']}{detail} | {_yes(goal['met'])} |")
    if r.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in r["notes"]]]
    lines += [
        "",
        "Regenerate: `make bench-translation` (smoke: `.venv/bin/python benchmarks/translation/run.py --quick`)",
        "",
    ]
    return "\n".join(lines)
