"""OpenTelemetry traces (``tracing.enabled``), configured by the standard
``OTEL_*`` variables: one server span per request, named by its route template,
with MongoDB's and Redis's calls as its children.

Of Shoal's modules, only ``app.py`` imports this one, and only when tracing is
on: with tracing off, Shoal loads nothing of OpenTelemetry and adds no
middleware (docs/decisions/0026-opentelemetry.md).

- ``Tracing``, the extension: in each worker, as it starts serving, it installs
  the SDK's tracer provider (unless the process already has one) with the
  exporters ``OTEL_TRACES_EXPORTER`` names and the sampler of
  ``OTEL_TRACES_SAMPLER`` (for requests only: ``InRequests``), and the
  OpenTelemetry instrumentations of PyMongo (command monitoring) and redis-py;
  it flushes and stops them when the worker stops.
- ``TraceRequests``, the outermost ASGI middleware: continues the trace an
  incoming ``traceparent`` names (the propagators of ``OTEL_PROPAGATORS``),
  opens the request's span, and answers ``traceresponse`` (W3C Trace Context's
  draft of a response header: version, trace id, the span's id, flags). It
  names the span at the end, when the route template (``shoal.route`` in the
  ASGI scope, which the metrics use too) is known.
- ``TraceIdFilter``, a logging filter: the trace and span ids on every log line
  written while a span is current.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes
from quart import Quart

from ..config import ConfigError
from ..version import __version__
from .asgi import ASGIApp, Message, Receive, Scope, Send
from .metrics import KNOWN_METHODS, ROUTE_SCOPE_KEY, UNMATCHED
from .request_id import REQUEST_ID

EXTENSION_KEY = "shoal.tracing"
#: The answer header naming the request's trace and span (W3C Trace Context's
#: response header, an editor's draft): ``00-<trace id>-<span id>-<flags>``.
TRACE_RESPONSE = "traceresponse"
#: The exporters ``OTEL_TRACES_EXPORTER`` may name (comma-separated).
EXPORTERS = ("otlp", "console", "none")
#: The OTLP protocol of the exporter Shoal ships (``shoal[otel]``).
OTLP_PROTOCOL = "http/protobuf"
#: The service name when no variable gives one.
SERVICE = "shoal"


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for; a ConfigError for any Shoal
    cannot make (``OTEL_TRACES_EXPORTER`` defaults to ``otlp``, as the spec says)."""
    names = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    problems = [
        f"OTEL_TRACES_EXPORTER: {name!r} is not one of {', '.join(EXPORTERS)}"
        for name in names
        if name not in EXPORTERS
    ]
    if "otlp" in names:
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL
        )
        if protocol != OTLP_PROTOCOL:
            problems.append(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; Shoal exports "
                f"OTLP as {OTLP_PROTOCOL} (an OpenTelemetry Collector takes it)"
            )
    if problems:
        raise ConfigError("the environment", problems)
    return [name for name in names if name != "none"]


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION...
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _resource() -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, with Shoal's name and
    version where they say none."""
    detected = Resource.create()
    defaults: dict[str, str] = {}
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = SERVICE
    if SERVICE_VERSION not in detected.attributes:
        defaults[SERVICE_VERSION] = __version__
    return detected.merge(Resource(defaults))


class InRequests(Sampler):
    """``sampler``, for the spans of requests only: a MongoDB or Redis call
    made outside any request (index creation at start-up, a change stream's
    ``getMore``, a background task) would be a trace of its own, one per call."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"InRequests{{{self.sampler.get_description()}}}"


