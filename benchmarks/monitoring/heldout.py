"""Room monitoring on held-out long recordings: precision, recall, F1 and false alarms per hour per policy.

The set (``tessera.monitoring.heldout``) shares no room, person, sound file, generator or level range with the
training scenarios. Each clip is minutes long, written as an MKV (MJPEG at 5 fps + PCM16 16 kHz, as a camera
would upload it) under ``build/monitoring-heldout/``, decoded back as AnalyzeClip decodes it, and every frame and
audio window goes through the real yolov3-tiny and YAMNet in this process (the code the Triton models run). Those
detections are cached; the learned score is recomputed with the current ``av_fusion`` weights on every run, and the
four policies replay the same evidence through the reference rules exactly as a live room does.

Usage::

    .venv/bin/python benchmarks/monitoring/heldout.py            # -> benchmarks/results/monitoring.{json,md}
    .venv/bin/python benchmarks/monitoring/heldout.py --quick    # 3 clips of 60 s, printed only
    .venv/bin/python benchmarks/monitoring/heldout.py --weights DIR --no-write   # other av_fusion weights
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tessera.monitoring import analysis, fusion_net, heldout, scenarios
from tessera.monitoring.evidence import AudioObs, Box, FrameObs
from tessera.monitoring.fusion import AlertDecision, Policy
from tessera.monitoring.training import LocalModels

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "build" / "monitoring-heldout"
OPENCV_DOC = ROOT / "build" / "media" / "opencv-doc"
POLICIES = ("fusion", "rules_only", "audio_only", "video_only")
VERSION = 1  # bump when the evidence recipe changes
DAY_MS = 86_400_000
EPOCH_DAY = 20_454 * DAY_MS  # a fixed day: 2026-01-01 UTC, so the rules' time of day is reproducible
GOAL_F1, GOAL_FA_PER_HOUR = 0.9, 2.0
SECTION = "## Held-out long recordings"


def write_mkv(media: heldout.LongClipMedia, path: Path) -> None:
    """MJPEG at the clip's 5 fps and PCM16 16 kHz mono (the scenarios' writer)."""
    scenarios.write_av(media.frames, heldout.FPS, media.audio, path, heldout.FPS)


def save_evidence(path: Path, evidence: analysis.ClipEvidence, object_labels: list[str]) -> None:
    index = {name: i for i, name in enumerate(object_labels)}
    rows = [
        (i, index[b.class_name], b.score, b.x_min, b.y_min, b.x_max, b.y_max)
        for i, f in enumerate(evidence.frames)
        for b in f.boxes
    ]
    np.savez_compressed(
        path,
        frame_stats=np.asarray(
            [(f.timestamp_ms, f.luma_mean, f.luma_std, f.detail_energy, f.seq) for f in evidence.frames], np.float64
        ),
        boxes=np.asarray(rows, np.float64).reshape(-1, 7),
        audio_meta=np.asarray(
            [(a.start_ms, a.end_ms, a.loudness_dbfs, a.centroid_hz, a.seq) for a in evidence.audio], np.float64
        ),
        audio_scores=np.stack([a.scores for a in evidence.audio]).astype(np.float32),
        audio_embeddings=np.stack([a.embedding for a in evidence.audio]).astype(np.float32),
        duration_ms=np.asarray(evidence.duration_ms),
    )


def load_evidence(path: Path, object_labels: list[str]) -> analysis.ClipEvidence:
    data = dict(np.load(path))
    boxes: dict[int, list[Box]] = {}
    for i, cls, score, x0, y0, x1, y1 in data["boxes"]:
        boxes.setdefault(int(i), []).append(Box(object_labels[int(cls)], float(score), x0, y0, x1, y1))
    frames = [
        FrameObs(int(t), tuple(boxes.get(i, ())), float(m), float(s), float(d), int(q))
        for i, (t, m, s, d, q) in enumerate(data["frame_stats"])
    ]
    scores, embeddings = data["audio_scores"], data["audio_embeddings"]  # an npz decompresses on every access
    audio = [
        AudioObs(int(s), int(e), scores[i].copy(), embeddings[i].copy(), float(ld), float(c), int(q))
        for i, (s, e, ld, c, q) in enumerate(data["audio_meta"])
    ]
    evidence = analysis.ClipEvidence(frames, audio, int(data["duration_ms"]))
    evidence.contexts = analysis.schedule(frames, audio)
    return evidence


def event_from_json(entry: dict[str, Any]) -> heldout.Event:
    return heldout.Event(**entry)


async def evidence_set(
    models: LocalModels, args: argparse.Namespace
) -> list[tuple[heldout.LongClip, analysis.ClipEvidence]]:
    """The clips and their detections, from the cache when its key matches (generated and analysed otherwise)."""
    params = {
        "clips": args.clips,
        "duration_s": args.duration,
        "seed": args.seed,
        "version": VERSION,
        "media_version": heldout.VERSION,
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = args.cache / key
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        out = []
        for entry in manifest["clips"]:
            clip = heldout.LongClip(
                **{k: v for k, v in entry.items() if k not in ("events", "file", "evidence")},
                events=tuple(event_from_json(e) for e in entry["events"]),
            )
            out.append((clip, load_evidence(folder / entry["evidence"], models.object_labels)))
        print(f"{len(out)} held-out clips from the cache {folder}", flush=True)
        return out
    began = time.perf_counter()
    media_set = heldout.generate(OPENCV_DOC, args.cache, clips=args.clips, duration_s=args.duration, seed=args.seed)
    print(f"generated {len(media_set)} clips in {time.perf_counter() - began:.0f} s", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    out, entries = [], []
    for media in media_set:
        path = folder / f"{media.clip.name}.mkv"
        write_mkv(media, path)
        del media.frames[:]
        frames, audio, duration_ms = analysis.decode_video(path, heldout.FPS, max_duration_s=3600)
        evidence = await analysis.gather_evidence(models, analysis.ClipMedia(frames, audio, duration_ms))
        save_evidence(folder / f"{media.clip.name}.npz", evidence, models.object_labels)
        out.append((media.clip, evidence))
        entries.append(
            {
                **{k: getattr(media.clip, k) for k in ("name", "room", "night", "start_minute", "duration_ms")},
                "events": [e.__dict__ for e in media.clip.events],
                "file": path.name,
                "evidence": f"{media.clip.name}.npz",
            }
        )
        print(
            f"  {media.clip.name}: {duration_ms / 1000:.0f} s, {len(media.clip.anomalies)} anomalies, "
            f"{len(media.clip.benign)} benign events ({time.perf_counter() - began:.0f} s, "
            f"{models.detector_calls} detector frames)",
            flush=True,
        )
    manifest_path.write_text(json.dumps({"key": key, "params": params, "clips": entries}, indent=1))
    return out


def raised(decisions: list[AlertDecision]) -> list[heldout.RaisedAlert]:
    return [
        heldout.RaisedAlert(d.event_time_ms, tuple(c.event_time_ms for c in d.findings), d.rule_id) for d in decisions
    ]


async def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    torch.set_num_threads(1)
    weights = args.weights / "av_fusion.pt"
    provenance = json.loads((args.weights / "av_fusion.json").read_text())
    net = fusion_net.load(str(weights), provenance.get("config"))
    models = LocalModels(fusion=net)
    clips = await evidence_set(models, args)
    rules = scenarios.reference_rules()
    outcomes: dict[str, list[tuple[heldout.LongClip, list[heldout.RaisedAlert]]]] = {p: [] for p in POLICIES}
    per_clip = []
    for clip, evidence in clips:
        evidence.scores = await analysis.fuse_scores(models, evidence.contexts)
        row: dict[str, Any] = {"clip": clip.name, "anomalies": [e.kind for e in clip.anomalies]}
        for name in POLICIES:
            decisions = analysis.replay(
                evidence,
                rules=rules,
                policy=Policy(name),
                room_id=clip.room,
                start_unix_ms=EPOCH_DAY + clip.start_minute * 60_000,
                sound_labels=models.sound_labels,
            )
            outcomes[name].append((clip, raised(decisions)))
            row[name] = [(d.rule_id, d.event_time_ms, [c.rule_id for c in d.findings]) for d in decisions]
        per_clip.append(row)
        print(f"  {clip.name}: anomalies {row['anomalies']} fusion {row['fusion']}", flush=True)
    result: dict[str, Any] = {name: heldout.score_clips(found) for name, found in outcomes.items()}
    fusion = result["fusion"]
    singles = max(result["audio_only"]["f1"], result["video_only"]["f1"])
    goals = {
        "f1_at_least_0.9": fusion["f1"] >= GOAL_F1,
        "at_most_2_false_alarms_per_hour": fusion["false_alarms_per_hour"] <= GOAL_FA_PER_HOUR,
        "fusion_beats_each_single_modality": fusion["f1"] > singles,
    }
    all_events = [e for clip, _ in clips for e in clip.events]
    return {
        **result,
        "set": {
            "clips": len(clips),
            "minutes": round(sum(c.duration_ms for c, _ in clips) / 60_000, 1),
            "anomalies": sum(1 for e in all_events if e.anomaly),
            "benign_events": sum(1 for e in all_events if not e.anomaly),
            "clips_with_several_anomalies": sum(1 for c, _ in clips if len(c.anomalies) > 1),
            "night_clips": sum(1 for c, _ in clips if c.night),
            "seed": args.seed,
            "sources": {k: sorted(v) for k, v in heldout.heldout_sources().items()},
        },
        "weights": {"key": provenance.get("key"), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16]},
        "goals": goals,
        "verdict": "Met: "
        + (", ".join(k for k, v in goals.items() if v) or "none")
        + ". Not met: "
        + (", ".join(k for k, v in goals.items() if not v) or "none")
        + ".",
        "per_clip": per_clip,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 1),
    }


def markdown(h: dict[str, Any]) -> str:
    s = h["set"]
    lines = [
        SECTION,
        "",
        f"{s['clips']} recordings, {s['minutes']} minutes in all ({s['night_clips']} at night), from sources the "
        "training scenarios never use (other rooms, people, speakers, sounds, generators and levels: "
        "`tessera.monitoring.heldout`): "
        f"{s['benign_events']} benign events (visitors by day, conversation, phones, tones, doorbells, device sounds) "
        f"and {s['anomalies']} anomalies ({s['clips_with_several_anomalies']} recordings hold two). Same real "
        "detections for every policy (yolov3-tiny, YAMNet in process), the current av_fusion weights, the reference "
        f"rules. An alert is correct when its time lies in [onset - {heldout.EARLY_MS} ms, end + {heldout.LATE_MS} ms] "
        "of an anomaly; an anomaly counts as raised when an alert or a finding merged into one (a published "
        "revision) lies there; every other alert is a false alarm. "
        f"`make bench-monitoring-heldout` ({h['seconds']} s with cached detections).",
        "",
        "| policy | precision | recall | F1 | false alarms / hour | alerts | false alarms | false alarms by cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in POLICIES:
        q = h[name]
        bold = "**" if name == "fusion" else ""
        causes = ", ".join(f"{k} {v}" for k, v in q["false_alarms_by_cause"].items()) or "-"
        lines.append(
            f"| {bold}{name}{bold} | {q['precision']:.3f} | {q['recall']:.3f} | {bold}{q['f1']:.3f}{bold} | "
            f"{bold}{q['false_alarms_per_hour']}{bold} | {q['alerts']} | {q['false_alarms']} | {causes} |"
        )
    if "before" in h:
        b = h["before"]
        lines += [
            "",
            f"Before this set's changes ({b['what']}):",
            "",
            "| policy | precision | recall | F1 | false alarms / hour |",
            "|---|---|---|---|---|",
        ]
        for name in POLICIES:
            q = b[name]
            lines.append(
                f"| {name} | {q['precision']:.3f} | {q['recall']:.3f} | {q['f1']:.3f} | {q['false_alarms_per_hour']} |"
            )
    lines += ["", "Anomalies raised per kind:", "", "| kind | events | " + " | ".join(POLICIES) + " |"]
    lines.append("|---|---|" + "---|" * len(POLICIES))
    for kind, entry in h["fusion"]["by_anomaly_kind"].items():
        cells = [str(h[name]["by_anomaly_kind"].get(kind, {}).get("detected", 0)) for name in POLICIES]
        lines.append(f"| {kind} | {entry['events']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Goals on this set: F1 >= {GOAL_F1}, <= {GOAL_FA_PER_HOUR:g} false alarms per hour, fusion above each single "
        f"modality. {h['verdict']}",
        "",
    ]
    return "\n".join(lines)


def merge_into_results(h: dict[str, Any], out: Path) -> None:
    """``false_alarms_per_hour`` (fusion) at the top of monitoring.json and the whole report under ``heldout``;
    the Markdown section replaces an earlier one."""
    json_path, md_path = out / "monitoring.json", out / "monitoring.md"
    result = json.loads(json_path.read_text()) if json_path.exists() else {}
    result["false_alarms_per_hour"] = h["fusion"]["false_alarms_per_hour"]
    result["heldout"] = {k: v for k, v in h.items() if k != "per_clip"}  # per clip: --json
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    text = md_path.read_text() if md_path.exists() else "# Room monitoring\n"
    md_path.write_text(with_section(text, markdown(h)))


def with_section(text: str, section: str) -> str:
    """``text`` with its held-out section (up to the next level-2 heading) replaced by ``section``, or appended."""
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    nxt = text.find("\n## ", start + len(SECTION))
    return text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per clip")
    parser.add_argument("--seed", type=int, default=9173)
    parser.add_argument("--weights", type=Path, default=ROOT / "build" / "trained" / "av_fusion")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="3 clips of 60 s, nothing written to the results")
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    parser.add_argument("--json", type=Path, default=None, help="also write the held-out report here")
    parser.add_argument("--before", type=Path, default=None, help="a report (--json) of an earlier run to show beside")
    parser.add_argument("--before-what", default="the earlier run", help="what the earlier run was")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.duration, args.no_write = 3, 60.0, True
    if not (args.weights / "av_fusion.pt").exists():
        print(f"no av_fusion weights in {args.weights}: run `make models`", file=sys.stderr)
        return 2
    h = asyncio.run(evaluate(args))
    if args.before:  # figures of an earlier run (another model or decision), shown beside these
        before = json.loads(args.before.read_text())
        keep = ("precision", "recall", "f1", "false_alarms_per_hour", "alerts", "false_alarms")
        h["before"] = {name: {k: before[name][k] for k in keep} for name in POLICIES}
        h["before"]["what"] = args.before_what
        h["before"]["weights"] = before.get("weights")
    if args.json:
        args.json.write_text(json.dumps(h, indent=1) + "\n")
    print(markdown(h))
    if not args.no_write:
        merge_into_results(h, args.out)
        print(f"-> {args.out / 'monitoring.json'} (heldout, false_alarms_per_hour), {args.out / 'monitoring.md'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
