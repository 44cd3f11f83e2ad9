"""The benchmark harness's logic: wrk's report, the targets, the profiles, the docs,
and the wrk Lua scripts against a tiny local server. No timing is asserted here;
the benchmarks themselves run with ``scripts/bench``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from benchmarks import connection_memory, docs, keyset, memory, soak, sse_client
from benchmarks.apps import bare
from benchmarks.data import make_documents
from benchmarks.engine import MongoURI, name_of, redact, with_address, with_database
from benchmarks.local_stack import NGINX_CONF, load_state, main, nginx_binary, nginx_config
from benchmarks.measure import Meter, cpu_percent
from benchmarks.options import parse_options
from benchmarks.proc import listening_pid
from benchmarks.profile import short_path, summarize
from benchmarks.report import (
    admission_rows,
    balancer_lines,
    balancer_rows,
    distance_ratio_rows,
    engines_lines,
    engines_rows,
    keyset_lines,
    keyset_rows,
    loops_lines,
    loops_rows,
    many_connections_lines,
    streams_rows,
    target_rows,
    text_table,
)
from benchmarks.results import Result, find
from benchmarks.servers import CONFIG, derived_config, derived_toml
from benchmarks.slow_clients import Cuts
from benchmarks.sse_client import (
    EVENT_TITLE,
    ChunkedDecoder,
    ProtocolError,
    SseMessage,
    SseParser,
    split_head,
)
from benchmarks.targets import Target, targets
from benchmarks.wrk import WrkError, parse_wrk, wrk_command
from bson import ObjectId

from shoal.app import create_app
from shoal.cli.serve import ServeOptions, serve_config
from shoal.config import load_settings
from shoal.system import free_port
from tests.conftest import SettingsFactory

ROOT = Path(__file__).resolve().parents[1]

WRK_REPORT = """\
Running 10s test @ http://127.0.0.1:40001/items
  2 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.33ms  120.01ms   1.98s    71.20%
    Req/Sec   610.12    130.50     0.98k    68.00%
  Latency Distribution
     50%  380.50ms
     75%  450.00ms
     90%  600.10ms
     99%    1.52s
  12001 requests in 10.03s, 6.51MB read
  Socket errors: connect 0, read 3, write 0, timeout 17
  Non-2xx or 3xx responses: 5
Requests/sec:   1196.51
Transfer/sec:    664.20KB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_REPORT)
    assert result.requests == 12001
    assert result.seconds == pytest.approx(10.03)
    assert result.requests_per_s == pytest.approx(1196.51)
    assert result.p50_ms == pytest.approx(380.5)
    assert result.p99_ms == pytest.approx(1520.0)
    assert (result.non_2xx_3xx, result.read_errors, result.timeouts) == (5, 3, 17)
    assert result.errors == 25


def test_parse_wrk_without_errors_and_with_microseconds() -> None:
    report = (
        WRK_REPORT.replace("  Socket errors: connect 0, read 3, write 0, timeout 17\n", "")
        .replace("  Non-2xx or 3xx responses: 5\n", "")
        .replace("380.50ms", "912.00us")
    )
    result = parse_wrk(report)
    assert result.errors == 0
    assert result.p50_ms == pytest.approx(0.912)