class Tracing:
    """The tracing of one app; ``init_app`` it before the extensions whose
    clients it instruments (storage, shared state), so that it starts first.

    The exporters are checked when it is made (a ConfigError, so `shoal serve`
    refuses to start); nothing runs until the app starts serving.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.exporters = exporter_names(env)
        #: The tracer of Shoal's own spans, once serving.
        self.tracer: trace.Tracer | None = None
        self._provider: TracerProvider | None = None
        self._owned = False

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.before_serving(self.start)
        app.after_serving(self.stop)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The request spans, as the app's outermost middleware."""
        return TraceRequests(app, self)

    async def start(self) -> None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            # The process has its own set up (an app that embeds Shoal, a test):
            # its exporters stay as they are.
            self._owned = False
        else:
            # Reads OTEL_TRACES_SAMPLER (_ARG), and OTEL_BSP_* in each processor.
            provider = TracerProvider(resource=_resource())
            # Before any tracer is made: each takes the provider's sampler.
            provider.sampler = InRequests(provider.sampler)
            for name in self.exporters:
                provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
            trace.set_tracer_provider(provider)
            self._owned = True
        self._provider = provider
        self.tracer = provider.get_tracer("shoal", __version__)
        # Process-wide, as each library's instrumentation works: PyMongo's
        # command listener applies to the clients made after it (storage opens
        # after this), redis-py's wrapper to every client.
        PymongoInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)

    async def stop(self) -> None:
        self.tracer = None
        PymongoInstrumentor().uninstrument()
        RedisInstrumentor().uninstrument()
        provider, self._provider = self._provider, None
        if provider is None:
            return
        # Exports what is left (at most the exporter's timeout), off the event loop.
        if self._owned:
            await asyncio.to_thread(provider.shutdown)
        else:
            await asyncio.to_thread(provider.force_flush)


#: The request headers a span reads: those of the propagators, the user agent.
Carrier = dict[bytes, list[bytes]]


class _HeaderGetter(Getter[Carrier]):
    """Request headers as the propagators read them."""

    def get(self, carrier: Carrier, key: str) -> list[str] | None:
        values = carrier.get(key.lower().encode("latin-1"))
        return [value.decode("latin-1") for value in values] if values else None

    def keys(self, carrier: Carrier) -> list[str]:
        return [name.decode("latin-1") for name in carrier]


_HEADERS = _HeaderGetter()
_USER_AGENT = b"user-agent"


def _read(headers: list[tuple[bytes, bytes]], names: frozenset[bytes]) -> Carrier:
    """The headers named ``names``, in one pass over the request's."""
    carrier: Carrier = {}
    for name, value in headers:
        if name in names:
            carrier.setdefault(name, []).append(value)
    return carrier


class TraceRequests:
    """ASGI middleware: one server span per HTTP request (see the module)."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        fields = propagate.get_global_textmap().fields  # OTEL_PROPAGATORS's headers
        self.read = frozenset({_USER_AGENT, *(name.lower().encode() for name in fields)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracing.tracer
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        carrier = _read(scope["headers"], self.read)
        parent = propagate.extract(carrier, getter=_HEADERS)
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "url.path": scope["path"],
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        client = scope.get("client")
        if client:
            attributes["network.peer.address"] = client[0]
        if _USER_AGENT in carrier:
            attributes["user_agent.original"] = carrier[_USER_AGENT][0].decode("latin-1")
        # Named by the method until the route is known (semantic conventions).
        name = "HTTP" if method == "_OTHER" else method
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        ids = span.get_span_context()
        answer_header = (
            TRACE_RESPONSE.encode(),
            f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}".encode(),
        )
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], answer_header]
            await send(message)

        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_traced)
        except Exception as error:
            span.record_exception(error)
            status = status or 500
            raise
        finally:
            context.detach(token)
            route = scope.get(ROUTE_SCOPE_KEY, UNMATCHED)
            if route != UNMATCHED:
                span.set_attribute("http.route", route)
                span.update_name(f"{name} {route}")
            request_id = scope.get(REQUEST_ID)
            if request_id is not None:
                span.set_attribute("shoal.request_id", request_id)
            if status:
                span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()


class TraceIdFilter(logging.Filter):
    """Stamp each record with the current trace and span ids (``trace_id``,
    ``span_id``: lowercase hex, as in ``traceparent``), when a span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = trace.get_current_span().get_span_context()
        if ids.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = f"{ids.trace_id:032x}"
            record.span_id = f"{ids.span_id:016x}"
        return True
