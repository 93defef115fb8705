"""Per-stage breakdown of a cascade from the spans the stack's processes wrote (``TESSERA_TRACE_DIR``).

Every process of a load-test stack appends its finished spans to ``<trace_dir>/<service>-<pid>.jsonl``
(``tessera.runtime.telemetry.trace_file_processor``). A cascade stage is a JetStream consumer: each message it
handles is a CONSUMER span whose parent is the PRODUCER span of the publish that sent it (the trace context
travels in the message headers). So for every stage, from the traces alone:

- ``queue_ms``: from the start of the publish to the start of handling (transport, stream, waiting for a free
  worker slot: everything between two stages);
- ``process_ms``: the handler's own span (model calls included).

gRPC server spans (unary calls, or a whole stream for streaming RPCs) are listed by method with their duration.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def read_spans(trace_dir: Path) -> list[Record]:
    """Every span record under ``trace_dir``; a torn last line (a process killed mid-write) is skipped."""
    records: list[Record] = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and {"span_id", "start_ns", "end_ns", "kind"} <= record.keys():
                records.append(record)
    return records


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": _quantile(values, 0.5),
        "p95": _quantile(values, 0.95),
        "mean": math.fsum(values) / len(values) if values else math.nan,
    }


def stage_breakdown(records: Iterable[Record], window_ns: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """One row per stage (consumer group) and per gRPC method, over spans that started inside ``window_ns``.

    Rows are ordered by when their first span started, which for a cascade is its stage order.
    """
    spans = list(records)
    by_id = {r["span_id"]: r for r in spans}
    lo, hi = window_ns if window_ns else (-math.inf, math.inf)
    stages: dict[tuple[str, str], dict[str, Any]] = {}
    samples: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"queue": [], "process": []})
    for span in spans:
        if not lo <= span["start_ns"] <= hi or span["kind"] not in ("CONSUMER", "SERVER"):
            continue
        attributes = span.get("attributes") or {}
        if span["kind"] == "CONSUMER":
            key = ("stage", str(attributes.get("messaging.consumer.group.name") or span["name"]))
            parent = by_id.get(span.get("parent_id") or "")
            if parent is not None and parent["kind"] == "PRODUCER":
                samples[key]["queue"].append(max(0.0, (span["start_ns"] - parent["start_ns"]) / 1e6))
        else:
            key = ("rpc", str(span["name"]))
        row = stages.setdefault(
            key, {"kind": key[0], "stage": key[1], "service": span["service"], "first": span["start_ns"]}
        )
        row["first"] = min(row["first"], span["start_ns"])
        samples[key]["process"].append((span["end_ns"] - span["start_ns"]) / 1e6)
    rows = []
    for key, row in sorted(stages.items(), key=lambda item: item[1]["first"]):
        queue, process = samples[key]["queue"], samples[key]["process"]
        rows.append(
            {
                "kind": row["kind"],
                "stage": row["stage"],
                "service": row["service"],
                "spans": len(process),
                "queue_ms": _summary(queue) if queue else None,
                "process_ms": _summary(process),
            }
        )
    return rows
