"""OpenTelemetry traces (``tracing.enabled``): HTTP in, spans out.

In this process, with the SDK's in-memory exporter: one server span per
request, named by its route template, MongoDB's and Redis's calls as its
children, a ``traceparent`` continued, the trace in ``traceresponse`` and in
log lines. Off, nothing of it is there, nor loaded. Then once with a real
OTLP/HTTP receiver process and a live `shoal serve`.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quart import Quart

from shoal.app import create_app
from shoal.config import ConfigError, get_settings, load_settings
from shoal.http.request_id import RequestIdFilter
from shoal.http.tracing import TraceIdFilter, TraceRequests
from shoal.logs import JsonFormatter
from shoal.system import free_port
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.live import live_example
from tests.utils.processes import wait_until
from tests.utils.settings import ROOT
from tests.utils.tracing import memory_spans, span_id, trace_id

#: A trace an upstream (nginx, a client) started: its id and its span's id.
UPSTREAM_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
UPSTREAM_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{UPSTREAM_TRACE:032x}-{UPSTREAM_SPAN:016x}-01"


@pytest.fixture
async def traced(
    settings_factory: SettingsFactory,
) -> AsyncIterator[tuple[Quart, InMemorySpanExporter]]:
    """A served app with tracing on, and the spans it ends."""
    spans = memory_spans()
    app = create_app(settings_factory(tracing={"enabled": True}))
    async with app.test_app():
        yield app, spans


def server_span(spans: InMemorySpanExporter) -> ReadableSpan:
    """The one server span among the finished spans."""
    found = [span for span in spans.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert len(found) == 1, [span.name for span in spans.get_finished_spans()]
    return found[0]


def children(spans: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        span
        for span in spans.get_finished_spans()
        if span.parent is not None and span.parent.span_id == span_id(parent)
    ]


def traceresponse(span: ReadableSpan) -> str:
    """``traceresponse`` for a span: its trace, its id, its flags (sampled: bit 0)."""
    assert span.context is not None
    flags = int(span.context.trace_flags)
    assert flags & 1
    return f"00-{trace_id(span):032x}-{span_id(span):016x}-{flags:02x}"


async def a_book(app: Quart) -> dict[str, Any]:
    editor = await editor_client(app)
    created = await editor.post("/books", json={"title": "Dune", "year": 1965})
    assert created.status_code == 201
    body: dict[str, Any] = await created.get_json()
    return body


async def test_a_request_is_one_server_span_with_its_calls_as_children(
    traced: tuple[Quart, InMemorySpanExporter],
) -> None:
    app, spans = traced
    book = await a_book(app)
    editor = await editor_client(app)
    spans.clear()

    answer = await editor.get(f"/books/{book['_id']}", headers={"User-Agent": "bookshop/1.0"})
    assert answer.status_code == 200

    server = server_span(spans)
    assert server.name == "GET /books/<item_id>"
    assert server.parent is None  # no traceparent: a trace of its own
    attributes = dict(server.attributes or {})
    assert attributes["http.route"] == "/books/<item_id>"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == f"/books/{book['_id']}"
    assert attributes["shoal.request_id"] == answer.headers["X-Request-ID"]
    assert attributes["user_agent.original"] == "bookshop/1.0"
    assert answer.headers["traceresponse"] == traceresponse(server)

    calls = children(spans, server)
    assert len(calls) == len(spans.get_finished_spans()) - 1  # every other span is its child
    assert {span.kind for span in calls} == {SpanKind.CLIENT}
    assert {trace_id(span) for span in calls} == {trace_id(server)}
    systems = {dict(span.attributes or {}).get("db.system") for span in calls}
    assert systems == {"mongodb", "redis"}
    database = get_settings(app).mongodb.database
    mongodb = [span for span in calls if dict(span.attributes or {})["db.system"] == "mongodb"]
    assert [span.name for span in mongodb] == [f"{database}.find"]


async def test_an_incoming_traceparent_is_continued(
    traced: tuple[Quart, InMemorySpanExporter],
) -> None:
    app, spans = traced
    book = await a_book(app)
    editor = await editor_client(app)
    spans.clear()

    answer = await editor.patch(
        f"/books/{book['_id']}",
        json={"year": 1966},
        headers={"If-Match": book["_etag"], "traceparent": TRACEPARENT},
    )
    assert answer.status_code == 200

    server = server_span(spans)
    assert server.name == "PATCH /books/<item_id>"
    assert trace_id(server) == UPSTREAM_TRACE
    assert server.parent is not None
    assert server.parent.span_id == UPSTREAM_SPAN
    assert server.parent.is_remote
    assert answer.headers["traceresponse"] == traceresponse(server)
    calls = children(spans, server)
    assert len(calls) == len(spans.get_finished_spans()) - 1
    assert {trace_id(span) for span in calls} == {UPSTREAM_TRACE}
    commands = {dict(span.attributes or {}).get("db.statement") for span in calls}
    assert "find" in commands  # read the current document, then write it on its ETag


async def test_a_log_line_inside_a_request_names_its_trace(
    traced: tuple[Quart, InMemorySpanExporter],
) -> None:
    app, spans = traced
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(TraceIdFilter())
    logger = logging.getLogger("shoal.test.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @app.get("/log-something")
    async def log_something() -> str:
        logger.info("inside")
        return "ok"

    try:
        answer = await app.test_client().get("/log-something", headers={"traceparent": TRACEPARENT})
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    assert answer.status_code == 200
    inside, outside = (json.loads(line) for line in lines)
    server = server_span(spans)
    assert inside["trace_id"] == f"{UPSTREAM_TRACE:032x}"
    assert inside["span_id"] == f"{span_id(server):016x}"
    assert inside["request_id"] == answer.headers["X-Request-ID"]
    assert "trace_id" not in outside


async def test_server_errors_mark_the_span_and_unmatched_paths_have_no_route(
    traced: tuple[Quart, InMemorySpanExporter],
) -> None:
    app, spans = traced

    @app.get("/fails")
    async def fails() -> str:
        raise RuntimeError("a bug")

    answer = await app.test_client().get("/fails")
    assert answer.status_code == 500
    failed = server_span(spans)
    assert failed.name == "GET /fails"
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "500"

    spans.clear()
    missing = await app.test_client().get("/no/such/path")
    assert missing.status_code == 404
    unmatched = server_span(spans)
    assert unmatched.name == "GET"  # no route template to name it by
    assert "http.route" not in (unmatched.attributes or {})
    assert unmatched.status.status_code == StatusCode.UNSET  # a 4xx is the client's


# --- off, and the switches ------------------------------------------------------------


def _stack(app: Quart) -> list[type[Any]]:
    layers: list[type[Any]] = []
    layer: Any = app.asgi_app
    while hasattr(layer, "app"):
        layers.append(type(layer))
        layer = layer.app
    return layers


async def test_tracing_is_off_by_default_and_then_adds_nothing(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory())
    assert TraceRequests not in _stack(app)
    async with app.test_app():
        answer = await app.test_client().get("/healthz", headers={"traceparent": TRACEPARENT})
    assert "traceresponse" not in answer.headers

    on = create_app(settings_factory(tracing={"enabled": True}))
    assert _stack(on)[0] is TraceRequests  # outermost


def test_off_it_loads_nothing_of_opentelemetry() -> None:
    """A process that builds the app and serves a request with tracing off
    loads no OpenTelemetry module but those redis-py loads by itself (when
    OpenTelemetry is installed, redis-py 8 imports its metrics API, and records
    nothing until told to); the test process has them all, so a child is asked."""
    script = """
