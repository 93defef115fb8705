"""Tracing, trace-context propagation and structured logs shared by servers and workers.

The W3C trace context travels in gRPC metadata (OpenTelemetry's gRPC instrumentation) and in NATS headers
(``inject_headers`` / ``extract_context``), so one trace follows a request across every hop.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False
# Span attributes worth keeping in a trace file: enough to name a stage and join a consumer to its producer.
_KEPT_ATTRIBUTES = ("messaging.destination.name", "messaging.consumer.group.name", "messaging.message.id", "rpc.method")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a flat JSON-ready dict (ids in hex, times in ns since the Unix epoch)."""
    ctx = span.get_span_context()
    attributes = span.attributes or {}
    return {
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "kind": span.kind.name,
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "parent_id": format(span.parent.span_id, "016x") if span.parent else "",
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: attributes[k] for k in _KEPT_ATTRIBUTES if k in attributes},
    }


def trace_file_processor(trace_dir: Path, service_name: str) -> SpanProcessor:
    """Finished spans appended as JSON lines to ``<trace_dir>/<service>-<pid>.jsonl`` (one file per process).

    For local analysis (the load test's per-stage breakdown) where no collector runs; batched off the hot path.
    """
    trace_dir.mkdir(parents=True, exist_ok=True)
    out = (trace_dir / f"{service_name}-{os.getpid()}.jsonl").open("a", encoding="utf-8")
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: json.dumps(span_record(span)) + "\n")
    return BatchSpanProcessor(exporter, schedule_delay_millis=1000)


def setup_tracing(
    service_name: str, exporter: str = "none", processor: SpanProcessor | None = None, trace_dir: Path | None = None
) -> None:
    """Install a tracer provider once per process; ``exporter`` is "none" or "console"; ``trace_dir`` adds a
    JSON-lines trace file per process (``trace_file_processor``)."""
    global _configured
    if _configured:
        if processor is not None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, TracerProvider):
                provider.add_span_processor(processor)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if trace_dir is not None:
        provider.add_span_processor(trace_file_processor(trace_dir, service_name))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as message headers (``traceparent``/``tracestate``)."""
    carrier: dict[str, str] = dict(headers or {})
    inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    return extract(dict(headers or {}))


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line, carrying the trace id of the span that was current when the record was made."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key.startswith("tessera_"):
                entry[key.removeprefix("tessera_")] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
