"""`shoal serve` end to end: a real process on a loopback port, as an operator runs it.

Each test starts its own `shoal serve` in a temporary directory holding a copy
of the example config, so the embedded store's `.shoal/` lands there. Every wait
has a deadline and every process is killed in `finally` (ServeProcess.cleanup).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoal.cli.serve import (
    HYPERCORN_DEFAULTS,
    ServeError,
    ServeOptions,
    serve_config,
)
from shoal.cli.supervisor import stop_seconds
from shoal.system import free_port
from tests.utils.processes import (
    ProcessInfo,
    ServeProcess,
    alive,
    processes_mentioning,
    run_shoal,
    wait_until,
)
from tests.utils.settings import EXAMPLE_CONFIG

GRACEFUL_TIMEOUT = float(HYPERCORN_DEFAULTS["graceful_timeout"])
#: Seconds a stopped `shoal serve` may take at most (it then kills its workers).
STOP_DEADLINE = stop_seconds(GRACEFUL_TIMEOUT) + 5
#: Seconds a child has to disappear once its parent is gone.
ORPHAN_DEADLINE = 10.0
#: Seconds a child has to notice its parent was killed (a parent-death signal is instant).
KILLED_PARENT_DEADLINE = 5.0
#: Seconds an orphaned worker takes: it stops as if told to (drains its requests).
ORPHANED_WORKER_DEADLINE = stop_seconds(GRACEFUL_TIMEOUT)


def _embedded_store(processes: list[ProcessInfo]) -> list[ProcessInfo]:
    return [info for info in processes if "nx_27017" in info.cmdline]


def _workers(processes: list[ProcessInfo]) -> list[ProcessInfo]:
    return [info for info in processes if "multiprocessing.spawn" in info.cmdline]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with a copy of the example config (no MongoDB URI: embedded store)."""
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "shoal.yaml")
    return tmp_path


@pytest.fixture
def serve(workdir: Path) -> Iterator[ServeProcess]:
    """`shoal serve` on the example config and the embedded store, started and ready."""
    process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        process.start()
        process.wait_ready()
        yield process
    finally:
        process.cleanup()


# --- start-up ----------------------------------------------------------------------


def test_serve_without_mongodb_uri_runs_the_embedded_store_with_a_warning(
    serve: ServeProcess, workdir: Path
) -> None:
    status, body = serve.get("/readyz")
    assert status == 200
    assert json.loads(body)["status"] == "ready"

    stderr = serve.stderr()
    warnings = [line for line in stderr.splitlines() if "embedded store" in line]
    assert len(warnings) == 1, serve.output()
    assert warnings[0].startswith("WARNING:")
    assert "development" in warnings[0]
    assert serve.url in serve.stdout(), serve.output()

    data_dir = workdir / ".shoal"
    assert data_dir.is_dir(), "the embedded store keeps its data in .shoal/ beside the config"
    assert str(data_dir) in warnings[0]

    stores = _embedded_store(serve.children())
    assert len(stores) == 1, f"expected one embedded store child: {serve.children()}"
    assert str(data_dir) in stores[0].cmdline


# --- shutdown ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_serve_and_its_children(serve: ServeProcess, signum: int) -> None:
    started = serve.remember_descendants()
    assert _embedded_store(started), f"no embedded store among {started}"
    assert _workers(started), f"no hypercorn worker among {started}"

    serve.signal(signum)
    assert serve.wait(STOP_DEADLINE) == 0, serve.output()

    assert wait_until(lambda: not alive(started), ORPHAN_DEADLINE), (
        f"left running: {alive(started)}"
    )
    assert serve.get("/healthz", timeout=1.0)[0] == 0, "something still answers on the port"


def test_ctrl_c_in_a_terminal_stops_everything(workdir: Path) -> None:
    """Ctrl-C reaches the whole foreground process group, workers included."""
    process = ServeProcess(
        workdir, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}", new_session=True
    )
    try:
        process.start()
        process.wait_ready()
        started = process.remember_descendants()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(STOP_DEADLINE) == 0, process.output()
        assert wait_until(lambda: not alive(started), ORPHAN_DEADLINE), (
            f"left running: {alive(started)}"
        )
        assert "Traceback" not in process.stderr(), process.output()
    finally:
        process.cleanup()


