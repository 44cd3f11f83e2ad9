"""A local multi-instance Shoal in one command: N `shoal serve` on loopback
ports, one Redis, the MongoDB stand-in (or a given MongoDB), nginx in front.

    scripts/stack up --instances 3 --workers 2     # prints the URL
    scripts/stack status
    scripts/stack down

``up`` writes everything under a new temporary directory (nginx's config,
generated from ``deploy/nginx/nginx.conf`` with the instances as its upstream,
each process's log, the stand-in's data) and records each process it started
in ``state.json`` there; ``.shoal/stack.json`` in the working directory points
to it. ``down`` stops each recorded process by its id (checking that the id
still names the process it started) and removes the directory.

Tests and benchmarks use ``LocalStack`` directly::

    with LocalStack(workdir, instances=3, config=path, mongodb_uri=uri, redis_url=url) as stack:
        httpx.get(stack.url + "/books")   # through nginx
        stack.kill(1)                     # SIGKILL instance 1 and its workers

There, every process also dies with the process that started it (Linux's
parent-death signal), so an interrupted test leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from shoal.storage.embedded import EmbeddedStore
from shoal.system import die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
EXAMPLE_CONFIG = ROOT / "examples" / "bookstore" / "shoal.yaml"
#: Where ``up`` notes the stack it started, for ``status`` and ``down``.
POINTER = Path(".shoal") / "stack.json"
#: The header naming the instance that answered.
INSTANCE_HEADER = "X-Shoal-Instance"


class StackError(RuntimeError):
    """A process of the stack would not start; the message says which and where its log is."""


@dataclass
class Process:
    """One process the stack started, as ``state.json`` records it."""

    name: str
    pid: int
    #: The kernel's start time of the process (``/proc/<pid>/stat``): a pid is
    #: only ever signalled while it still names this very process.
    start_time: int
    log: str
    port: int | None = None

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time

    def signal(self, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to the process (or to its process group, which it leads)."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def wait_gone(self, timeout: float) -> bool:
        return _wait_until(lambda: not self.alive(), timeout)


def _start_time(pid: int) -> int | None:
    """The start time of the live (not zombie) process ``pid``, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in {"Z", "X", "x"}:
        return None
    return int(fields[19])


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of one GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except (urllib.error.URLError, OSError):
        return 0, b""


def _http_status(url: str, timeout: float = 2.0) -> int:
    return _http_get(url, timeout)[0]


def _mongodb_answers(uri: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=300)
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def nginx_binary() -> str:
    # Debian puts nginx in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise StackError("nginx is not installed (Debian: apt-get install -y nginx)")
    return found