def test_parse_wrk_refuses_what_is_not_a_report() -> None:
    with pytest.raises(WrkError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")
    with pytest.raises(WrkError, match="--latency"):
        parse_wrk(WRK_REPORT.split("  Latency Distribution")[0] + "Requests/sec: 1.0\n"
                  "  1 requests in 1.00s, 1KB read\n")  # fmt: skip


def _result(server: str, scenario: str, rate: float, workers: int = 1, **extra: Any) -> Result:
    fields: dict[str, Any] = {
        "server": server,
        "scenario": scenario,
        "workers": workers,
        "connections": 16,
        "requests": int(rate * 10),
        "seconds": 10.0,
        "requests_per_s": rate,
        "p50_ms": 5.0,
        "p99_ms": 20.0,
        "errors": 0,
        "worker_rss_mb": [60.0],
    }
    fields.update(extra)
    return Result(**fields)


def _target(found: list[Target], name: str) -> Target:
    matches = [target for target in found if target.name == name]
    assert len(matches) == 1, name
    return matches[0]


def _status(found: list[Target], name: str) -> str:
    return _target(found, name).status


def test_targets_compare_the_figures_with_their_goals() -> None:
    cpu = {"app": 100.0}
    results = [
        _result("bare", "bare_get", 1000),
        _result("shoal", "item_get_cached", 950),  # 0.95x the bare app: at least 0.6
        _result("shoal", "item_get_cached_worker", 850),  # 0.85x: under 0.9
        _result("shoal", "item_get", 700, cpu_percent=cpu),
        _result("shoal", "post", 400, cpu_percent=cpu),
        _result("shoal", "patch", 300, cpu_percent=cpu),
        _result("eve", "item_get", 300, cpu_percent=cpu),  # 2.33x per CPU
        _result("eve", "post", 250, cpu_percent=cpu),  # 1.6x per CPU
        # No Eve PATCH: that comparison cannot be made.
        _result("peer_starlette", "item_get", 800, cpu_percent=cpu),  # 0.875x per CPU
        _result("peer_starlette", "post", 600, cpu_percent=cpu),  # 0.67x per CPU
        _result("peer_quart", "item_get", 500, cpu_percent=cpu),  # shown, not judged
        _result("shoal", "item_get_bearer", 600, cpu_percent=cpu),  # 0.86x the anonymous
        _result("shoal", "item_get_rules", 570, cpu_percent=cpu),  # 0.95x without rules
        _result("shoal", "item_get_1000c", 720, connections=1000, p50_ms=40.0, p99_ms=80.0),
        _result("shoal", "item_get", 900, workers=2, delay_ms=5.0),
        _result("eve", "item_get", 300, workers=5, delay_ms=5.0),  # 3x: met
        _result("eve_gevent", "item_get", 700, workers=2, delay_ms=5.0),  # 1.29x: not met
        _result("shoal", "post", 500, workers=2, delay_ms=5.0, worker_rss_mb=[79.0, 81.0]),
        _result("eve", "post", 200, workers=5, delay_ms=5.0),  # 2.5x: not met
        _result("eve_gevent", "post", 300, workers=2, delay_ms=5.0),  # 1.67x: met
        _result("eve", "item_get", 100, workers=5, delay_ms=1.0),  # another delay: not judged
    ]
    found = targets(results)
    sync, gevent = "Eve on 2 x cores + 1 sync workers", "Eve on gevent workers"
    assert _status(found, f"db +5 ms, item GET uncached: Shoal / {sync}") == "met"
    assert _status(found, f"db +5 ms, item GET uncached: Shoal / {gevent}") == "not met"
    assert _status(found, f"db +5 ms, POST insert: Shoal / {sync}") == "not met"
    post_gevent = _target(found, f"db +5 ms, POST insert: Shoal / {gevent}")
    assert (post_gevent.status, post_gevent.figure) == ("met", "1.67x (500/s vs 300/s)")
    per_cpu = "per app CPU-second, {}: Shoal / Eve, 1 worker"
    assert _status(found, per_cpu.format("item GET uncached")) == "met"
    assert _status(found, per_cpu.format("POST insert")) == "not met"
    assert _status(found, per_cpu.format("PATCH with If-Match")) == "not measured"
    by_hand = "per app CPU-second, {}: Shoal / hand-written Starlette, 1 worker"
    peer_get = _target(found, by_hand.format("item GET uncached"))
    assert (peer_get.status, peer_get.figure) == ("met", "0.88x (700 vs 800 req/CPU-s)")
    assert _status(found, by_hand.format("POST insert")) == "not met"
    assert not any("Quart" in target.name for target in found)
    bearer = _target(found, "per app CPU-second, item GET: bearer token / anonymous, 1 worker")
    assert (bearer.status, bearer.figure) == ("not met", "0.86x (600 vs 700 req/CPU-s)")
    rules = _target(found, "per app CPU-second, item GET: with rules / without, 1 worker")
    assert (rules.status, rules.figure) == ("met", "0.95x (570 vs 600 req/CPU-s)")
    assert _status(found, "1,000 conns, 1 worker: errors") == "met"
    assert _status(found, "1,000 conns, 1 worker: p99 / p50") == "met"  # exactly 2x
    throughput = _target(found, "1,000 conns, 1 worker: throughput / at 16 conns")
    assert throughput.status == "met"
    assert throughput.value == pytest.approx(720 / 700)
    assert _status(found, "peak RSS per Shoal worker, 1 worker") == "met"  # 60 MB
    # The workers of the distance phase count too, the largest one: 81 MB.
    assert _status(found, "peak RSS per Shoal worker, 2 workers") == "not met"
    assert _status(found, "cached item GET / bare ASGI app, 1 worker") == "met"
    worker_tier = _target(found, "cached item GET, worker tier / bare ASGI app, 1 worker")
    assert (worker_tier.status, worker_tier.figure) == ("not met", "0.85x (850/s vs 1,000/s)")
    # The distance phase's Shoal (2 workers) adds no loopback targets of its own.
    assert not any("2 workers" in t.name and "RSS" not in t.name for t in found)


def test_errors_latency_spread_and_lost_throughput_fail_the_many_connections_targets() -> None:
    results = [
        _result("shoal", "item_get_1000c", 800, connections=1000, p50_ms=100.0, p99_ms=250.0,
                errors=3, non_2xx_3xx=2, error_detail={"non_2xx_3xx": 2, "timeout": 1}),
        _result("shoal", "item_get", 900),
        _result("shoal", "item_get_cached", 100, worker_rss_mb=[80.0, 120.0]),
    ]  # fmt: skip
    found = targets(results)
    errors = _target(found, "1,000 conns, 1 worker: errors")
    assert (errors.status, errors.figure) == ("not met", "3 (non_2xx_3xx 2, timeout 1)")
    spread = _target(found, "1,000 conns, 1 worker: p99 / p50")
    assert spread.status == "not met"
    assert spread.value == pytest.approx(2.5)
    # Errors do not count as throughput: (8000 - 2) / 10 s against 900/s.
    throughput = _target(found, "1,000 conns, 1 worker: throughput / at 16 conns")
    assert throughput.status == "not met"
    assert throughput.value == pytest.approx((8000 - 2) / 10 / 900)
    # The largest worker counts.
    rss = _target(found, "peak RSS per Shoal worker, 1 worker")
    assert (rss.status, rss.figure) == ("not met", "120.0 MB")
    rows = target_rows(found)
    assert ["peak RSS per Shoal worker, 1 worker", "120.0 MB", "<= 80 MB", "not met"] in rows
    # Nothing measured against the bare app or Eve: not measured, never met.
    assert _status(found, "cached item GET / bare ASGI app, 1 worker") == "not measured"
    assert _target(found, "cached item GET / bare ASGI app, 1 worker").met is None


def test_per_app_cpu_targets_discount_a_busy_machine() -> None:
    # Eve served a third as much only because it got half the CPU: per CPU, Shoal is 1.5x.
    shoal = _result("shoal", "patch", 600, cpu_percent={"app": 100.0})
    eve = _result("eve", "patch", 200, cpu_percent={"app": 50.0})
    target = _target(
        targets([shoal, eve]), "per app CPU-second, PATCH with If-Match: Shoal / Eve, 1 worker"
    )
    assert target.status == "not met"
    assert target.value == pytest.approx(1.5)
    assert target.figure == "1.50x (600 vs 400 req/CPU-s)"
    assert shoal.per_app_cpu_s == pytest.approx(600.0)


def test_targets_are_reported_per_worker_count() -> None:
    results = [
        _result("shoal", "item_get_cached", 900, workers=1),
        _result("bare", "bare_get", 1000, workers=1),
        _result("shoal", "item_get_cached", 1000, workers=2),
        _result("bare", "bare_get", 2000, workers=2),
    ]
    cached = [t for t in targets(results) if t.name.startswith("cached item GET")]
    assert [(t.name, t.status) for t in cached] == [
        ("cached item GET / bare ASGI app, 1 worker", "met"),
        ("cached item GET, worker tier / bare ASGI app, 1 worker", "not measured"),
        ("cached item GET / bare ASGI app, 2 workers", "not met"),
        ("cached item GET, worker tier / bare ASGI app, 2 workers", "not measured"),
    ]


def test_cpu_shares_leave_the_rest_of_the_machine_as_other() -> None:
    # app, database, wrk, whole machine: CPU seconds at the start and after 2 s.
    shares = cpu_percent((10.0, 5.0, 1.0, 100.0), (11.5, 5.5, 1.2, 103.0), 2.0)
    assert shares == {"app": 75.0, "db": 25.0, "wrk": 10.0, "other": 40.0}
    # Rounding (or counters read a tick apart) never makes "other" negative.
    assert cpu_percent((0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.99), 1.0)["other"] == 0.0


def test_distance_ratios_compare_shoal_with_eve_on_sync_and_gevent_workers() -> None:
    results = [
        _result("shoal", "item_get", 900, workers=2, delay_ms=5.0),
        _result("eve", "item_get", 300, workers=5, delay_ms=5.0),
        _result("eve_gevent", "item_get", 600, workers=2, delay_ms=5.0),
        _result("shoal", "post", 500, workers=2, delay_ms=5.0, non_2xx_3xx=1000),
        _result("eve", "post", 200, workers=5, delay_ms=5.0),
        _result("shoal", "item_get", 100, workers=2),  # on loopback: not part of it
        _result("eve", "item_get", 50, workers=2, delay_ms=1.0),
    ]
    rows = distance_ratio_rows(results)
    assert rows[0] == ["1", "item GET uncached", "-", "50.0", "-", "-", "-"]
    assert rows[1] == ["5", "item GET uncached", "900.0", "300.0", "600.0", "3.00x", "1.50x"]
    # Errors do not count as throughput: (5000 - 1000) / 10 s = 400/s.
    assert rows[2] == ["5", "POST insert", "400.0", "200.0", "-", "2.00x", "-"]
    assert len(rows) == 3  # no PATCH measured
    assert find(results, "shoal", "item_get", 2) is results[-2]
    assert find(results, "shoal", "item_get", 2, delay_ms=5.0) is results[0]


async def test_bare_asgi_app_answers_any_path_with_its_fixed_json_and_a_lifespan() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    for path in ("/items/6b04fa053196f641d19534f5", "/"):
        sent.clear()
        await bare.app({"type": "http", "method": "GET", "path": path}, no_body, send)
        start, body = sent
        headers = dict(start["headers"])
        assert (start["status"], headers[b"content-type"]) == (200, b"application/json")
        assert int(headers[b"content-length"]) == len(body["body"])
        assert json.loads(body["body"])["_id"] == "6b04fa053196f641d19534f5"

    lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(lifespan)

    sent.clear()
    await bare.app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# --- the engine: URIs and names ---------------------------------------------------


def test_a_uri_moved_to_the_delay_proxy_keeps_its_credentials_and_options() -> None:
    uri = "mongodb://reader:s3cret@mongo.internal:27018/app?tls=true&replicaSet=rs0"
    assert with_address(uri, "127.0.0.1", 40001) == (
        "mongodb://reader:s3cret@127.0.0.1:40001/app?tls=true&replicaSet=rs0&directConnection=true"
    )
    # An existing directConnection is replaced, not repeated.
    assert with_address("mongodb://h:1/?directConnection=false", "127.0.0.1", 2) == (
        "mongodb://127.0.0.1:2/?directConnection=true"
    )
    assert MongoURI.parse("mongodb://[::1]:27019/").address() == ("::1", 27019)
    assert MongoURI.parse("mongodb://mongo.internal/").address() == ("mongo.internal", 27017)
    for many in ("mongodb+srv://cluster.internal/", "mongodb://a:1,b:2/?replicaSet=rs0"):
        with pytest.raises(ValueError, match="one host"):
            with_address(many, "127.0.0.1", 40001)


def test_a_uri_for_eve_names_the_runs_database_and_keeps_its_auth_source() -> None:
    assert with_database("mongodb://127.0.0.1:1/?directConnection=true", "bench") == (
        "mongodb://127.0.0.1:1/bench?directConnection=true"
    )
    # Credentials authenticate against the URI's database, or admin, as before.
    assert with_database("mongodb://u:p@h:1/app?tls=true", "shoal_bench_1") == (
        "mongodb://u:p@h:1/shoal_bench_1?tls=true&authSource=app"
    )
    assert with_database("mongodb://u:p@h:1/", "b") == "mongodb://u:p@h:1/b?authSource=admin"
    assert with_database("mongodb://u:p@h:1/x?authSource=ops", "b") == (
        "mongodb://u:p@h:1/b?authSource=ops"
    )


def test_the_report_never_shows_a_password() -> None:
    assert (
        redact("mongodb://reader:s3cret@h:1/app?tls=true")
        == "mongodb://reader:***@h:1/app?tls=true"
    )
    assert redact("mongodb://h:1/") == "mongodb://h:1/"
    assert "s3cret" not in redact("not a uri s3cret")


def test_engines_are_named_from_what_they_answer() -> None:
    assert name_of({"version": "7.0.0", "ferretdbVersion": "v1.24.2"}, {}) == (
        "FerretDB v1.24.2 (MongoDB 7.0.0 compatible)"
    )
    assert name_of({"version": "7.0.0"}, {"ferretdb": {"version": "v2.1.0"}}).startswith(
        "FerretDB v2.1.0"
    )
    assert name_of({"version": "7.0.0", "process": "nx_27017"}, {}).startswith("nx-27017")
    assert "stand-in" in name_of({"version": "7.0.0", "process": "nx_27017"}, {})
    assert name_of({"version": "8.0.4"}, {"process": "/usr/bin/mongod"}) == "MongoDB 8.0.4"
    assert name_of({"version": "6.0.0"}, {"process": "other-db"}) == (
        "other-db (MongoDB 6.0.0 compatible)"
    )


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_pid(listener.getsockname()[1]) == os.getpid()
    with socket.socket() as bound_only:  # bound, not listening: nobody to count
        bound_only.bind(("127.0.0.1", 0))
        assert listening_pid(bound_only.getsockname()[1]) is None


def test_text_table_aligns_columns() -> None:
    table = text_table(["name", "req/s"], [["a", "1,234.5"], ["longer", "9.0"]])
    lines = table.splitlines()
    assert lines[0].startswith("name  ")
    assert lines[2].endswith("1,234.5")
    assert lines[3].endswith("    9.0")


COLLAPSED = """\
run (asyncio/runners.py:1);handle (/opt/venv/lib/python3.11/site-packages/quart/app.py:10);\
dumps (/opt/venv/lib/python3.11/site-packages/shoal/encoding.py:50) 30
run (asyncio/runners.py:1);handle (/opt/venv/lib/python3.11/site-packages/quart/app.py:10) 10
run (asyncio/runners.py:1);find_one (/srv/checkout/src/shoal/storage.py:120);\
_decode (/usr/lib/python3.11/json/decoder.py:5) 60
"""


def test_profile_summary_counts_own_and_inclusive_time_without_machine_paths() -> None:
    profile = summarize(COLLAPSED)
    assert profile.samples == 100
    own = dict(profile.top(profile.own))
    assert own["dumps (shoal/encoding.py)"] == pytest.approx(30.0)
    assert own["handle (quart/app.py)"] == pytest.approx(10.0)
    inclusive = dict(profile.top(profile.inclusive))
    assert inclusive["handle (quart/app.py)"] == pytest.approx(40.0)
    assert inclusive["find_one (shoal/storage.py)"] == pytest.approx(60.0)
    assert dict(profile.top(profile.packages)) == {"stdlib": 60.0, "shoal": 30.0, "quart": 10.0}
    assert short_path("/srv/x/.venv/lib/python3.11/site-packages/quart/app.py") == "quart/app.py"
    assert "/" not in json.dumps(profile.to_json()).split("(")[0]


def test_docs_render_figures_and_target_status(tmp_path: Path) -> None:
    results = [
        _result("bare", "bare_get", 1000),
        _result("shoal", "item_get_cached", 900),
        _result("shoal", "item_get", 900, workers=2, delay_ms=5.0),
        _result("eve", "item_get", 300, workers=5, delay_ms=5.0),
    ]
    options = {
        "duration": 10.0,
        "warmup": 2.0,
        "connections": 16,
        "many_connections": 1000,
        "documents": 1000,
        "patch_pool": 6000,
        "workers": [1, 2],
    }
    data = {
        "generated": "2026-01-01T00:00:00+00:00",
        "command": "scripts/bench",
        "elapsed_s": 300.0,
        "options": options,
        "machine": {
            "cpus": 2,
            "cpu_model": "Some CPU",
            "memory_gib": 24.0,
            "system": "Linux 6",
            "python": "3.11.7",
            "wrk": "wrk 4.1.0",
        },
        "versions": {"shoal": "0.1.0"},
        "results": [result.to_json() for result in results],
        "profiles": {},
        "notes": ["a note"],
    }
    page = docs.render(data)
    assert (
        "| cached item GET / bare ASGI app, 1 worker | 0.90x (900/s vs 1,000/s) | >= 0.6x | met |"
        in page
    )
    assert (
        "| db +5 ms, item GET uncached: Shoal / Eve on 2 x cores + 1 sync workers "
        "| 3.00x (900/s vs 300/s) | >= 3x | met |" in page
    )
    assert "| 5 | item GET uncached | 900.0 | 300.0 | - | 3.00x | - |" in page
    assert "2 cores (Some CPU)" in page
    assert "- a note" in page
    # Every placeholder filled: what is left are MongoDB operators the page names.
    assert set(re.findall(r"\$\w+", page)) <= {"$set"}
    assert "The database is the MongoDB stand-in" in page  # results without an engine

    data["engine"] = {
        "name": "FerretDB v1.24.2 (MongoDB 7.0.0 compatible)",
        "uri": redact("mongodb://bench:s3cret@127.0.0.1:27018/"),
        "cpu_counted": False,
        "given": True,
    }
    page = docs.render(data)
    assert "The database is **FerretDB v1.24.2 (MongoDB 7.0.0 compatible)**" in page
    assert "`mongodb://bench:***@127.0.0.1:27018/`" in page
    assert "does not count it" in page
    assert "stand-in (nx-27017" not in page

    # An engine the run started (--engine documentdb).
    data["engine"] = {
        "name": "DocumentDB (MongoDB 7.0.0 compatible)",
        "uri": redact("mongodb://shoal:shoal@127.0.0.1:27019/"),
        "cpu_counted": True,
        "given": False,
    }
    data["options"] = {**options, "engine": "documentdb"}
    page = docs.render(data)
    assert (
        "The database is **DocumentDB (MongoDB 7.0.0 compatible)**, which the run starts "
        "on this machine (`scripts/documentdb`)" in page
    )
    assert "started by `scripts/documentdb run` on a free loopback port" in page
    assert "stand-in (nx-27017" not in page

    # scripts/bench writes the page anew, and keeps the soak run's section.
    written = tmp_path / "docs" / "benchmarks.md"
    written.parent.mkdir()
    soak_section = "<!-- soak:start -->\n## Soak\nfigures\n<!-- soak:end -->"
    written.write_text(f"an old page\n\n{soak_section}\n")
    docs.write(data, tmp_path)
    rewritten = written.read_text()
    assert "an old page" not in rewritten
    assert rewritten.endswith(f"\n\n{soak_section}\n")


# --- the Lua scripts, against a tiny server -----------------------------------------


class _Items(BaseHTTPRequestHandler):
    """GET and PATCH /items/<id> with ETags; POST /items. Records what it saw."""

    protocol_version = "HTTP/1.1"
    etags: ClassVar[dict[str, str]]
    seen: ClassVar[dict[str, Any]]
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        item = self.path.rsplit("/", 1)[-1]
        with self.lock:
            self.seen["get"].add(item)
        self._reply(200 if item in self.etags else 404, {"_id": item})

    def do_POST(self) -> None:
        body = json.loads(self._body())
        with self.lock:
            self.seen["post"].append(body)
        self._reply(201, {"_status": "OK"})

    def do_PATCH(self) -> None:
        item = self.path.rsplit("/", 1)[-1]
        json.loads(self._body())
        with self.lock:
            current = self.etags[item]
            if self.headers.get("If-Match") != f'"{current}"':
                self.seen["stale"] += 1
                self._reply(412, {"_status": "ERR"})
                return
            self.seen["patch"][item] = self.seen["patch"].get(item, 0) + 1
            new = format(int(current, 16) + 1, "040x")
            self.etags[item] = new
        self._reply(200, {"_id": item, "_etag": new, "_status": "OK"})


@pytest.fixture
def items_server(tmp_path: Path) -> Iterator[tuple[str, Path, type[_Items]]]:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed (apt-get install wrk; scripts/test installs it)")
    ids = [format(n, "024x") for n in range(1, 9)]

    class Handler(_Items):
        etags: ClassVar[dict[str, str]] = {item: format(n, "040x") for n, item in enumerate(ids)}
        seen: ClassVar[dict[str, Any]] = {"get": set(), "post": [], "patch": {}, "stale": 0}

    handler = Handler
    docs_file = tmp_path / "docs.txt"
    docs_file.write_text("".join(f"{item} {handler.etags[item]}\n" for item in ids))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", docs_file, handler
    finally:
        server.shutdown()
        server.server_close()


def _wrk(url: str, script: str, *args: str) -> None:
    command = wrk_command(
        url, duration=1, connections=2, threads=2, script=script, script_args=args
    )
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr
    assert not completed.stderr.strip(), completed.stderr
    parse_wrk(completed.stdout)


def test_patch_script_keeps_each_documents_latest_etag(
    items_server: tuple[str, Path, type[_Items]],
) -> None:
    url, docs_file, handler = items_server
    _wrk(url, "patch.lua", str(docs_file), "/items/", "2")
    patched = handler.seen["patch"]
    assert handler.seen["stale"] == 0
    # Every document was patched, and again with the ETag of the previous answer.
    assert set(patched) == set(handler.etags)
    assert min(patched.values()) > 1


def test_get_script_covers_every_document_and_post_sends_valid_documents(
    items_server: tuple[str, Path, type[_Items]],
) -> None:
    url, docs_file, handler = items_server
    _wrk(url, "get.lua", str(docs_file), "/items/", "2")
    assert handler.seen["get"] == set(handler.etags)
    _wrk(url, "post.lua", "/items")
    posted = handler.seen["post"]
    assert posted
    assert all(body["title"] == "posted by wrk" for body in posted)


# --- the delay proxy, between clients and a local echo server -----------------------

PROXY_DELAY_MS = 20.0


class _ProxiedEcho:
    """An echo server (it closes its side once the client's end arrives) behind the
    delay proxy, run as its own process."""

    def __init__(self) -> None:
        self.connections = 0
        self.closed: asyncio.Queue[None] = asyncio.Queue()  # one item per closed connection
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.proxy: asyncio.subprocess.Process | None = None

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.closed.put_nowait(None)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._echo, "127.0.0.1", 0, backlog=1024)
        target = self.server.sockets[0].getsockname()[1]
        self.proxy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.delay_proxy", "--listen",
            f"127.0.0.1:{self.port}", "--target", f"127.0.0.1:{target}",
            "--delay-ms", str(PROXY_DELAY_MS),
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proxy.stdout is not None
        line = await asyncio.wait_for(self.proxy.stdout.readline(), 30)
        assert line.startswith(b"delay proxy: 127.0.0.1:"), line  # it listens

    async def closed_connections(self, count: int) -> None:
        """Wait until the server has closed ``count`` more connections."""
        for _ in range(count):
            await asyncio.wait_for(self.closed.get(), 10)

    async def stop(self) -> str:
        """Stop the proxy (by its pid) and the server; the proxy's last words."""
        output = b""
        if self.proxy is not None:
            self.proxy.terminate()
            output, _ = await asyncio.wait_for(self.proxy.communicate(), 15)
            self.proxy = None
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        return output.decode()


