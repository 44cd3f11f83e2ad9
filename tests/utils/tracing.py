"""Spans kept in memory, for tests of tracing in this process.

OpenTelemetry allows one tracer provider per process; the first call sets it
(exporting each span as it ends, so a test reads them without waiting), and
Shoal's tracing, finding it there, uses it rather than making its own.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter: InMemorySpanExporter | None = None


def memory_spans() -> InMemorySpanExporter:
    """The process's in-memory exporter, emptied."""
    global _exporter
    if _exporter is None:
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider, "another tracer provider was set first"
        _exporter = exporter
    _exporter.clear()
    return _exporter


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)