import asyncio, sys

def loaded():
    return {name for name in sys.modules if name.startswith("opentelemetry")}

import redis
by_redis = loaded()
from shoal.app import create_app

async def main():
    app = create_app({"environment": "test", "secret_key": "x" * 32,
                      "mongodb": {"uri": "mongodb://127.0.0.1:1"}})
    answer = await app.test_client().get("/healthz")
    assert answer.status_code == 200
    print(sorted(loaded() - by_redis), "shoal.http.tracing" in sys.modules)

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] False"


def test_the_exporters_are_checked_when_the_app_is_made(
    settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(tracing={"enabled": True})
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: 'zipkin' is not one of"):
        create_app(settings)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="'grpc' is not supported"):
        create_app(settings)


def test_otel_sdk_disabled_turns_tracing_off() -> None:
    raw = {"environment": "test", "secret_key": "x" * 32, "tracing": {"enabled": True}}
    assert load_settings(raw, env={}).tracing.enabled
    assert not load_settings(raw, env={"OTEL_SDK_DISABLED": "true"}).tracing.enabled
    assert load_settings(
        {**raw, "tracing": {}}, env={"SHOAL_TRACING_ENABLED": "true"}
    ).tracing.enabled


# --- a live `shoal serve` and a real OTLP/HTTP receiver ---------------------------------

#: A hook module beside the config: a log line written inside the PATCH.
HOOKS = """
import logging

from shoal import shoal_hooks

logger = logging.getLogger("tracehooks")


def register(app):
    @shoal_hooks(app).on_updated("books")
    async def updated(updates, original):
        logger.warning("book %s updated", original["_id"])
"""