@pytest.fixture
async def proxied_echo() -> AsyncIterator[_ProxiedEcho]:
    echo = _ProxiedEcho()
    try:
        await echo.start()
        yield echo
    finally:
        await echo.stop()


async def test_delay_proxy_delays_round_trips_and_keeps_large_data_whole(
    proxied_echo: _ProxiedEcho,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied_echo.port)
    for _ in range(3):
        started = time.monotonic()
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        assert time.monotonic() - started >= PROXY_DELAY_MS / 1000

    # 8 MiB in uneven pieces come back whole and in order, while still being sent.
    blob = random.Random(5).randbytes(8 * 1024 * 1024)

    async def send() -> None:
        for start in range(0, len(blob), 100_003):
            writer.write(blob[start : start + 100_003])
            await writer.drain()
        writer.write_eof()  # our end travels through the proxy to the server...

    sending = asyncio.create_task(send())
    received = await asyncio.wait_for(reader.read(-1), 60)  # ...and the server's end back
    await sending
    assert received == blob
    await proxied_echo.closed_connections(1)
    writer.close()
    await writer.wait_closed()


async def test_delay_proxy_closes_both_ends(proxied_echo: _ProxiedEcho) -> None:
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxied_echo.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()  # a client closing outright, as drivers do
        await writer.wait_closed()
    # The client's close reached the server, which closed its side in turn...
    await proxied_echo.closed_connections(3)
    # ...and once that close has come back through, the proxy holds nothing open.
    await asyncio.sleep(3 * PROXY_DELAY_MS / 1000)
    output = await proxied_echo.stop()
    assert "3 connections (0 still open when stopped)" in output