def test_sigkill_of_serve_takes_the_embedded_store_with_it(serve: ServeProcess) -> None:
    stores = _embedded_store(serve.children())
    assert len(stores) == 1

    serve.signal(signal.SIGKILL)
    serve.wait(10)

    assert wait_until(lambda: not stores[0].alive(), KILLED_PARENT_DEADLINE), (
        "the embedded store outlived a killed `shoal serve` (orphan)"
    )


def test_sigkill_of_serve_takes_its_workers_with_it(serve: ServeProcess) -> None:
    """A killed `shoal serve` must not leave workers serving on its port: each
    one stops as it would on SIGTERM (its requests finish), then exits."""
    started = serve.remember_descendants()
    assert _workers(started), f"no worker among {started}"
    # The embedded store has its own test above; here: workers and their helpers.
    others = [info for info in started if info not in _embedded_store(started)]

    serve.signal(signal.SIGKILL)
    serve.wait(10)

    assert wait_until(lambda: not alive(others), ORPHANED_WORKER_DEADLINE), (
        f"processes outlived a killed `shoal serve`: {alive(others)}"
    )
    assert serve.get("/healthz", timeout=1.0)[0] == 0, "an orphan still answers on the port"
    assert "Traceback" not in serve.stderr(), serve.output()


# --- several workers ------------------------------------------------------------------


def test_two_workers_with_redis_and_mongodb(
    workdir: Path, redis_url: str, mongodb_uri: str
) -> None:
    process = ServeProcess(
        workdir,
        config="shoal.yaml",
        bind=f"127.0.0.1:{free_port()}",
        workers=2,
        env={"SHOAL_REDIS_URL": redis_url, "SHOAL_MONGODB_URI": mongodb_uri},
    )
    try:
        process.start()
        process.wait_ready()
        # Each worker logs its own "Running on" line once it listens.
        assert wait_until(lambda: process.stderr().count("Running on") == 2, 20), process.output()
        for _ in range(10):
            status, body = process.get("/readyz")
            assert status == 200
            assert json.loads(body)["checks"] == {"mongodb": "ok", "redis": "ok"}

        children = process.children()
        assert len({info.pid for info in _workers(children)}) == 2, children
        assert not _embedded_store(children), "a MongoDB URI was given: no embedded store"
        assert "embedded store" not in process.stderr()
        # No store data: only the development secret the workers sign with.
        assert [path.name for path in (workdir / ".shoal").iterdir()] == ["secret_key"]

        started = process.remember_descendants()
        process.signal(signal.SIGTERM)
        assert process.wait(STOP_DEADLINE) == 0, process.output()
        assert wait_until(lambda: not alive(started), ORPHAN_DEADLINE), (
            f"left running: {alive(started)}"
        )
    finally:
        process.cleanup()


# --- failures at start-up ---------------------------------------------------------------


