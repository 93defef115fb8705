"""The keyframe benchmark's Markdown report, from its results JSON alone (``run.py`` writes the timed part,
``replay.py`` adds the replay section); imports neither, so the two scripts do not import each other."""

from __future__ import annotations

from typing import Any

SCORERS = {
    "frame_relevance_open": "open vocabulary: MobileNetV2 ImageNet-1k classes and yolov3-tiny COCO-80 detections, "
    "each bridged to the query by MiniLM, the higher of the two",
    "frame_relevance": "detector: yolov3-tiny COCO-80 detections weighted by MiniLM query-class similarity",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    strategies: dict[str, Any] = result["strategies"]
    details: dict[str, Any] = result["strategy_details"]
    exhaustive = strategies.get("exhaustive_top_k")
    lines = [
        "# Keyframe selection benchmark",
        "",
        f"{result['videos']} videos ({', '.join(f'{m:g}' for m in cfg['durations_min'])} min, seed {cfg['seed']}), "
        f"{result['questions']} object-centred questions, k = {cfg['k']}, sampled at {cfg['fps']:g} fps, "
        f"thumbnails <= {cfg['max_side']} px, score batch {cfg['batch_size']}. "
        f"Model: `{cfg['model']}` ({SCORERS.get(cfg['model'], 'see its config.pbtxt')}) "
        f"on Triton, CPU ({result['machine']['cpu_count']} cores, {result['machine']['cpu']}). Every run is cold: no "
        "thumbnail cache, no per-frame detection cache. Wall = probe + decode + score + select, mean per question; "
        "CPU = CPU seconds of the benchmark process and the Triton process tree during the run (the machine is "
        f"shared: load average {result['machine']['loadavg_at_start'][0]:.1f} at start, "
        f"{result['machine']['loadavg_at_end'][0]:.1f} at end).",
        "",
        "| strategy | UKSS | KFR | SHR | BSR | BDS | scored | decoded / question | wall s / question "
        "| CPU s / question | UKSS vs exh. | speed-up vs exh. (wall) | (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in strategies.items():
        d = details[name]
        ukss_ratio = s["ukss"] / exhaustive["ukss"] if exhaustive and exhaustive["ukss"] > 0 else None
        speedup = exhaustive["wall_s"] / s["wall_s"] if exhaustive else None
        cpu_speedup = details["exhaustive_top_k"]["cpu_s"] / d["cpu_s"] if exhaustive and d["cpu_s"] > 0 else None
        lines.append(
            f"| {name} | {_fmt(s['ukss'])} | {_fmt(s['kfr'])} | {_fmt(s['shr'])} | {_fmt(s['bsr'])} | {_fmt(s['bds'])} "
            f"| {100 * s['frames_scored_fraction']:.2f} % | {d['frames_decoded_mean']:.0f} | {s['wall_s']:.2f} "
            f"| {d['cpu_s']:.2f} | {_fmt(ukss_ratio, 2)}x | {_fmt(speedup, 1)}x | {_fmt(cpu_speedup, 1)}x |"
        )
    lines += [
        "",
        "`focus` is the lean schedule (`FocusParams.lean()`, the service default: at most 5 % of the grid scored); "
        "`focus_published` is the paper's defaults (`FocusParams.published()`). UKSS is KFS-Bench's dataset score "
        "(geometric mean of per-question UKSS, each clipped at 0.01); KFR, SHR, BSR and BDS are arithmetic means.",
        "",
        "## Goals (30-60 min videos, 1 fps)",
        "",
        *_oracle_lines(result),
        "| schedule | scored <= 5 % | UKSS >= 0.9x exhaustive | speed-up >= 10x |",
        "|---|---|---|---|",
    ]
    for name, r in result.get("ratios", {}).items():
        checks = list(r["goals"].values())
        lines.append(
            f"| {name} | {100 * r['frames_scored_fraction']:.2f} % {'yes' if checks[0] else 'NO'} "
            f"| {_fmt(r['ukss_vs_exhaustive'], 3)}x {'yes' if checks[1] else 'NO'} "
            f"| {r['speedup_vs_exhaustive']:.1f}x {'yes' if checks[2] else 'NO'} "
            f"(per question: min {r['speedup_per_question_min']:.1f}x, "
            f"median {r['speedup_per_question_median']:.1f}x; in CPU time {_fmt(r['cpu_speedup_vs_exhaustive'], 1)}x) |"
        )
    for name, r in result.get("ratios", {}).items():
        v = r["visible_queries"]
        lines += [
            "",
            f"On the {len(v['questions'])} queries the model can see (exhaustive-run AUC >= {v['auc_threshold']}), "
            f"`{name}` UKSS is {_fmt(v['ukss'])} against exhaustive {_fmt(v['ukss_exhaustive'])} "
            f"({_fmt(v['ukss_vs_exhaustive'], 3)}x).",
        ]
    names = list(strategies)
    lines += [
        "",
        f"Questions: {cfg['questions_note']}.",
        "",
        "## Per question",
        "",
        "AUC: how well the model's scores over all frames (exhaustive run) separate ground-truth frames from the rest "
        "(0.5 = blind). Model classes: the COCO classes the query is weighted by (MiniLM softmax).",
        "",
        "| question | GT share | model classes | AUC | "
        + " | ".join(f"UKSS {n}" for n in names)
        + " | "
        + " | ".join(f"wall {n}" for n in names)
        + " |",
        "|---|---:|---|---:|" + "---:|" * (2 * len(names)),
    ]
    for q in result["per_question"]:
        diag = q.get("scores", {})
        classes = ", ".join(f"{c} {w:.2f}" for c, w in (q.get("model_classes") or []))
        cells = [f"{q['question_id']}: {q['question']}", f"{100 * diag.get('gt_frame_fraction', 0.0):.1f} %", classes]
        cells.append(_fmt(diag.get("auc"), 2))
        cells += [_fmt(q["strategies"][n]["ukss"], 3) for n in names]
        cells += [f"{q['strategies'][n]['wall_s']:.1f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Generated by `{cfg['command']}` on {result['generated_at']}.", ""]
    if "replay" in result:  # added by replay.py
        lines += [replay_markdown(result["replay"])]
    return "\n".join(lines)


def _oracle_lines(result: dict[str, Any]) -> list[str]:
    oracle = result.get("oracle")
    if not oracle:
        return []
    ratio = result.get("exhaustive_vs_oracle")
    return [
        "The scorer: exhaustive top-k (every frame scored) reaches UKSS "
        f"{_fmt(result['strategies']['exhaustive_top_k']['ukss'])} against the oracle's {_fmt(oracle['ukss'])} "
        f"({oracle['definition']}): **{_fmt(ratio, 3)}x** (goal >= 0.8x: "
        f"{'yes' if ratio is not None and ratio >= 0.8 else 'NO'}). The scorer's ROC AUC (GT frames vs the rest, "
        f"every frame), mean over questions: **{_fmt(result.get('scorer_auc_mean'), 3)}**; per question below.",
        "",
    ]


def replay_markdown(replay: dict[str, Any]) -> str:
    lines = [
        "## Replay on recorded scores (untimed diagnostics)",
        "",
        "The strategies re-run through `pipeline.select` on every frame's recorded score (the model is "
        f"deterministic; {replay['replay_matches_timed_run']} with the timed run). "
        f"Dataset UKSS over FOCUS seeds {replay['seeds'][0]}-{replay['seeds'][-1]} (the timed run used seed 0), "
        "on all queries and on the queries the model can see (exhaustive-run AUC >= "
        f"{replay.get('visible_queries', {}).get('auc_threshold', '-')}):",
        "",
        "| FOCUS | scored | UKSS mean over seeds | min-max | exhaustive UKSS | UKSS vs exhaustive (mean) "
        "| seeds >= 0.9x |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(name, "lean 5 %" if name == "focus" else "~40 %", s) for name, s in replay["focus_seeds"].items()]
    rows += [(f"lean, budget {b}", f"{100 * float(b):g} %", s) for b, s in replay["focus_lean_budgets"].items()]
    visible = replay.get("visible_queries", {})
    if visible.get("questions"):
        suffix = f" (visible: {len(visible['questions'])} queries)"
        rows += [(n + suffix, "lean 5 %" if n == "focus" else "~40 %", s) for n, s in visible["focus_seeds"].items()]
        rows += [
            (f"lean, budget {b}{suffix}", f"{100 * float(b):g} %", s) for b, s in visible["focus_lean_budgets"].items()
        ]
    for name, budget, s in rows:
        lo, hi = min(s["ukss_per_seed"]), max(s["ukss_per_seed"])
        lines.append(
            f"| {name} | {budget} | {s['ukss_mean']:.3f} | {lo:.3f}-{hi:.3f} | {s['exhaustive_ukss']:.3f} "
            f"| {_fmt(s['ukss_vs_exhaustive_mean'])}x | {s['seeds_reaching_0.9x']}/{len(s['ukss_per_seed'])} |"
        )
    scorers = replay.get("scorers", {})
    if len(scorers) > 1:
        names = list(scorers)
        lines += [
            "",
            "### Scorers on the same questions (replayed, untimed; FOCUS is the lean schedule, seed 0)",
            "",
            "| question | " + " | ".join(f"AUC {n} | UKSS exh. {n} | UKSS focus {n}" for n in names) + " |",
            "|---|" + "---:|" * (3 * len(names)),
        ]
        for qid in scorers[names[0]]["per_question"]:
            cells = []
            for n in names:
                q = scorers[n]["per_question"].get(qid, {})
                cells += [_fmt(q.get("auc"), 2), _fmt(q.get("ukss_exhaustive_top_k")), _fmt(q.get("ukss_focus"))]
            lines.append(f"| {qid} | " + " | ".join(cells) + " |")
        cells = []
        for n in names:
            s = scorers[n]
            cells += [
                f"**{_fmt(s['auc_mean'], 3)}**",
                f"**{_fmt(s['ukss_exhaustive_top_k'])}**",
                f"**{_fmt(s['ukss_focus'])}**",
            ]
        lines.append("| dataset (AUC: mean; UKSS: KFS-Bench score) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "GT scenes probed: ground-truth scenes with at least one scored frame (coarse pass / all, seed 0).",
        "",
        "| question | GT scenes | UKSS exh. | lean: probed coarse / all | lean UKSS seed 0 (mean over seeds) "
        "| published: probed coarse / all | published UKSS seed 0 (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for q in replay["per_question"]:
        lean, pub = q["focus"], q["focus_published"]
        lines.append(
            f"| {q['question_id']} | {q['gt_scenes']} | {q['exhaustive_top_k']['ukss']:.3f} "
            f"| {lean['gt_scenes_probed_by_coarse_seed0']} / {lean['gt_scenes_probed_seed0']} "
            f"| {lean['ukss_seed0']:.3f} ({lean['ukss_over_seeds']['mean']:.3f}) "
            f"| {pub['gt_scenes_probed_by_coarse_seed0']} / {pub['gt_scenes_probed_seed0']} "
            f"| {pub['ukss_seed0']:.3f} ({pub['ukss_over_seeds']['mean']:.3f}) |"
        )
    return "\n".join(lines) + "\n"