def nginx_config(base: str, *, port: int, upstreams: Sequence[int], workdir: Path) -> str:
    """``deploy/nginx/nginx.conf`` for loopback: the instances as an upstream
    block in place of compose's DNS name, listening on ``port``, every file it
    writes under ``workdir``. Everything else (the stream location with
    ``proxy_buffering off``, the retries, the headers) is the base's."""
    conf = base
    servers = "".join(f"        server 127.0.0.1:{upstream};\n" for upstream in upstreams)
    upstream_block = f"    upstream shoal_instances {{\n{servers}    }}\n\n"
    conf = re.sub(r"^(\s*http\s*\{\n)", lambda m: m.group(1) + upstream_block, conf, flags=re.M)
    conf = re.sub(r"^\s*set \$shoal_upstream [^;]+;\n", "", conf, flags=re.M)
    conf = conf.replace("proxy_pass http://$shoal_upstream;", "proxy_pass http://shoal_instances;")
    conf = re.sub(r"^\s*resolver(_timeout)? [^;]+;\n", "", conf, flags=re.M)
    conf = re.sub(r"\blisten\s+80\b[^;]*;", f"listen 127.0.0.1:{port};", conf)
    conf = re.sub(r"^worker_processes [^;]+;", "worker_processes 1;", conf, flags=re.M)
    conf = re.sub(r"^(\s*)pid\s+[^;]+;", rf"\1pid {workdir}/nginx.pid;", conf, flags=re.M)
    conf = re.sub(r"\berror_log\s+[^;\s]+", f"error_log {workdir}/nginx-error.log", conf)
    conf = re.sub(
        r"\baccess_log\s+(?!off\b)[^;\s]+", f"access_log {workdir}/nginx-access.log", conf
    )
    temp_paths = "".join(
        f"    {kind}_temp_path {workdir}/nginx-{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = re.sub(r"^(\s*http\s*\{\n)", lambda m: m.group(1) + temp_paths, conf, flags=re.M)
    head = "daemon off;\n"
    if os.geteuid() == 0:  # workers as the same user, who owns workdir
        head += f"user {pwd.getpwuid(0).pw_name};\n"
    return head + conf


class LocalStack:
    """The processes of one local deployment (see the module's docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        instances: int = 3,
        workers: int = 1,
        config: Path = EXAMPLE_CONFIG,
        mongodb_uri: str | None = None,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        hypercorn_toml: str | None = None,
        attached: bool = True,
    ) -> None:
        self.workdir = workdir
        self.instance_count = instances
        self.workers = workers
        self.config = config.resolve()
        self.mongodb_uri = mongodb_uri
        self.redis_url = redis_url
        self.extra_env = dict(env or {})
        self.hypercorn_toml = hypercorn_toml
        #: Attached: each process dies with the one that started it (tests).
        self.attached = attached
        self.nginx_port = free_port()
        self.instance_ports = [free_port() for _ in range(instances)]
        self.processes: dict[str, Process] = {}
        self._popen: dict[str, subprocess.Popen[bytes]] = {}

    # -- addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """nginx, in front of every instance."""
        return f"http://127.0.0.1:{self.nginx_port}"

    def instance_name(self, index: int) -> str:
        return f"instance-{index + 1}"

    def instance_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.instance_ports[index]}"

    def instance(self, index: int) -> Process:
        return self.processes[self.instance_name(index)]

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # -- processes ---------------------------------------------------------------

    def _launch(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            started = subprocess.Popen(
                list(command),
                cwd=cwd or self.workdir,
                env=dict(os.environ if env is None else env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group: a terminal's Ctrl-C does not reach it,
                # and `down` can signal it with its workers.
                start_new_session=True,
                preexec_fn=die_with_parent if self.attached else None,
            )
        start_time = _start_time(started.pid)
        if start_time is None:
            raise StackError(f"{name} exited at once; see {log}")
        process = Process(name, started.pid, start_time, str(log), port)
        self.processes[name] = process
        self._popen[name] = started
        self.save()
        return process

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            popen = self._popen.get(name)
            if (popen is not None and popen.poll() is not None) or not process.alive():
                raise StackError(f"{name} exited at start-up; see {process.log}")
            if ready():
                return
            time.sleep(0.1)
        raise StackError(f"{name} was not ready after {timeout:g}s; see {process.log}")

    def _reap(self, name: str) -> None:
        popen = self._popen.pop(name, None)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(1)

    def save(self) -> None:
        state = {
            "url": self.url,
            "workdir": str(self.workdir),
            "processes": [asdict(process) for process in self.processes.values()],
        }
        self.state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")

    # -- the services ---------------------------------------------------------------

    def _start_redis(self) -> None:
        port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise StackError(
                "redis-server is not installed (Debian: apt-get install -y redis-server)"
            )
        (self.workdir / "redis").mkdir(exist_ok=True)
        self._launch(
            "redis",
            [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir / "redis"),
            ],
            port=port,
        )  # fmt: skip
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self._wait("redis", lambda: _port_open(port), 20)

    def _start_mongodb(self) -> None:
        store = EmbeddedStore(self.workdir / "mongodb")
        store.data_dir.mkdir(parents=True, exist_ok=True)
        self._launch("mongodb", store.command(), port=store.port)
        self.mongodb_uri = store.uri
        self._wait("mongodb", lambda: _mongodb_answers(store.uri), 30)

    def instance_env(self, index: int) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("SHOAL_")}
        if self.mongodb_uri is None or self.redis_url is None:
            raise StackError("the instances start after MongoDB and Redis")
        env.update(
            {
                "SHOAL_MONGODB_URI": self.mongodb_uri,
                "SHOAL_REDIS_URL": self.redis_url,
                "SHOAL_INSTANCE_NAME": self.instance_name(index),
                # nginx reaches the instances over loopback.
                "SHOAL_TRUSTED_PROXIES": "127.0.0.1",
            }
        )
        if self.hypercorn_toml is not None:
            env["SHOAL_HYPERCORN_CONFIG"] = str(self.workdir / "hypercorn.toml")
        env.update(self.extra_env)
        return env

    def start_instance(self, index: int, timeout: float = 60.0, *, wait: bool = True) -> Process:
        """Start (or start again) instance ``index``; wait until it is ready."""
        name, port = self.instance_name(index), self.instance_ports[index]
        shoal = Path(sys.executable).with_name("shoal")
        command = [
            str(shoal), "serve",
            "--config", str(self.config),
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(self.workers),
        ]  # fmt: skip
        process = self._launch(name, command, port=port, env=self.instance_env(index))
        if wait:
            self.wait_instance(index, timeout)
        return process

    def wait_instance(self, index: int, timeout: float = 60.0) -> None:
        """Wait until instance ``index`` answers /readyz with 200; stop at once
        when MongoDB refused an index (Shoal does not ask again, so it never
        becomes ready)."""
        name, url = self.instance_name(index), f"{self.instance_url(index)}/readyz"

        def ready() -> bool:
            status, body = _http_get(url)
            if status != 200 and b"indexes refused" in body:
                log = self.processes[name].log
                reason = body.decode(errors="replace")
                raise StackError(f"{name} will not be ready: {reason}; see {log}")
            return status == 200

        self._wait(name, ready, timeout)

    def _start_nginx(self) -> None:
        conf = nginx_config(
            NGINX_CONF.read_text(encoding="utf-8"),
            port=self.nginx_port,
            upstreams=self.instance_ports,
            workdir=self.workdir,
        )
        path = self.workdir / "nginx.conf"
        path.write_text(conf, encoding="utf-8")
        command = [
            nginx_binary(), "-p", str(self.workdir),
            "-e", str(self.workdir / "nginx-error.log"), "-c", str(path),
        ]  # fmt: skip
        self._launch("nginx", command, port=self.nginx_port)
        self._wait("nginx", lambda: _http_status(f"{self.url}/healthz") == 200, 20)

    def up(self) -> LocalStack:
        """Start everything (Redis and the stand-in unless given) and wait until
        nginx answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.hypercorn_toml is not None:
            (self.workdir / "hypercorn.toml").write_text(self.hypercorn_toml, encoding="utf-8")
        try:
            if self.redis_url is None:
                self._start_redis()
            if self.mongodb_uri is None:
                self._start_mongodb()
            for index in range(self.instance_count):
                self.start_instance(index, wait=False)
            for index in range(self.instance_count):
                self.wait_instance(index)
            self._start_nginx()
        except BaseException:
            self.down()
            raise
        return self

    # -- stopping ---------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL instance ``index`` and its workers at once, as a crash would."""
        process = self.instance(index)
        process.signal(signal.SIGKILL, group=True)
        process.wait_gone(10)
        self._reap(process.name)

    def stop_instance(self, index: int, timeout: float = 60.0) -> int | None:
        """SIGTERM instance ``index`` (a graceful stop) and wait for it; its exit status."""
        process = self.instance(index)
        process.signal(signal.SIGTERM)
        popen = self._popen.pop(process.name, None)
        if popen is not None:
            try:
                return popen.wait(timeout)
            except subprocess.TimeoutExpired:
                process.signal(signal.SIGKILL, group=True)
                popen.wait()
                raise
        if not process.wait_gone(timeout):
            raise TimeoutError(f"{process.name} did not stop in {timeout:g}s")
        return None

    def down(self, timeout: float = 30.0) -> None:
        """Stop every process, nginx first and the databases last: SIGTERM,
        then SIGKILL of its process group if it is still there after ``timeout``."""
        instances = sorted(name for name in self.processes if name.startswith("instance-"))
        for names in (["nginx"], instances, ["mongodb", "redis"]):
            group = [self.processes[name] for name in names if name in self.processes]
            for process in group:
                process.signal(signal.SIGTERM)
            for process in group:
                if not process.wait_gone(timeout):
                    process.signal(signal.SIGKILL, group=True)
                    process.wait_gone(5)
                # Whatever its process group still holds (an orphaned worker).
                process.signal(signal.SIGKILL, group=True)
                self._reap(process.name)

    def __enter__(self) -> LocalStack:
        return self.up()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- the command ---------------------------------------------------------------------------


def load_state(pointer: Path) -> tuple[Path, list[Process]]:
    try:
        workdir = Path(json.loads(pointer.read_text(encoding="utf-8"))["workdir"])
        state = json.loads((workdir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as error:
        raise StackError(f"no stack recorded in {pointer} ({error}); start one with `up`") from None
    return workdir, [Process(**item) for item in state["processes"]]


def _up(args: argparse.Namespace) -> int:
    if args.pointer.exists():
        with contextlib.suppress(StackError):
            _, processes = load_state(args.pointer)
            if any(process.alive() for process in processes):
                print(f"a stack is already up (see {args.pointer}); `down` first", file=sys.stderr)
                return 1
    workdir = Path(tempfile.mkdtemp(prefix="shoal-stack-"))
    stack = LocalStack(
        workdir,
        instances=args.instances,
        workers=args.workers,
        config=args.config,
        mongodb_uri=os.environ.get("SHOAL_MONGODB_URI") or None,
        attached=False,
    )
    stack.up()
    args.pointer.parent.mkdir(parents=True, exist_ok=True)
    args.pointer.write_text(json.dumps({"workdir": str(workdir)}), encoding="utf-8")
    print(f"Shoal behind nginx: {stack.url}")
    for index in range(stack.instance_count):
        print(
            f"  {stack.instance_name(index)}: {stack.instance_url(index)} ({args.workers} workers)"
        )
    print(f"  redis: {stack.redis_url}")
    print(f"  mongodb: {stack.mongodb_uri}")
    print(f"Each answer names its instance in {INSTANCE_HEADER} (development configs):")
    print(f"  curl -si {stack.url}/books | grep -i {INSTANCE_HEADER.lower()}")
    print("Commands that need the database take the same URIs:")
    print(
        f"  SHOAL_MONGODB_URI='{stack.mongodb_uri}' .venv/bin/shoal users create editor1 "
        f"--role editor --config {args.config}"
    )
    print(f"Logs and config: {workdir}. Stop it all: scripts/stack down")
    return 0


def _status(args: argparse.Namespace) -> int:
    workdir, processes = load_state(args.pointer)
    state = json.loads((workdir / "state.json").read_text(encoding="utf-8"))
    print(f"{state['url']}  ({workdir})")
    for process in processes:
        where = f"127.0.0.1:{process.port}" if process.port else ""
        status = "up" if process.alive() else "gone"
        print(f"  {process.name:<12} pid {process.pid:<8} {status:<5} {where}")
    return 0 if all(process.alive() for process in processes) else 1


def _down(args: argparse.Namespace) -> int:
    workdir, processes = load_state(args.pointer)
    stack = LocalStack(workdir, attached=False)
    stack.processes = {process.name: process for process in processes}
    stack.down()
    left = [process.name for process in processes if process.alive()]
    if left:
        print(f"still running: {', '.join(left)}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    args.pointer.unlink(missing_ok=True)
    print(f"stopped {len(processes)} processes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pointer", type=Path, default=POINTER, help=f"where the stack is noted ({POINTER})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack and print its URL")
    up.add_argument("--instances", type=int, default=3, help="`shoal serve` instances (3)")
    up.add_argument("--workers", type=int, default=2, help="workers per instance (2)")
    up.add_argument(
        "--config", type=Path, default=EXAMPLE_CONFIG, help="the Shoal config (the bookstore)"
    )
    up.set_defaults(handler=_up)
    commands.add_parser("status", help="the processes and whether they run").set_defaults(
        handler=_status
    )
    commands.add_parser("down", help="stop every process the stack started").set_defaults(
        handler=_down
    )
    args = parser.parse_args(argv)
    if args.command == "up" and (args.instances < 1 or args.workers < 1):
        parser.error("--instances and --workers must be at least 1")
    try:
        status: int = args.handler(args)
    except StackError as error:
        print(f"scripts/stack: {error}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