def test_port_in_use_is_a_clear_error(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{port}")
        try:
            process.start()
            status = process.wait(30)
        finally:
            process.cleanup()
    assert status != 0, process.output()
    stderr = process.stderr()
    assert "Traceback" not in stderr, stderr
    assert f"127.0.0.1:{port}" in stderr
    assert "in use" in stderr.lower(), stderr
    # No embedded store was started (the bind fails first), and nothing is left.
    assert wait_until(lambda: not processes_mentioning(str(workdir)), ORPHAN_DEADLINE), (
        processes_mentioning(str(workdir))
    )


def test_port_in_use_is_not_announced_as_serving(workdir: Path) -> None:
    """The "serving <url>" line must not appear when nothing could listen there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{port}")
        try:
            process.start()
            assert process.wait(30) != 0
        finally:
            process.cleanup()
    assert f"http://127.0.0.1:{port}" not in process.stdout(), process.output()


# --- hypercorn.toml ---------------------------------------------------------------------


def test_repo_hypercorn_toml_equals_the_built_in_defaults(repo_root: Path) -> None:
    with (repo_root / "hypercorn.toml").open("rb") as file:
        assert tomllib.load(file) == HYPERCORN_DEFAULTS


def test_flags_override_the_toml_and_keep_the_rest(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOAL_HYPERCORN_CONFIG", raising=False)
    monkeypatch.chdir(repo_root)

    config = serve_config(ServeOptions(bind="127.0.0.1:9999", workers=3)).hypercorn

    assert config.bind == ["127.0.0.1:9999"]
    assert config.workers == 3
    assert config.worker_class == "uvloop"
    assert config.graceful_timeout == HYPERCORN_DEFAULTS["graceful_timeout"]
    assert config.backlog == HYPERCORN_DEFAULTS["backlog"]


def test_a_hypercorn_toml_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOAL_HYPERCORN_CONFIG", raising=False)
    (tmp_path / "hypercorn.toml").write_text(
        'bind = ["127.0.0.1:7001"]\nworkers = 4\nworker_class = "asyncio"\n'
        "graceful_timeout = 3\nbacklog = 64\n"
    )
    monkeypatch.chdir(tmp_path)

    from_file = serve_config(ServeOptions()).hypercorn
    assert from_file.bind == ["127.0.0.1:7001"]
    assert from_file.workers == 4
    assert from_file.worker_class == "asyncio"
    assert from_file.graceful_timeout == 3
    assert from_file.backlog == 64

    flags = serve_config(ServeOptions(bind="127.0.0.1:7002", workers=1)).hypercorn
    assert flags.bind == ["127.0.0.1:7002"]
    assert flags.workers == 1
    assert flags.graceful_timeout == 3


def test_without_a_toml_the_built_in_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOAL_HYPERCORN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    config = serve_config(ServeOptions()).hypercorn

    assert config.bind == HYPERCORN_DEFAULTS["bind"]
    assert config.workers == HYPERCORN_DEFAULTS["workers"]
    assert config.worker_class == HYPERCORN_DEFAULTS["worker_class"]
    assert config.graceful_timeout == HYPERCORN_DEFAULTS["graceful_timeout"]


def test_commands_use_the_store_serve_is_running(serve: ServeProcess, workdir: Path) -> None:
    """`shoal users create` next to a running development server writes into the
    store that server uses (a second store on the same files could not start)."""
    created = run_shoal(
        [
            "users",
            "create",
            "editor1",
            "--role",
            "editor",
            "--password-stdin",
            "--config",
            "shoal.yaml",
        ],
        cwd=workdir,
        input="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    response = httpx.post(
        f"{serve.url}/auth/login",
        json={"username": "editor1", "password": "a long enough password"},
        timeout=10,
    )
    assert response.status_code == 200
    assert "access_token" in response.json()


def test_a_second_serve_on_the_same_config_says_one_is_running(
    serve: ServeProcess, workdir: Path
) -> None:
    """Two `scripts/serve-example` at once (on two ports): the second says why it
    cannot start, instead of pointing at a log file."""
    result = run_shoal(
        ["serve", "--config", "shoal.yaml", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=workdir,
        timeout=30,
    )
    assert result.returncode == 1
    assert "an embedded store is already running on" in result.stderr
    assert str(workdir / ".shoal") in result.stderr
    assert "stop it first" in result.stderr
    assert "Traceback" not in result.stderr
    assert serve.get("/readyz")[0] == 200  # the first one is untouched


def test_development_without_a_secret_signs_with_one_kept_beside_the_config(
    serve: ServeProcess, workdir: Path
) -> None:
    secret_file = workdir / ".shoal" / "secret_key"
    notices = [line for line in serve.stderr().splitlines() if "secret_key" in line]
    assert notices == [
        f"WARNING: no secret_key: tokens are signed with a random secret kept in {secret_file} "
        "(development only)"
    ], serve.output()
    assert secret_file.stat().st_mode & 0o777 == 0o600
    # Nothing on stderr is raw text from a library: Shoal's own notices, or JSON.
    for line in serve.stderr().splitlines():
        assert line.startswith("WARNING: ") or json.loads(line), line


# --- graceful shutdown, crashes, a taken port with several workers ----------------------


def _served_with_redis(
    workdir: Path, redis_url: str, mongodb_uri: str, *, workers: int = 2, port: int | None = None
) -> ServeProcess:
    return ServeProcess(
        workdir,
        config="shoal.yaml",
        bind=f"127.0.0.1:{port or free_port()}",
        workers=workers,
        env={"SHOAL_REDIS_URL": redis_url, "SHOAL_MONGODB_URI": mongodb_uri},
        new_session=True,
    )


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response read off a raw socket: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the headers: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("to_group", [False, True], ids=["to-serve", "to-process-group"])
def test_sigterm_closes_the_listener_and_lets_a_request_in_flight_finish(
    workdir: Path, redis_url: str, mongodb_uri: str, to_group: bool
) -> None:
    """The port refuses new connections while a request already in flight is
    still served to its end, with two workers; signalling the whole process
    group (systemd's default) changes nothing."""
    process = _served_with_redis(workdir, redis_url, mongodb_uri)
    port = int(process.bind.rsplit(":", 1)[1])
    try:
        process.start()
        process.wait_ready()
        body = json.dumps({"username": "nobody", "password": "not the password"}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /auth/login HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            time.sleep(0.3)  # the request has reached a worker, which awaits the rest
            if to_group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.signal(signal.SIGTERM)
            assert wait_until(lambda: _refuses(port), 5), "the port still accepts connections"
            sock.sendall(body[10:])
            status, headers, answer = _read_response(sock)
        assert status == 401, answer
        assert json.loads(answer)["_status"] == "ERR"
        assert headers.get("connection") == "close"
        assert process.wait(STOP_DEADLINE) == 0, process.output()
        assert "Traceback" not in process.stderr(), process.output()
    finally:
        process.cleanup()


def test_drain_delay_keeps_serving_with_readyz_503_then_closes(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "hypercorn.toml").write_text("drain_delay = 2\n")
    process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    port = int(process.bind.rsplit(":", 1)[1])
    try:
        process.start()
        process.wait_ready()
        process.signal(signal.SIGTERM)
        assert wait_until(lambda: process.get("/readyz")[0] == 503, 2), process.output()
        status, body = process.get("/readyz")
        assert status == 503
        assert json.loads(body)["_error"]["message"] == "not ready: shutting down"
        # Still serving everything else during the delay, keep-alive ended.
        response = httpx.get(f"{process.url}/books", timeout=5)
        assert response.status_code == 200
        assert response.headers["connection"] == "close"
        assert not _refuses(port)
        assert wait_until(lambda: _refuses(port), 5), "the listener never closed"
        assert process.wait(STOP_DEADLINE) == 0, process.output()
    finally:
        process.cleanup()


def test_a_worker_that_dies_is_replaced(workdir: Path, redis_url: str, mongodb_uri: str) -> None:
    process = _served_with_redis(workdir, redis_url, mongodb_uri)
    try:
        process.start()
        process.wait_ready()
        # Both workers serve (each logs its "Running on" line once it listens).
        assert wait_until(lambda: process.stderr().count("Running on") == 2, 20), process.output()
        first = _workers(process.children())
        assert len(first) == 2
        first[0].kill()
        assert wait_until(
            lambda: bool(
                {info.pid for info in _workers(process.children())} - {w.pid for w in first}
            ),
            20,
        ), process.output()
        assert wait_until(lambda: len(_workers(process.children())) == 2, 20)
        assert wait_until(lambda: process.stderr().count("Running on") == 3, 20), process.output()
        for _ in range(6):
            assert process.get("/readyz")[0] == 200
        assert "died" in process.stderr()
        process.signal(signal.SIGTERM)
        assert process.wait(STOP_DEADLINE) == 0, process.output()
    finally:
        process.cleanup()


def test_a_second_serve_on_a_taken_port_fails_even_with_several_workers(
    tmp_path: Path, redis_url: str, mongodb_uri: str
) -> None:
    """hypercorn sets SO_REUSEPORT for several workers, which would let a
    second server share the port silently; Shoal's sockets do not."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for directory in (first_dir, second_dir):
        directory.mkdir()
        shutil.copy(EXAMPLE_CONFIG, directory / "shoal.yaml")
    port = free_port()
    first = _served_with_redis(first_dir, redis_url, mongodb_uri, port=port)
    second = _served_with_redis(second_dir, redis_url, mongodb_uri, port=port)
    try:
        first.start()
        first.wait_ready()
        second.start()
        assert second.wait(30) == 1, second.output()
        assert f"127.0.0.1:{port}" in second.stderr()
        assert "in use" in second.stderr().lower(), second.output()
        assert "Traceback" not in second.stderr()
        assert first.get("/readyz")[0] == 200
    finally:
        second.cleanup()
        first.cleanup()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("drain_delay = -1\n", "drain_delay must be a number of seconds"),
        ('drain_delay = "soon"\n', "drain_delay must be a number of seconds"),
        ('worker_class = "trio"\n', "worker_class 'trio' is not supported"),
        ('workers = "two"\n', "workers must be a whole number"),
    ],
)
def test_bad_serve_settings_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    (tmp_path / "hypercorn.toml").write_text(toml)
    monkeypatch.delenv("SHOAL_HYPERCORN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ServeError, match=message) as refused:
        serve_config(ServeOptions())
    assert refused.value.status == 2


def test_drain_delay_comes_from_the_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_HYPERCORN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert serve_config(ServeOptions()).drain_delay == 0
    (tmp_path / "hypercorn.toml").write_text("drain_delay = 7.5\n")
    assert serve_config(ServeOptions()).drain_delay == 7.5
    assert not hasattr(serve_config(ServeOptions()).hypercorn, "drain_delay")


# --- an app with hooks --------------------------------------------------------------


def test_serve_runs_the_hooks_the_config_names(tmp_path: Path) -> None:
    """examples/hooks as an operator serves it: the workers import orders.py
    from beside the config and its rules hold."""
    example = EXAMPLE_CONFIG.parents[1] / "hooks"
    for name in ("shoal.yaml", "orders.py"):
        shutil.copy(example / name, tmp_path / name)
    process = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        process.start()
        process.wait_ready()
        created = run_shoal(
            ["apikeys", "create", "--role", "clerk", "--config", "shoal.yaml"], cwd=tmp_path
        )
        assert created.returncode == 0, created.stderr
        key = {"X-API-Key": created.stdout.strip().splitlines()[-1]}
        customer = httpx.post(
            f"{process.url}/customers", json={"name": "Ann"}, headers=key, timeout=10
        ).json()
        order = {"customer": customer["_id"], "lines": [{"sku": "a", "quantity": 3, "price": 2}]}
        created_order = httpx.post(f"{process.url}/orders", json=order, headers=key, timeout=10)
        assert created_order.status_code == 201, created_order.text
        item = httpx.get(created_order.headers["Location"], headers=key, timeout=10).json()
        assert item["total"] == 6
    finally:
        process.cleanup()


# --- what it says as it starts ------------------------------------------------------

#: A hook that holds the worker's start-up (before_serving) until a file exists.
HELD_START = """\
import asyncio
from pathlib import Path

HERE = Path(__file__).parent


def hold(app):
    @app.before_serving
    async def wait_for_the_go() -> None:
        (HERE / "starting").touch()
        while not (HERE / "go").exists():
            await asyncio.sleep(0.05)
"""


def test_shoal_is_serving_is_said_once_a_worker_accepts_connections(workdir: Path) -> None:
    """Not when the workers are spawned: a worker still in its start-up does
    not answer, so "Shoal is serving" waits for it."""
    (workdir / "held.py").write_text(HELD_START, encoding="utf-8")
    with (workdir / "shoal.yaml").open("a", encoding="utf-8") as config:
        config.write("\nhooks: ['held:hold']\n")
    process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        process.start()
        assert wait_until(lambda: (workdir / "starting").exists(), 30), process.output()
        # The worker is inside before_serving: nothing accepts yet.
        assert "Shoal is serving" not in process.stdout(), process.output()
        (workdir / "go").touch()
        assert wait_until(lambda: "Shoal is serving" in process.stdout(), 30), process.output()
        # Said once a worker accepts: the next request is answered.
        assert process.get("/healthz", timeout=10)[0] == 200
        assert process.stdout() == f"Shoal is serving {process.url} (workers: 1)\n"
    finally:
        process.cleanup()


def test_a_development_config_with_no_resources_warns_that_it_serves_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "shoal.yaml"
    config.write_text("environment: development\n", encoding="utf-8")
    process = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        process.start()
        process.wait_ready()
        warnings = [line for line in process.stderr().splitlines() if "no resources" in line]
        assert warnings == [
            f"WARNING: {config}: no resources and no data_api: the API serves nothing but "
            "/auth, /docs and the health checks (see docs/reference/configuration.md)"
        ], process.output()
    finally:
        process.cleanup()


@pytest.mark.parametrize("environment", ["development", "production"])
def test_without_redis_the_warning_says_what_stays_in_one_process(
    tmp_path: Path, mongodb_uri: str, environment: str
) -> None:
    """The same true sentence in every environment (production is not called
    "development")."""
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "shoal.yaml")
    env = {
        "SHOAL_ENVIRONMENT": environment,
        "SHOAL_MONGODB_URI": mongodb_uri,
        "SHOAL_MONGODB_DATABASE": f"warn_{environment}",
        "SHOAL_SECRET_KEY": "a-production-secret-of-32-bytes-or-more",
    }
    process = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}", env=env)
    try:
        process.start()
        process.wait_ready()
        warnings = [line for line in process.stderr().splitlines() if "redis.url" in line]
        assert warnings == [
            "WARNING: no redis.url: sessions, refresh tokens, revocations, rate limits, "
            "idempotency keys and the cache live in this one process (so --workers 1 only, "
            "and a restart ends every session); set redis.url (SHOAL_REDIS_URL) to share "
            "them between workers and instances"
        ], process.output()
        assert "development" not in warnings[0]
    finally:
        process.cleanup()


def test_an_unreachable_mongodb_is_logged_in_short_lines(tmp_path: Path) -> None:
    """One line per failure, naming the address and the error, without the
    topology description PyMongo appends (hundreds of characters)."""
    nowhere = free_port()  # nothing listens there
    config = tmp_path / "shoal.yaml"
    config.write_text(
        "environment: production\n"
        f"mongodb: {{uri: 'mongodb://127.0.0.1:{nowhere}/', server_selection_timeout_ms: 300}}\n"
        "resources:\n"
        "  books: {schema: {type: object}, public_methods: [GET], unique: [isbn]}\n",
        encoding="utf-8",
    )
    env = {"SHOAL_SECRET_KEY": "a-production-secret-of-32-bytes-or-more"}
    process = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}", env=env)

    def unreachable() -> list[dict[str, str]]:
        lines = [json.loads(line) for line in process.stderr().splitlines() if line.startswith("{")]
        return [line for line in lines if "MongoDB unreachable" in line["message"]]

    try:
        process.start()
        process.wait_ready("/healthz")
        assert process.get("/books")[0] == 503
        # The request's failure, and the start-up's index retries.
        assert wait_until(lambda: len(unreachable()) >= 3, 30), process.output()
    finally:
        process.cleanup()
    for line in unreachable():
        assert "Topology" not in line["message"], line
        assert "configured timeouts" not in line["message"], line
        assert len(line["message"]) < 200, line
    storage = [line["message"] for line in unreachable() if line["logger"] == "shoal.storage"]
    assert storage, process.output()
    for message in storage:
        assert message.startswith(f"MongoDB unreachable: 127.0.0.1:{nowhere}: "), message


#: A hook whose registration waits (in `shoal serve`'s own process, which builds
#: the app once before anything starts) until the test interrupts it.
HELD_REGISTRATION = """\
import time
from pathlib import Path

HERE = Path(__file__).parent


def hold(app):
    (HERE / "registering").touch()
    while True:
        time.sleep(0.05)
"""


def test_ctrl_c_before_the_workers_start_is_one_line_and_130(workdir: Path) -> None:
    (workdir / "held.py").write_text(HELD_REGISTRATION, encoding="utf-8")
    with (workdir / "shoal.yaml").open("a", encoding="utf-8") as config:
        config.write("\nhooks: ['held:hold']\n")
    process = ServeProcess(workdir, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        process.start()
        assert wait_until(lambda: (workdir / "registering").exists(), 30), process.output()
        process.signal(signal.SIGINT)
        assert process.wait(30) == 130, process.output()
    finally:
        process.cleanup()
    assert process.stderr().splitlines()[-1] == "shoal serve: interrupted", process.output()
    assert "Traceback" not in process.stderr()
    assert process.stdout() == ""
