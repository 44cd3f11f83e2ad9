"""Metrics of a real `shoal serve --workers 2`: every worker counted, summed in one scrape.

Known traffic goes to the API's port (new connections, so both workers take
some); the exporter on ``metrics.bind`` and ``/metrics`` with the token then
both answer the sums for the instance, which the per-worker files in the
multiprocess directory add up to.
"""

from __future__ import annotations

import os
import signal
import socket
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from shoal.system import free_port
from tests.http.test_metrics import TOKEN, Samples, parse, value
from tests.utils.processes import ServeProcess, descendants, run_shoal, wait_until
from tests.utils.settings import write_config

BOOKS = 60
MISSING = 12
HTTP_LABELS = ["method", "route", "status"]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def _scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    status, body = _get(url, headers)
    assert status == 200, body
    return parse(body.decode())


def _config(directory: Path, **metrics: str) -> Path:
    unique = uuid.uuid4().hex[:12]
    return write_config(
        directory,
        mongodb={"database": f"test_{unique}"},
        redis={"key_prefix": f"test:{unique}:"},
        metrics=metrics,
    )


@dataclass(frozen=True)
class Served:
    process: ServeProcess
    exporter: str  # the metrics.bind listener's URL
    metrics_dir: Path


@pytest.fixture
def two_workers(tmp_path: Path, mongodb_uri: str, redis_url: str) -> Iterator[Served]:
    """`shoal serve --workers 2`, metrics on a bind of their own and behind the
    token, in a multiprocess directory the operator chose (with a stale file)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = MmapedDict(str(metrics_dir / "counter_4194303.db"))
    key = mmap_key(
        "http_requests", "http_requests_total", HTTP_LABELS, ["GET", "/books", "200"], ""
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()
    exporter = free_port()
    config = _config(tmp_path, bind=f"127.0.0.1:{exporter}", token=TOKEN)
    env = {
        "SHOAL_MONGODB_URI": mongodb_uri,
        "SHOAL_REDIS_URL": redis_url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    process = ServeProcess(
        tmp_path, config=str(config), bind=f"127.0.0.1:{free_port()}", workers=2, env=env
    )
    try:
        process.start()
        process.wait_ready()
        yield Served(process, f"http://127.0.0.1:{exporter}/metrics", metrics_dir)
    finally:
        process.cleanup()


def test_a_scrape_sums_every_worker(two_workers: Served) -> None:
    serve, exporter = two_workers.process, two_workers.exporter
    assert f"Shoal serves its metrics on {exporter.removesuffix('/metrics')}" in serve.stdout()
    assert wait_until(lambda: value(_scrape(exporter), "shoal_workers") == 2, timeout=20)
    before = _scrape(exporter)
    assert value(before, "http_requests_total", method="GET", route="/books", status="200") == 0

    paths = ["/books"] * BOOKS + ["/no/such/path"] * MISSING
    with ThreadPoolExecutor(max_workers=8) as pool:  # every request a new connection
        statuses = Counter(status for status, _ in pool.map(lambda p: _get(serve.url + p), paths))
    assert statuses == {200: BOOKS, 404: MISSING}

    def all_counted() -> bool:
        # A worker counts a request once its answer is sent: a moment after
        # the client has read it.
        samples = _scrape(exporter)
        unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
        return value(samples, "http_requests_total", **unmatched) == MISSING and (
            value(samples, "http_requests_total", method="GET", route="/books", status="200")
            == BOOKS
        )

    assert wait_until(all_counted, timeout=5)
    for samples in (
        _scrape(exporter),
        _scrape(serve.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"}),
    ):
        books = value(samples, "http_requests_total", method="GET", route="/books", status="200")
        assert books == BOOKS
        missing = value(
            samples, "http_requests_total", method="GET", route="unmatched", status="404"
        )
        assert missing == MISSING
        latency = "http_request_duration_seconds_count"
        assert value(samples, latency, method="GET", route="/books", status="200") == BOOKS
        assert value(samples, "shoal_workers") == 2
        assert (
            sum(
                v
                for (name, labels), v in samples.items()
                if name == "shoal_mongodb_command_duration_seconds_count"
                and ("command", "find") in labels
            )
            >= BOOKS
        )

    # The sums are of both workers' own counts (each took some of the traffic).
    workers = _workers(serve)
    assert len(workers) == 2
    per_worker = {pid: _served(two_workers.metrics_dir, pid) for pid in workers}
    assert sum(per_worker.values()) == BOOKS
    assert all(count > 0 for count in per_worker.values()), per_worker


def test_a_killed_worker_keeps_its_counts_and_leaves_the_worker_count(
    two_workers: Served,
) -> None:
    """SIGKILL a worker: `shoal serve` starts another. The dead one's counts stay in
    the sums (a counter never goes back); its live gauge is marked dead, so
    ``shoal_workers`` is 2 again, not 3."""
    serve, exporter = two_workers.process, two_workers.exporter
    assert wait_until(lambda: value(_scrape(exporter), "shoal_workers") == 2, timeout=20)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = Counter(status for status, _ in pool.map(_get, [serve.url + "/books"] * 20))
    assert statuses == {200: 20}
    books = {"method": "GET", "route": "/books", "status": "200"}
    assert wait_until(lambda: value(_scrape(exporter), "http_requests_total", **books) == 20, 5)

    before = _workers(serve)
    victim = max(before, key=lambda pid: _served(two_workers.metrics_dir, pid))
    assert _served(two_workers.metrics_dir, victim) > 0  # it had counted some
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(_workers(serve) - before) == 1, timeout=30), serve.output()
    assert wait_until(lambda: value(_scrape(exporter), "shoal_workers") == 2, timeout=30)

    samples = _scrape(exporter)
    assert value(samples, "shoal_workers") == 2
    assert value(samples, "http_requests_total", **books) == 20
    assert not (two_workers.metrics_dir / f"gauge_livesum_{victim}.db").exists()
    assert (two_workers.metrics_dir / f"counter_{victim}.db").exists()


def _workers(serve: ServeProcess) -> set[int]:
    return {info.pid for info in descendants(serve.pid) if "spawn" in info.cmdline}


def _served(metrics_dir: Path, pid: int) -> float:
    """``GET /books`` answers counted by one worker, from its own file."""
    path = metrics_dir / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    labels = {"method": "GET", "route": "/books", "status": "200"}
    return sum(
        float(sample.value)
        for metric in MultiProcessCollector.merge([str(path)])
        for sample in metric.samples
        if sample.name == "http_requests_total" and sample.labels == labels
    )


def test_without_a_directory_serve_makes_one_and_removes_it(
    tmp_path: Path, mongodb_uri: str, redis_url: str
) -> None:
    config = _config(tmp_path, token=TOKEN)
    env = {"SHOAL_MONGODB_URI": mongodb_uri, "SHOAL_REDIS_URL": redis_url}
    with ServeProcess(
        tmp_path, config=str(config), bind=f"127.0.0.1:{free_port()}", workers=2, env=env
    ) as serve:
        serve.wait_ready()
        workers = [info for info in serve.remember_descendants() if "spawn" in info.cmdline]
        environ = Path(f"/proc/{workers[0].pid}/environ").read_bytes().split(b"\0")
        named = [line for line in environ if line.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
        directory = Path(named[0].split(b"=", 1)[1].decode())
        assert directory.is_dir()
        scrape = {"Authorization": f"Bearer {TOKEN}"}
        assert wait_until(
            lambda: value(_scrape(serve.url + "/metrics", scrape), "shoal_workers") == 2, 20
        )
        serve.signal(signal.SIGTERM)
        assert serve.wait(30) == 0, serve.output()
        assert not directory.exists()


def test_a_taken_metrics_bind_stops_serve_with_a_clear_message(
    tmp_path: Path, mongodb_uri: str, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, bind=f"127.0.0.1:{port}")
        env = {"SHOAL_MONGODB_URI": mongodb_uri, "SHOAL_REDIS_URL": redis_url}
        result = run_shoal(
            ["serve", "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"],
            cwd=tmp_path,
            env=env,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"shoal serve: cannot listen for metrics on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in result.stderr
