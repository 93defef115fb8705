"""The per-stage breakdown from trace files: real OpenTelemetry spans written by the runtime's file processor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loadtest.traces import read_spans, stage_breakdown
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from tessera.runtime.telemetry import trace_file_processor


def _cascade(tmp_path: Path, service: str, queue_s: float, work_s: float, messages: int) -> None:
    """A producer publishes, a consumer (its child through the carried context) waits, then works."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    processor = trace_file_processor(tmp_path, service)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for i in range(messages):
        with tracer.start_as_current_span("Ingest", kind=SpanKind.SERVER):
            with tracer.start_as_current_span("publish x", kind=SpanKind.PRODUCER) as producer:
                context = trace.set_span_in_context(producer)
            time.sleep(queue_s)
            attrs = {"messaging.consumer.group.name": "demo_detector", "messaging.message.id": f"m{i}"}
            with tracer.start_as_current_span("sub.x", context=context, kind=SpanKind.CONSUMER, attributes=attrs):
                time.sleep(work_s)
    provider.shutdown()  # flushes the batch to the file


def test_stage_rows_measure_queue_and_processing_from_the_file(tmp_path: Path) -> None:
    _cascade(tmp_path, "tessera-demo", queue_s=0.02, work_s=0.01, messages=5)
    (tmp_path / "torn.jsonl").write_text('{"name": "half')  # a process killed mid-write
    records = read_spans(tmp_path)
    assert len(records) == 15
    rows = {row["stage"]: row for row in stage_breakdown(records)}
    stage = rows["demo_detector"]
    assert stage["kind"] == "stage" and stage["spans"] == 5
    assert 20 <= stage["queue_ms"]["p50"] < 1000  # at least the sleep between publish and handling
    assert 10 <= stage["process_ms"]["p50"] < 1000
    assert rows["Ingest"]["kind"] == "rpc" and rows["Ingest"]["queue_ms"] is None
    assert rows["Ingest"]["process_ms"]["p50"] >= 30
    assert list(rows) == ["Ingest", "demo_detector"]  # in order of first start


def test_window_keeps_only_spans_that_started_inside(tmp_path: Path) -> None:
    _cascade(tmp_path, "tessera-demo", queue_s=0.0, work_s=0.0, messages=3)
    records = read_spans(tmp_path)
    starts = sorted(r["start_ns"] for r in records if r["kind"] == "CONSUMER")
    rows = stage_breakdown(records, (starts[1], starts[2]))
    assert {r["stage"]: r["spans"] for r in rows}["demo_detector"] == 2
    assert stage_breakdown(records, (0, 1)) == []


@pytest.mark.parametrize("kind", ["INTERNAL", "CLIENT", "PRODUCER"])
def test_other_span_kinds_are_not_stages(kind: str) -> None:
    record = {"span_id": "a", "start_ns": 1, "end_ns": 2, "kind": kind, "name": "x", "service": "s"}
    assert stage_breakdown([record]) == []