async def test_delay_proxy_delays_every_chunk_and_keeps_their_order(
    proxied_echo: _ProxiedEcho,
) -> None:
    delay = PROXY_DELAY_MS / 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied_echo.port)
    messages = [f"message {index:02d};".encode() * 20 for index in range(20)]
    sent: list[float] = []

    async def send() -> None:
        for message in messages:  # 1 ms apart, without waiting for the answers
            sent.append(time.monotonic())
            writer.write(message)
            await writer.drain()
            await asyncio.sleep(0.001)

    sending = asyncio.create_task(send())
    trips = []
    for index, message in enumerate(messages):
        assert await reader.readexactly(len(message)) == message  # whole, in order
        trips.append(time.monotonic() - sent[index])
    await sending
    writer.close()
    await writer.wait_closed()
    # Every chunk waits its half delay each way. (How long at most is the load's
    # business, and the benchmark's: a test asserts no upper time.)
    assert min(trips) >= delay


async def test_delay_proxy_carries_many_connections_at_once(proxied_echo: _ProxiedEcho) -> None:
    delay = PROXY_DELAY_MS / 1000

    async def session(number: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxied_echo.port)
        message = f"connection {number:03d};".encode() * 100
        started = time.monotonic()
        writer.write(message)
        await writer.drain()
        assert await reader.readexactly(len(message)) == message
        trip = time.monotonic() - started
        writer.close()
        await writer.wait_closed()
        return trip

    trips = await asyncio.gather(*(session(n) for n in range(200)))
    assert min(trips) >= delay
    assert proxied_echo.connections == 200
    await proxied_echo.closed_connections(200)


# --- scripts/stack (benchmarks/local_stack.py) ----------------------------------------------------