@contextmanager
def otlp_receiver(folder: Path) -> Iterator[tuple[str, Path]]:
    """The receiver process (tests/utils/otlp_receiver.py) on a loopback port:
    its endpoint and the file its spans land in; killed by its PID afterwards."""
    port = free_port()
    spans = folder / "spans.jsonl"
    with (folder / "receiver.log").open("wb") as log:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "tests.utils.otlp_receiver", str(port), str(spans)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_until(lambda: _listening(port) or receiver.poll() is not None, 30)
        assert receiver.poll() is None, (folder / "receiver.log").read_text()
        yield f"http://127.0.0.1:{port}", spans
    finally:
        receiver.kill()
        receiver.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def received(spans: Path, trace: int) -> list[dict[str, Any]]:
    if not spans.exists():
        return []
    lines = spans.read_text(encoding="utf-8").splitlines()
    return [span for span in map(json.loads, lines) if span["trace_id"] == f"{trace:032x}"]


def tree(spans: list[dict[str, Any]]) -> str:
    """The spans of one trace, each under its parent (a remote parent: at the top)."""
    ids = {span["span_id"] for span in spans}
    under: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else ""
        under.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in under.get(parent, []):
            lines.append(
                f"{'  ' * depth}{span['name']} [{span['kind']}, {span['scope']}] "
                f"span {span['span_id']}, parent {span['parent_span_id'] or '-'}"
            )
            walk(span["span_id"], depth + 1)

    walk("", 0)
    return "\n".join(lines)


def http(
    method: str, url: str, token: str, body: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return answer.status, answer.headers, json.loads(answer.read() or b"null")


def test_a_patch_reaches_an_otlp_receiver(tmp_path: Path, mongodb_uri: str, redis_url: str) -> None:
    """`shoal serve` with tracing on, exporting to a receiver on loopback: the
    PATCH's spans arrive there as one trace, continuing the caller's
    ``traceparent``, and the log line written inside it names the trace."""
    with otlp_receiver(tmp_path) as (endpoint, spans):
        workdir = tmp_path / "serve"
        workdir.mkdir()
        (workdir / "tracehooks.py").write_text(HOOKS, encoding="utf-8")
        env = {
            "SHOAL_TRACING_ENABLED": "true",
            "OTEL_SERVICE_NAME": "bookstore-api",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after a span ends
        }
        with live_example(
            workdir, mongodb_uri, redis_url, env=env, hooks=["tracehooks:register"]
        ) as live:
            token = live.token("editor")
            _, _, book = http("POST", f"{live.url}/books", token, {"title": "Dune", "year": 1965})
            status, headers, _ = http(
                "PATCH",
                f"{live.url}/books/{book['_id']}",
                token,
                {"year": 1966},
                **{"If-Match": book["_etag"], "traceparent": TRACEPARENT},
            )
            assert status == 200

            # The server span ends last, so its children were exported before it.
            def arrived() -> bool:
                return any(
                    span["kind"] == "SPAN_KIND_SERVER" for span in received(spans, UPSTREAM_TRACE)
                )

            assert wait_until(arrived, 30), live.process.output()
            trace = received(spans, UPSTREAM_TRACE)
            everything = [json.loads(line) for line in spans.read_text().splitlines()]
            stderr = live.process.stderr()

    shown = tree(trace)
    print(f"\nThe PATCH as the receiver got it:\n{shown}")
    (server,) = [span for span in trace if span["kind"] == "SPAN_KIND_SERVER"]
    assert server["name"] == "PATCH /books/<item_id>", shown
    assert server["parent_span_id"] == f"{UPSTREAM_SPAN:016x}"
    assert server["service"] == "bookstore-api"
    assert server["scope"] == "shoal"
    assert server["attributes"]["http.route"] == "/books/<item_id>"
    assert server["attributes"]["http.response.status_code"] == 200
    flags = headers["traceresponse"].rsplit("-", 1)[1]
    assert headers["traceresponse"] == f"00-{UPSTREAM_TRACE:032x}-{server['span_id']}-{flags}"

    calls = [span for span in trace if span is not server]
    assert calls, shown
    assert {span["parent_span_id"] for span in calls} == {server["span_id"]}, shown
    assert {span["kind"] for span in calls} == {"SPAN_KIND_CLIENT"}
    by_system = {span["attributes"].get("db.system") for span in calls}
    assert by_system == {"mongodb", "redis"}, shown
    database = live.settings.mongodb.database
    assert f"{database}.find" in {span["name"] for span in calls}, shown

    # Calls outside requests (the indexes made at start-up) are no trace of their own.
    assert len(everything) > len(trace)  # the POST, the readiness probes
    assert all(span["parent_span_id"] for span in everything if span["kind"] == "SPAN_KIND_CLIENT")

    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line.get("logger") == "tracehooks"]
    assert logged["message"] == f"book {book['_id']} updated"
    assert logged["trace_id"] == f"{UPSTREAM_TRACE:032x}"
    assert logged["span_id"] == server["span_id"]
