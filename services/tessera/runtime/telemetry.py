"""Tracing, trace-context propagation and structured logs shared by servers and workers.

The W3C trace context travels in gRPC metadata (OpenTelemetry's gRPC instrumentation) and in NATS headers
(``inject_headers`` / ``extract_context``), so one trace follows a request across every hop. Finished spans leave
the process over OTLP/gRPC when the standard ``OTEL_*`` environment asks for it (``traces_exporters``), as the Helm
chart's pods do; ``shutdown_tracing`` sends what is still batched before the process exits.
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
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

log = logging.getLogger("tessera.telemetry")
_configured = False
_shut_down = False
# The span exporters setup_tracing knows by their OTEL_TRACES_EXPORTER names.
EXPORTERS = ("otlp", "console")
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


def traces_exporters(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the standard OpenTelemetry environment asks for, in the order named.

    The rule: ``OTEL_TRACES_EXPORTER`` decides when it is set (a comma-separated list; ``otlp``, ``console``;
    ``none`` or an empty list means none; other names are logged and ignored). When it is unset, OTLP is on exactly
    when an endpoint is configured (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``), so
    a process with no collector configured never tries to reach the SDK's default ``localhost:4317``.
    """
    env = os.environ if environ is None else environ
    named = env.get("OTEL_TRACES_EXPORTER")
    if named is None or not named.strip():
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint and endpoint.strip() else []
    wanted: list[str] = []
    for name in (part.strip().lower() for part in named.split(",")):
        if name in EXPORTERS and name not in wanted:
            wanted.append(name)
        elif name and name != "none" and name not in EXPORTERS:
            log.warning("OTEL_TRACES_EXPORTER names %r, which is not available; known: %s", name, ", ".join(EXPORTERS))
    return wanted


def otlp_processor() -> SpanProcessor:
    """Spans batched to an OTLP/gRPC collector; the exporter reads ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``,
    ``_INSECURE``, ``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``, ``_CERTIFICATE`` and the batching ``OTEL_BSP_*``
    variables itself (an ``http://`` endpoint is plaintext, ``https://`` TLS)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def _resource(service_name: str) -> Resource:
    """``service.name`` is ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``'s) when set, else ``service_name``;
    the other ``OTEL_RESOURCE_ATTRIBUTES`` (namespace...) are kept."""
    from_env = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    return Resource.create({SERVICE_NAME: str(from_env) if from_env else service_name})


def setup_tracing(
    service_name: str,
    exporter: str | None = None,
    processor: SpanProcessor | None = None,
    trace_dir: Path | None = None,
) -> None:
    """Install a tracer provider once per process.

    ``exporter`` names the span exporters as ``OTEL_TRACES_EXPORTER`` does ("otlp", "console", "none", or a
    comma-separated list); left out, the environment decides (``traces_exporters``: an OTLP endpoint or
    ``OTEL_TRACES_EXPORTER=otlp`` turns OTLP on). ``trace_dir`` adds a JSON-lines trace file per process
    (``trace_file_processor``); ``processor`` one more processor (tests). ``service_name`` is the default
    ``service.name``; ``OTEL_SERVICE_NAME`` overrides it.
    """
    global _configured
    if _configured:
        if processor is not None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, TracerProvider):
                provider.add_span_processor(processor)
        return
    wanted = traces_exporters() if exporter is None else traces_exporters({"OTEL_TRACES_EXPORTER": exporter})
    resource = _resource(service_name)
    provider = TracerProvider(resource=resource)
    if "otlp" in wanted:
        provider.add_span_processor(otlp_processor())
    if "console" in wanted:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if trace_dir is not None:
        provider.add_span_processor(trace_file_processor(trace_dir, str(resource.attributes[SERVICE_NAME])))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = True
    if wanted:
        log.info("tracing %s: exporting spans to %s", resource.attributes[SERVICE_NAME], ", ".join(wanted))


def shutdown_tracing() -> None:
    """Export every span still batched, then stop the exporters: the last step of a process (after the SIGTERM
    drain), so the spans of its final requests are not lost. Spans ended afterwards are dropped; calling it again,
    or without ``setup_tracing``, does nothing."""
    global _shut_down
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and not _shut_down:
        _shut_down = True
        provider.shutdown()  # each batch processor exports what it holds, bounded by OTEL_EXPORTER_OTLP_TIMEOUT


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