def test_the_stack_nginx_config_keeps_the_base_and_passes_nginx(tmp_path: Path) -> None:
    conf = nginx_config(
        NGINX_CONF.read_text(encoding="utf-8"),
        port=18080,
        upstreams=[18001, 18002],
        workdir=tmp_path,
    )
    assert "server 127.0.0.1:18001;" in conf
    assert "server 127.0.0.1:18002;" in conf
    assert "listen 127.0.0.1:18080;" in conf
    directives = [line for line in conf.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in directives if "api:8000" in line or "resolver" in line]
    stream = conf[conf.index("location ~ /_stream$") :]
    assert "proxy_buffering off;" in stream[: stream.index("}")]
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log"), "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_stack_up_status_down_start_and_stop_every_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scripts/stack up`, as a newcomer runs it (its own Redis and stand-in),
    then `status` and `down`: each recorded process is gone afterwards."""
    pointer = tmp_path / "stack.json"
    base = ["--pointer", str(pointer)]
    workdir: Path | None = None
    try:
        assert main([*base, "up", "--instances", "2", "--workers", "1"]) == 0
        printed = capsys.readouterr().out
        url = printed.splitlines()[0].rsplit(" ", 1)[1]
        workdir, processes = load_state(pointer)
        assert {process.name for process in processes} == {
            "redis", "mongodb", "instance-1", "instance-2", "nginx"
        }  # fmt: skip
        seen = set()
        for _ in range(4):
            with urllib.request.urlopen(f"{url}/books", timeout=10) as response:  # noqa: S310
                assert response.status == 200
                seen.add(response.headers["X-Shoal-Instance"])
        assert seen == {"instance-1", "instance-2"}
        assert main([*base, "status"]) == 0
        assert main([*base, "up"]) == 1, "a second stack on top of the first"
    finally:
        down = main([*base, "down"])
    assert down == 0
    assert all(not process.alive() for process in processes)
    assert workdir is not None
    assert not workdir.exists()
    assert not pointer.exists()


# --- the phases with tables of their own: options, results, report ---------------------


def test_only_and_skip_choose_the_phases() -> None:
    options, _ = parse_options(["--only", "streams", "keyset"])
    assert (options.workers, options.delays, options.phases) == ([], [], ["streams", "keyset"])
    options, _ = parse_options(["--skip", "distance", "admission"])
    assert options.workers == [1, 2]
    assert options.delays == []
    assert options.phases == ["engines", "streams", "keyset", "balancer", "loops"]
    quick, _ = parse_options(["--quick"])
    assert (quick.keyset_documents, quick.keyset_page, quick.admission_limits) == (5000, 200, [64])


def test_the_phases_no_target_reads_are_measured_briefly() -> None:
    options, _ = parse_options([])
    meter = Meter(options, list)
    assert meter.duration == options.duration == 5.0
    with meter.briefly():
        assert meter.duration == options.side_duration == 3.0
    assert meter.duration == 5.0
    quick, _ = parse_options(["--quick"])
    brief = Meter(quick, list)
    with brief.briefly():
        assert brief.duration == 2.0  # never longer than the run's own duration


def test_a_deep_page_beyond_the_collection_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--keyset-documents", "1000", "--keyset-page", "41"])
    assert "--keyset-page must be 2 to 40" in capsys.readouterr().err
    options, _ = parse_options(
        ["--keyset-documents", "1000", "--keyset-page", "41", "--skip", "keyset"]
    )
    assert options.phases == ["engines", "streams", "balancer", "admission", "loops"]


def test_the_engine_and_the_other_engines_are_options(capsys: pytest.CaptureFixture[str]) -> None:
    options, _ = parse_options([])
    assert (options.engine, options.other_engines) == ("standin", ["ferretdb", "documentdb"])
    assert options.keyset_engines == ["documentdb"]
    options, _ = parse_options(
        ["--engine", "documentdb", "--other-engines", "standin", "--keyset-engines"]
    )
    assert (options.engine, options.other_engines) == ("documentdb", ["standin"])
    assert options.keyset_engines == []
    with pytest.raises(SystemExit):
        parse_options(["--engine", "mongod"])
    assert "invalid choice: 'mongod'" in capsys.readouterr().err


def _engine_results() -> list[Result]:
    """The run's own engine (main phases) and FerretDB (the engines phase)."""
    ferret: dict[str, Any] = {
        "phase": "engines",
        "extra": {"engine": "ferretdb", "engine_name": "FerretDB 1"},
    }
    return [
        _result("shoal", "item_get", 500, cpu_percent={"app": 100.0, "db": 90.0}),
        _result("shoal", "item_get", 900, workers=2, cpu_percent={"app": 200.0}),
        _result("eve", "item_get", 250, cpu_percent={"app": 100.0}),
        _result("driver", "find_one", 1000, cpu_percent={"app": 50.0, "db": 95.0}),
        _result("shoal", "post", 300, cpu_percent={"app": 100.0}),
        _result("shoal", "item_get", 1500, cpu_percent={"app": 100.0, "db": 40.0}, **ferret),
        _result("eve", "item_get", 500, cpu_percent={"app": 100.0}, **ferret),
        _result("driver", "find_one", 6000, cpu_percent={"app": 100.0, "db": 60.0}, **ferret),
        _result("shoal", "list_get", 400, **ferret),
    ]


def test_the_engines_table_puts_each_engines_headline_and_driver_side_by_side() -> None:
    results = _engine_results()
    assert engines_rows(results, "stand-in") == [
        ["stand-in", "item GET uncached", "500.0", "250.0", "500", "250", "2.00x", "20.00",
         "90"],
        ["stand-in", "POST insert", "300.0", "-", "300", "-", "-", "20.00", "-"],
        ["stand-in", "driver's ceiling: find_one by _id", "1,000.0", "-", "2,000", "-", "-",
         "20.00", "95"],
        ["FerretDB", "item GET uncached", "1,500.0", "500.0", "1,500", "500", "3.00x",
         "20.00", "40"],
        ["FerretDB", "list GET (25 items)", "400.0", "-", "-", "-", "-", "20.00", "-"],
        ["FerretDB", "driver's ceiling: find_one by _id", "6,000.0", "-", "6,000", "-", "-",
         "20.00", "60"],
    ]  # fmt: skip
    assert engines_lines(results, "stand-in") == [
        "stand-in: Shoal's item GET on one worker answers 50% of the requests/s the "
        "driver's ceiling reaches from one process (0.25x its finds per CPU-second)",
        "FerretDB: Shoal's item GET on one worker answers 25% of the requests/s the "
        "driver's ceiling reaches from one process (0.25x its finds per CPU-second)",
    ]
    # Without the engines phase there is no table: the page says it was not measured.
    assert engines_rows(results[:5], "stand-in") == []
    page = _render(results[:5])
    section = page[page.index("### The headline on each engine") : page.index("### Change")]
    assert "_Not measured in this run (`--skip engines`" in section
    page = _render(results, phase_seconds={"the other engines": 80.0})
    section = page[page.index("### The headline on each engine") : page.index("### Change")]
    assert "| FerretDB | item GET uncached | 1,500.0 | 500.0 |" in section
    # The engines phase's results stay out of the main table.
    main = page[page.index("## Results") : page.index("### The database at a distance")]
    assert "1,500.0" not in main


def _phase_results() -> list[Result]:
    stream_extra = {
        "held": 500, "events_written": 120, "write_rate": 20.0, "missed": 0, "complete": 500,
        "all_received": True,
    }  # fmt: skip
    return [
        _result("shoal", "item_get", 700),
        _result("shoal", "item_get_1000c", 600, connections=1000, p50_ms=100.0, p99_ms=400.0),
        _result("shoal", "stream_fanout", 8000, connections=500, phase="streams",
                worker_rss_mb=[300.0], extra=stream_extra),
        _result("shoal", "page_first_skip", 200, phase="keyset",
                extra={"page": 1, "by": "page", "documents": 50_000, "seed": "seeded in 9s"}),
        _result("shoal", "page_deep_skip", 50, phase="keyset", p50_ms=20.0,
                extra={"page": 2000, "by": "page", "documents": 50_000}),
        _result("shoal", "page_first_cursor", 180, phase="keyset",
                extra={"page": 1, "by": "cursor", "documents": 50_000}),
        _result("shoal", "page_deep_cursor", 180, phase="keyset",
                extra={"page": 2000, "by": "cursor", "documents": 50_000,
                       "database_ms": {"first": 1.5, "skip": 30.0, "cursor": 1.25}}),
        _result("shoal", "item_get_direct", 800, phase="balancer", cpu_percent={"app": 80.0},
                extra={"instances": 1}),
        _result("shoal", "item_get_nginx", 600, workers=2, phase="balancer",
                cpu_percent={"app": 120.0}, extra={"instances": 2}),
        _result("shoal", "item_get_1000c", 900, connections=1000, phase="admission",
                p50_ms=50.0, p99_ms=60.0, extra={"max_in_flight": 64}),
        _result("shoal", "item_get_1000c", 500, connections=1000, phase="admission",
                p50_ms=50.0, p99_ms=400.0, errors=7, non_2xx_3xx=7,
                error_detail={"non_2xx_3xx": 7}, extra={"max_in_flight": None}),
    ]  # fmt: skip


def test_the_targets_judge_the_main_phases_only() -> None:
    found = targets(_phase_results())
    # The admission phase's 1,000-connection runs do not stand in for the main one,
    # nor does the streams worker's 300 MB count against the RSS target.
    spread = _target(found, "1,000 conns, 1 worker: p99 / p50")
    assert spread.value == pytest.approx(4.0)
    assert _status(found, "peak RSS per Shoal worker, 1 worker") == "met"
    assert not [t for t in found if "2 workers" in t.name]  # nginx's 2 instances


def test_the_phase_tables_show_their_figures_and_ratios() -> None:
    results = _phase_results()
    assert streams_rows(results) == [
        ["1", "500", "500", "120", "20.0", "8,000.0", "5.00", "20.00", "yes", "0/300",
         "-"],
    ]  # fmt: skip
    incomplete = Result.from_json(
        {**results[2].to_json(), "extra": {"complete": 499, "missed": 3, "all_received": False}}
    )
    assert streams_rows([incomplete])[0][8] == "no: 499 of 500 subscribers, 3 missed"
    assert [row[:3] for row in keyset_rows(results, "stand-in")] == [
        ["stand-in", "1", "page"], ["stand-in", "2,000", "page"],
        ["stand-in", "1", "cursor"], ["stand-in", "2,000", "cursor"],
    ]  # fmt: skip
    assert keyset_lines(results, "stand-in") == [
        "by page: page 2,000 at 0.25x the requests/s of page 1 (p50 20.00 ms vs 5.00 ms)",
        "by cursor: page 2,000 at 1.00x the requests/s of page 1 (p50 5.00 ms vs 5.00 ms)",
        "the database alone (PyMongo, median of 3 queries): page 1 1.50 ms, page 2,000 by "
        "skip 30.00 ms, by cursor (the server's filter on _id) 1.25 ms",
        "seeded in 9s",
    ]
    assert [row[:2] for row in balancer_rows(results)] == [
        ["straight", "1 x 1"],
        ["nginx", "2 x 1"],
    ]
    assert balancer_lines(results) == [
        "through nginx to 2 instances / straight to one: 0.75x the requests/s, "
        "0.50x the requests per CPU-second"
    ]
    rows = admission_rows(results)
    assert rows[0][:7] == ["64 (default)", "1,000", "900.0", "50.00", "60.00", "1.20x", "0"]
    assert rows[1][0] == "off"
    assert (rows[1][5], rows[1][6], rows[1][7]) == ("8.00x", "7", "7")
    assert many_connections_lines(results) == [
        "the main phases' item GET at 1,000 connections, 1 worker(s): p99 / p50 = 4.00x "
        "(p50 100.00 ms, p99 400.00 ms)"
    ]


def _render(results: list[Result], **data: Any) -> str:
    return docs.render(
        {
            "generated": "2026-01-01T00:00:00+00:00",
            "command": "scripts/bench",
            "elapsed_s": 600.0,
            "options": {
                "duration": 5.0, "warmup": 1.0, "connections": 16, "many_connections": 1000,
                "documents": 1000, "patch_pool": 6000, "workers": [1, 2],
            },
            "machine": {
                "cpus": 2, "cpu_model": "Some CPU", "memory_gib": 24.0, "system": "Linux 6",
                "python": "3.11.7", "wrk": "wrk 4.1.0",
            },
            "versions": {"shoal": "0.1.0"},
            "results": [result.to_json() for result in results],
            "profiles": {},
            "notes": [],
            **data,
        }
    )  # fmt: skip


def test_the_keyset_table_names_the_engine_of_each_page() -> None:
    """The run's own engine, then DocumentDB's pages (its results name it)."""
    own = [r for r in _phase_results() if r.phase == "keyset"]
    on_documentdb = [
        Result.from_json({**result.to_json(), "extra": {**result.extra, "engine": "documentdb"}})
        for result in own
    ]
    results = [*own, *on_documentdb]
    assert [row[:3] for row in keyset_rows(results, "stand-in")][3:5] == [
        ["stand-in", "2,000", "cursor"],
        ["DocumentDB", "1", "page"],
    ]
    lines = keyset_lines(results, "stand-in")
    assert lines[1] == (
        "stand-in: by cursor: page 2,000 at 1.00x the requests/s of page 1 (p50 5.00 ms vs 5.00 ms)"
    )
    assert lines[5] == (
        "DocumentDB: by cursor: page 2,000 at 1.00x the requests/s of page 1 "
        "(p50 5.00 ms vs 5.00 ms)"
    )
    assert lines[-1] == "DocumentDB: seeded in 9s"


def test_docs_render_each_phase_or_say_it_was_not_measured() -> None:
    results = _phase_results()
    page = _render(results, phase_seconds={"seed": 5.0, "change streams": 21.4})
    streams = page[page.index("### Change streams") : page.index("### Keyset pagination")]
    assert "| 1 | 500 | 500 | 120 | 20.0 | 8,000.0 | 5.00 | 20.00 | yes | 0/300 | - |" in streams
    assert "- through nginx to 2 instances / straight to one: 0.75x the requests/s" in page
    assert "| 64 (default) | 1,000 | 900.0 |" in page
    assert "Time per phase: seed: 5s, change streams: 21s." in page
    # The phase results stay out of the main table.
    main = page[page.index("## Results") : page.index("### The database at a distance")]
    assert "item GET, through nginx" not in main
    assert "change events" not in main
    assert set(re.findall(r"\$\w+", page)) <= {"$set"}

    page = _render([r for r in results if r.phase != "balancer"])
    balancer = page[page.index("### The load balancer's cost") : page.index("### Admission")]
    assert "_Not measured in this run (`--skip balancer`" in balancer
    assert "Time per phase: not recorded." in page


def test_a_derived_config_is_the_benchmark_config_with_its_sections_replaced(
    tmp_path: Path,
) -> None:
    path = derived_config(tmp_path, "admission-16", admission={"max_in_flight": 16})
    settings = load_settings(path, env={"SHOAL_SECRET_KEY": "k" * 48})
    assert settings.admission.max_in_flight == 16
    assert settings.admission.queue_timeout == 10.0  # the default, kept
    assert settings.resources["events"].streams
    assert set(settings.resources) == {
        "items",
        "items_cached",
        "items_local",
        "items_ruled",
        "events",
        "pages",
    }


def test_a_derived_toml_is_the_repositorys_with_its_lines_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = derived_toml(tmp_path, "hypercorn-asyncio", worker_class="asyncio", backlog=64)
    monkeypatch.setenv("SHOAL_HYPERCORN_CONFIG", str(path))
    config = serve_config(ServeOptions())
    assert (config.hypercorn.worker_class, config.hypercorn.backlog) == ("asyncio", 64)
    # The rest is the repository's hypercorn.toml, as shoal serve reads it.
    monkeypatch.setenv("SHOAL_HYPERCORN_CONFIG", str(ROOT / "hypercorn.toml"))
    default = serve_config(ServeOptions())
    assert default.hypercorn.worker_class == "uvloop"
    assert config.hypercorn.graceful_timeout == default.hypercorn.graceful_timeout
    assert config.drain_delay == default.drain_delay
    # A key the file does not have is added.
    added = derived_toml(tmp_path, "with-h11", h11_max_incomplete_size=4096)
    monkeypatch.setenv("SHOAL_HYPERCORN_CONFIG", str(added))
    assert serve_config(ServeOptions()).hypercorn.h11_max_incomplete_size == 4096


def test_the_loops_table_compares_each_server_under_both_loops() -> None:
    results = [
        _result("bare", "bare_get", 4000, connections=1000, p50_ms=200.0, p99_ms=4000.0,
                cpu_percent={"app": 100.0}, phase="loops", extra={"loop": "uvloop"}),
        _result("shoal", "item_get_1000c", 900, connections=1000, p50_ms=1000.0,
                p99_ms=5000.0, cpu_percent={"app": 100.0}, phase="loops",
                extra={"loop": "uvloop"}),
        _result("bare", "bare_get", 3000, connections=1000, p50_ms=300.0, p99_ms=450.0,
                cpu_percent={"app": 100.0}, phase="loops", extra={"loop": "asyncio"}),
        _result("shoal", "item_get_1000c", 720, connections=1000, p50_ms=1300.0,
                p99_ms=1690.0, cpu_percent={"app": 100.0}, phase="loops",
                extra={"loop": "asyncio"}),
        # Few connections: what the fair loop costs where fairness does not matter.
        _result("shoal", "item_get", 1000, cpu_percent={"app": 100.0}, phase="loops",
                extra={"loop": "uvloop"}),
        _result("shoal", "item_get", 960, cpu_percent={"app": 100.0}, phase="loops",
                extra={"loop": "asyncio"}),
    ]  # fmt: skip
    assert loops_rows(results)[0] == [
        "bare ASGI", "uvloop", "1,000", "4,000.0", "4,000", "200.00", "4,000.00", "20.00x",
        "0", "100/0/0/0",
    ]  # fmt: skip
    assert [row[:3] for row in loops_rows(results)[1:]] == [
        ["Shoal", "uvloop", "1,000"], ["bare ASGI", "asyncio", "1,000"],
        ["Shoal", "asyncio", "1,000"], ["Shoal", "uvloop", "16"], ["Shoal", "asyncio", "16"],
    ]  # fmt: skip
    assert loops_lines(results) == [
        "bare ASGI at 1,000 connections, asyncio / uvloop: 0.75x the requests/s, 0.75x the "
        "requests per CPU-second; p99 / p50 1.50x against 20.00x",
        "Shoal at 1,000 connections, asyncio / uvloop: 0.80x the requests/s, 0.80x the "
        "requests per CPU-second; p99 / p50 1.30x against 5.00x",
        "Shoal at 16 connections, asyncio / uvloop: 0.96x the requests/s, 0.96x the "
        "requests per CPU-second; p99 / p50 4.00x against 4.00x",
    ]
    assert loops_lines(results[:2]) == []  # one loop only: nothing to compare
    page = _render(results)
    section = page[page.index("### Event loops") : page.index("## Targets")]
    assert "| Shoal | asyncio | 1,000 | 720.0 |" in section


# --- keyset pagination: the harness's cursor is the server's ------------------------------


async def test_the_harness_signs_the_cursor_the_server_would(
    settings_factory: SettingsFactory,
) -> None:
    """The cursor of a deep page made with the server's key is the one the server
    puts in ``_links.next``, and reads the same documents as that page by number."""
    bench = yaml.safe_load(CONFIG.read_text())["resources"]
    settings = settings_factory(resources={"pages": bench["pages"]})
    secret = settings.secret_key.get_secret_value()
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        created = await client.post("/pages", json=make_documents(60))
        assert created.status_code == 201
        ids = sorted(ObjectId(item["_id"]) for item in (await created.get_json())["_items"])

        first = await (await client.get(keyset.page_path(max_results=25, cursor=""))).get_json()
        served = parse_qs(urlsplit(first["_links"]["next"]["href"]).query)["cursor"][0]
        assert served == keyset.deep_cursor(secret, ids, 2, 25)

        deep = keyset.page_path(max_results=25, cursor=keyset.deep_cursor(secret, ids, 3, 25))
        by_cursor = (await (await client.get(deep)).get_json())["_items"]
        by_page = (await (await client.get(keyset.page_path(max_results=25, page=3))).get_json())[
            "_items"
        ]
        assert [item["_id"] for item in by_cursor] == [item["_id"] for item in by_page]
        assert [item["_id"] for item in by_cursor] == [str(i) for i in ids[50:]]

        # Signed with another key, the server refuses it.
        forged = keyset.deep_cursor("another secret key", ids, 3, 25)
        refused = await client.get(keyset.page_path(max_results=25, cursor=forged))
        assert refused.status_code == 400
    with pytest.raises(ValueError, match="not a page after the first"):
        keyset.deep_cursor(secret, ids, 4, 25)


# --- the change-stream client: its parsers, and a run against a small SSE server -------------


def test_chunked_bodies_are_decoded_across_any_split() -> None:
    body = b"5;name=x\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    for size in (1, 2, 3, 7, len(body)):
        decoder = ChunkedDecoder()
        out = b"".join(decoder.feed(body[i : i + size]) for i in range(0, len(body), size))
        assert out == b"hello, world"
        assert decoder.done
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(b"2\r\nabXY")


def test_sse_messages_are_read_across_any_split() -> None:
    stream = (
        b'retry: 2000\n\n: keep-alive\n\nid: 7\nevent: insert\ndata: {"a": 1}\n\n'
        b"data: one\r\ndata: two\r\n\r\nevent: end\ndata: {}\n\npartial"
    )
    for size in (1, 3, 10, len(stream)):
        parser = SseParser()
        messages = [
            m for i in range(0, len(stream), size) for m in parser.feed(stream[i : i + size])
        ]
        assert messages == [
            SseMessage("insert", '{"a": 1}', "7"),
            SseMessage("message", "one\ntwo"),
            SseMessage("end", "{}"),
        ]


def test_a_response_head_is_split_from_its_body() -> None:
    assert split_head(b"HTTP/1.1 201 \r\nContent-Length: 2\r\n") is None
    status, headers, rest = split_head(b"HTTP/1.1 201 \r\nContent-Length: 2\r\n\r\n{}") or (
        0,
        {},
        b"",
    )
    assert (status, headers, rest) == (201, {"content-length": "2"}, b"{}")
    with pytest.raises(ProtocolError):
        split_head(b"SSH-2.0\r\n\r\n")


class _SseServer:
    """``GET /events/_stream`` (chunked SSE) and ``POST /events`` (201 with an _id,
    the event sent to every stream); refuses streams beyond ``limit`` with 503,
    skips subscriber ``skip`` for the event of write ``skip_write``, and closes the
    writer's connection after every third answer, as hypercorn does after
    keep_alive_max_requests."""

    def __init__(self, limit: int, skip: int | None = None, skip_write: int = 5) -> None:
        self.limit, self.skip, self.skip_write = limit, skip, skip_write
        self.streams: list[asyncio.StreamWriter] = []
        self.writes = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answered = 0
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                request = head.split(" ")[:2]
                length = re.search(r"(?i)content-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                if request == ["GET", "/events/_stream"]:
                    await self._stream(writer)
                    return
                answered += 1
                await self._post(writer, json.loads(body), close=answered % 3 == 0)
                if answered % 3 == 0:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        if len(self.streams) >= self.limit:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}")
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(b"retry: 2000\n\n")
        )
        self.streams.append(writer)

    async def _post(self, writer: asyncio.StreamWriter, document: Any, *, close: bool) -> None:
        self.writes += 1
        item = f"{self.writes:024x}"
        data = json.dumps({"operation": "insert", "_id": item, "document": document})
        event = f"id: {self.writes}\nevent: insert\ndata: {data}\n\n".encode()
        measured = document["title"] == EVENT_TITLE
        for index, stream in enumerate(self.streams):
            if not (measured and index == self.skip and self.writes == self.skip_write):
                # Split mid-message: the client reads events across chunks.
                stream.write(_chunk(event[:9]) + _chunk(event[9:]))
        answer = json.dumps({"_id": item, "_status": "OK"}).encode()
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            + (b"Connection: close\r\n" if close else b"")
            + f"Content-Length: {len(answer)}\r\n\r\n".encode()
            + answer
        )
        await writer.drain()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        for stream in self.streams:
            stream.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def test_the_stream_client_checks_every_event_reached_every_subscriber() -> None:
    async with _SseServer(limit=3) as url:
        run = await sse_client.run(
            url, "events", subscribers=3, duration=0.3, drain=2.0, app_pids=[], db_pids=[]
        )
    assert (run["connected"], run["held"], run["refused"]) == (3, 3, {})
    assert run["events_written"] > 5  # through the connections the server closed
    assert run["write_errors"] == 0
    assert run["deliveries"] == run["expected"] == 3 * run["events_written"]
    assert (run["missed"], run["complete"], run["all_received"]) == (0, 3, True)
    assert 0 < run["p50_ms"] <= run["p99_ms"]


async def test_the_stream_client_counts_refused_subscribers_and_missed_events() -> None:
    async with _SseServer(limit=3, skip=1) as url:
        run = await sse_client.run(
            url, "events", subscribers=4, duration=0.3, drain=0.5, app_pids=[], db_pids=[]
        )
    assert (run["connected"], run["held"], run["refused"]) == (3, 3, {"503": 1})
    assert run["missed"] == 1
    assert run["complete"] == 2
    assert run["all_received"] is False


def test_the_memory_command_charges_each_import_once() -> None:
    # Its own process: this one has imported most of it already.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    assert list(rows) == list(memory.MODULES)
    assert all(int(count) > 0 for _, count in rows.values())  # each loaded modules
    total = re.fullmatch(r"RSS ([\d.]+) MB: ([\d.]+) MB .*, ([\d.]+) MB mapped files", lines[-1])
    assert total is not None, lines[-1]
    rss, own, mapped = (float(value) for value in total.groups())
    assert abs(rss - own - mapped) < 0.2
    assert sum(float(added) for added, _ in rows.values()) <= rss


def _soak_sample(minute: float, rss: float, fds: int, stalls: float = 0, errors: int = 0) -> Any:
    return soak.Sample(
        minute=minute,
        rss_mb={"instance-1/w1": rss},
        fds={"instance-1/w1": fds},
        requests=100,
        errors=errors,
        p50_ms=2.0,
        p99_ms=9.0,
        events=5,
        stalls={"instance-1": stalls},
        longest_lag_ms={"instance-1": 3.0},
    )


def test_the_soak_targets_are_judged_after_the_warm_up() -> None:
    def verdicts(*samples: Any) -> dict[str, bool]:
        report = soak.Report(3, 1, 200, 100, ["instance-1/w1"], list(samples), "test")
        report.judge()
        return {name: met for name, (met, _) in report.verdicts.items()}

    # Growth and a stall during the warm-up do not count; after it, they do.
    steady = (_soak_sample(0, 80, 40, stalls=3), _soak_sample(1, 100, 50, stalls=5))
    assert verdicts(*steady, _soak_sample(3, 104, 50, stalls=5)) == dict.fromkeys(
        ("rss", "fds", "errors", "stalls"), True
    )
    grown = verdicts(*steady, _soak_sample(3, 106, 51, stalls=6, errors=1))
    assert grown == dict.fromkeys(("rss", "fds", "errors", "stalls"), False)


def test_the_soak_section_of_the_docs_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    report = soak.Report(
        3, 1, 200, 100, ["instance-1/w1"],
        [_soak_sample(0, 80, 40), _soak_sample(1, 100, 50), _soak_sample(3, 101, 50)], "test",
    )  # fmt: skip
    report.judge()
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nThe rest.\n", encoding="utf-8")
    soak.write_docs(report, docs, "soak.png")
    once = docs.read_text(encoding="utf-8")
    assert once.startswith("# Benchmarks\n\nThe rest.\n\n<!-- soak:start -->\n## Soak\n")
    assert "| instance-1/w1 | 80.0 MB | 100.0 MB | 101.0 MB | 50 | 50 |" in once
    assert "![RSS, descriptors, latency and CPU over the soak](soak.png)" in once
    soak.write_docs(report, docs, None)  # again: the section is replaced, not added
    again = docs.read_text(encoding="utf-8")
    assert again.count("## Soak") == 1
    assert "soak.png" not in again


def test_a_short_soak_run_samples_every_worker_and_counts_no_errors(tmp_path: Path) -> None:
    """The harness end to end, for seconds: its own stack (Redis, the stand-in,
    two instances, nginx), a capacity run, the load, the figures."""
    docs = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--minutes", "0.15", "--warmup", "0.05",
         "--capacity-seconds", "2", "--sample", "2", "--docs", str(docs),
         "--results", str(tmp_path / "results")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a target missed
    (figures,) = (tmp_path / "results").glob("soak-*.json")
    report = json.loads(figures.read_text())
    assert report["workers"] == ["instance-1/w1", "instance-2/w1"]
    assert len(report["samples"]) >= 3
    assert all(set(sample["rss_mb"]) == set(report["workers"]) for sample in report["samples"])
    assert all(min(sample["fds"].values()) > 0 for sample in report["samples"])
    assert sum(sample["requests"] for sample in report["samples"]) > 0
    assert sum(sample["events"] for sample in report["samples"]) > 0  # the stream subscriber
    assert report["verdicts"]["errors"][0], report["verdicts"]["errors"]
    assert "## Soak" in docs.read_text(encoding="utf-8")


def test_slow_client_cut_offs_are_summed_up_against_their_deadlines() -> None:
    cuts = Cuts()
    for opened, late in [(0.0, 0.2), (1.0, -0.1), (5.0, 0.4), (6.0, 3.0)]:
        cuts.add(opened, late)
    cuts.unexpected.append("503")
    assert cuts.summary() == (
        "4 cut off, 3 within 1 s of the deadline; after it: median +0.30 s, "
        "p99 +3.00 s, max +3.00 s; unexpected answers: 1 (503)"
    )
    # Those opened from second 5 on only.
    assert cuts.summary(since=5.0).startswith("2 cut off, 1 within 1 s")
    assert Cuts().summary() == "none cut off"


def test_a_short_media_run_uploads_downloads_and_reports_the_workers_rss(tmp_path: Path) -> None:
    """benchmarks/media.py end to end, small: files up and down (their bytes
    compared by the harness), and the worker's RSS at each step."""
    figures_file = tmp_path / "media.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.media", "--files", "4", "--clients", "2",
         "--large-mb", "3", "--json", str(figures_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    assert figures["small"]["upload_files_per_s"] > 0
    assert figures["small"]["download_files_per_s"] > 0
    assert figures["large"]["upload_rss_peak_mb"] > 0
    assert figures["large"]["download_rss_peak_mb"] > 0
    assert "one 3 MB file: worker RSS peak" in result.stdout


async def test_connections_are_held_open_after_one_request_each() -> None:
    """``connection_memory`` opens its connections at once, each with one
    keep-alive request answered whole, and holds them until it has read the
    worker's RSS."""
    paths: list[str] = []
    open_now = 0
    most_open = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most_open
        open_now += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            paths.append(head.split()[1].decode())
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            most_open = max(most_open, open_now)
            await reader.read()  # until the client closes
        finally:
            open_now -= 1
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wanted = [f"/items/{index}" for index in range(50)]
        rss, _, held = await connection_memory._hold(port, wanted, os.getpid())
        assert held == 50
        assert sorted(paths) == sorted(wanted)
        assert most_open == 50  # every connection still open once the last was answered
        assert rss > 0
