"""One worker process of `shoal serve`: the app under ``hypercorn.asyncio.serve``,
on the listening sockets the supervisor created (``supervisor.py``).

A worker says ``b"serving"`` on a pipe of its own once hypercorn accepts
connections on every socket (after the app's ``before_serving``), and closes it.

The supervisor talks to a worker through a one-way pipe:

- ``b"drain"``: start draining (``Lifecycle.drain``): ``/readyz`` answers 503,
  event streams end, HTTP/1.1 answers carry ``Connection: close``; the worker
  still serves.
- end of file (the supervisor closed the pipe, or died): stop. The worker
  stops accepting, takes the connections the kernel had already queued,
  closes its copy of the sockets, lets a moment pass for the requests on
  those connections to arrive, and then hypercorn's own sequence runs: idle
  connections close, in-flight requests get ``graceful_timeout`` seconds,
  then the app's ``after_serving`` closes MongoDB and Redis.

A worker ignores SIGINT and SIGTERM sent to its process group (a terminal's
Ctrl-C, systemd's default ``KillMode=control-group``): the supervisor orders
the shutdown, and a worker that closed its listener on its own while the
supervisor still holds the socket would leave connections queued that nobody
accepts. The one SIGTERM a worker acts on is the parent-death signal
(``shoal.system``): its supervisor is gone, so it stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import ssl
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from ..app import serve_app
from ..http.connections import Connections, get_connections
from ..http.lifecycle import get_lifecycle
from ..system import follow_serve_process

logger = logging.getLogger("shoal.serve")

DRAIN = b"drain"
SERVING = b"serving"
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
WORKER_CLASSES = ("uvloop", "asyncio")


#: Connections one wake-up of the listening socket accepts at most (asyncio's
#: own loop takes up to its backlog; this keeps one sweep short).
ACCEPT_BATCH = 256


class _Listener:
    """One listening socket as this worker's event loop serves it."""

    def __init__(self, server: asyncio.AbstractServer, factory: Any, spare: socket.socket) -> None:
        self.server = server
        self.factory = factory
        # A duplicate of the descriptor: the worker accepts on it itself (see
        # _UVLoop), and once the loop's server is closed it still holds the
        # socket for the last accept sweep.
        self.spare = spare
        self.tls: dict[str, Any] = {}
        self._opening: set[asyncio.Task[None]] = set()

    def accept_queued(
        self, loop: asyncio.AbstractEventLoop, limit: int | None = ACCEPT_BATCH
    ) -> int:
        """Accept up to ``limit`` connections the kernel has queued (None: all),
        each served like one the loop accepted itself; returns how many."""
        taken = 0
        while limit is None or taken < limit:
            try:
                conn = self.spare.accept()[0]
            except (BlockingIOError, InterruptedError):  # the queue is empty
                break
            except OSError as error:  # out of descriptors, aborted: the next wake-up retries
                logger.warning("accepting a connection failed: %s", error)
                break
            conn.setblocking(False)
            task = loop.create_task(self._open(loop, conn))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
            taken += 1
        return taken

    async def _open(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self.factory, conn, **self.tls)
        except OSError:  # the client left already
            conn.close()

    async def stop_accepting(self, loop: asyncio.AbstractEventLoop) -> int:
        """Stop accepting, take what the kernel already queued, close for good.

        A busy loop reacts to a readable listener late, so connections may sit
        in the kernel's queue; closing the last descriptor would reset them.
        """
        self.server.close()  # the loop stops accepting; its descriptor is closed
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self.spare.fileno())
        # No await until close(): only a connection completed in these
        # microseconds can still be queued (and reset) when the socket closes.
        taken = self.accept_queued(loop, limit=None)
        self.spare.close()
        if self._opening:  # served like any other connection
            await asyncio.wait(set(self._opening))
        return taken


class _RecordsServers(asyncio.AbstractEventLoop):
    """An event loop that remembers the listening servers created on it, and
    the connections they accept (in ``connections``, when set: the app's, so
    that it can reset a connection whose client stopped reading).

    hypercorn closes its servers only after ``shutdown_trigger`` returns, and
    at once marks the worker terminated, which closes idle connections, a
    connection accepted a moment ago whose request has not arrived yet among
    them. Holding the servers lets the worker stop accepting first and give
    the newest connections a moment. ``asyncio.start_server`` (hypercorn's
    call) goes through ``create_server``, so no hypercorn code is patched.
    """

    listeners: list[_Listener]
    connections: Connections | None = None
    #: Whether the worker accepts on its copy of each listening socket itself.
    accepts_queued = False

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Any, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        if self.connections is not None:
            protocol_factory = self.connections.track(protocol_factory)
        sock = kwargs.get("sock")
        spare = None
        if isinstance(sock, socket.socket):
            spare = socket.socket(fileno=os.dup(sock.fileno()))
            spare.setblocking(False)
        server = await super().create_server(protocol_factory, *args, **kwargs)
        if spare is not None:
            listener = _Listener(server, protocol_factory, spare)
            for name in ("ssl", "ssl_handshake_timeout"):
                if kwargs.get(name) is not None:
                    listener.tls[name] = kwargs[name]
            if not hasattr(self, "listeners"):
                self.listeners = []
            self.listeners.append(listener)
            if self.accepts_queued:
                self.add_reader(spare.fileno(), listener.accept_queued, self)
        return server


class _UVLoop(_RecordsServers, uvloop.Loop):  # type: ignore[misc]
    """uvloop, with every queued connection accepted at each wake-up.

    libuv accepts one connection per turn of its loop and waits for the
    listening socket's next readiness event for the next one. Under load a turn
    takes tens of milliseconds, so a burst of new connections waits seconds in
    the kernel's queue while the connections already accepted are served: the
    unfair tail of decision 0027. The worker watches its own copy of the
    socket and accepts until the queue is empty (at most ``ACCEPT_BATCH`` a
    wake-up), as asyncio's loop does; libuv's server mostly finds it empty.
    """

    accepts_queued = True


class _AsyncioLoop(_RecordsServers, asyncio.SelectorEventLoop):  # type: ignore[misc]
    pass


def _loop_factory(worker_class: str) -> Callable[[], asyncio.AbstractEventLoop]:
    return _UVLoop if worker_class == "uvloop" else _AsyncioLoop


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # As hypercorn's own runner: a failed TLS handshake is the client's business.
    if isinstance(context.get("exception"), ssl.SSLError):
        return
    loop.default_exception_handler(context)


def run(
    config: HypercornConfig,
    sockets: Sockets,
    control: Connection,
    ready: Connection,
    supervisor: int,
    settle: float,
    stop_budget: float,
) -> None:
    """The worker's process: serve until the supervisor says stop."""
    # The supervisor started us with SIGINT and SIGTERM blocked: a signal that
    # came during the start is pending, and ignoring it here drops it.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    follow_serve_process()  # SIGTERM when the supervisor dies (handled below)

    # hypercorn.asyncio.serve takes no sockets: it gets the inherited
    # descriptors as fd:// binds, one worker per process.
    if config.ssl_enabled:
        config.bind = [f"fd://{sock.detach()}" for sock in sockets.secure_sockets]
        config.insecure_bind = [f"fd://{sock.detach()}" for sock in sockets.insecure_sockets]
    else:
        config.bind = [f"fd://{sock.detach()}" for sock in sockets.insecure_sockets]
    config.workers = 1

    try:
        app = serve_app()
        with asyncio.Runner(loop_factory=_loop_factory(config.worker_class)) as runner:
            loop = runner.get_loop()
            loop.set_exception_handler(_exception_handler)
            if isinstance(loop, _RecordsServers):
                loop.connections = get_connections(app)
            runner.run(_serve(app, config, control, ready, supervisor, settle, stop_budget))
    except Exception:
        # One JSON log line (with the traceback), not multiprocessing's
        # plain-text dump; the supervisor sees the status.
        logger.exception("the worker failed")
        raise SystemExit(1) from None


def freeze_start_up() -> None:
    """Take what start-up made (modules, the app, its config, schemas and routes:
    about 100,000 objects, alive as long as the worker) out of the cyclic
    garbage collector's reach. Each full collection would otherwise walk them
    all while the event loop waits: about 95 ms a time against 5 ms once frozen
    (``python -m benchmarks.gc_pauses``), a pause every request in flight meets."""
    gc.collect()
    gc.freeze()


async def _serve(
    app: Any,
    config: HypercornConfig,
    control: Connection,
    ready: Connection,
    supervisor: int,
    settle: float,
    stop_budget: float,
) -> None:
    loop = asyncio.get_running_loop()
    lifecycle = get_lifecycle(app)
    stop = asyncio.Event()
    draining: set[asyncio.Task[None]] = set()

    def on_control() -> None:
        try:
            message = control.recv_bytes()
        except (EOFError, OSError):  # the supervisor closed the pipe, or died
            loop.remove_reader(control.fileno())
            stop.set()
            return
        if message == DRAIN:
            task = loop.create_task(lifecycle.drain())
            draining.add(task)
            task.add_done_callback(draining.discard)

    def on_sigterm() -> None:
        if os.getppid() != supervisor:  # the parent-death signal: nobody to wait for
            stop.set()

    loop.add_reader(control.fileno(), on_control)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    async def shutdown_trigger() -> None:
        # hypercorn awaits this once every listener accepts: the worker serves.
        freeze_start_up()
        with contextlib.suppress(OSError):
            ready.send_bytes(SERVING)
        ready.close()
        await stop.wait()
        await lifecycle.drain()
        # If the shutdown hangs with no supervisor left to kill this process,
        # SIGALRM's default action ends it.
        signal.alarm(math.ceil(stop_budget) + 1)
        listeners: list[_Listener] = getattr(loop, "listeners", [])
        taken = 0
        for listener in listeners:
            taken += await listener.stop_accepting(loop)
        logger.info(
            "stopped accepting on %s sockets (%s queued connections taken)", len(listeners), taken
        )
        # Connections accepted just now: let their request arrive and their
        # handler start, so hypercorn waits for them instead of closing them
        # as idle.
        await asyncio.sleep(settle)

    # Inside: lifespan start-up (before_serving), serving until the trigger
    # returns, then idle connections closed, in-flight requests awaited up to
    # graceful_timeout, lifespan shutdown (after_serving).
    await serve(app, config, shutdown_trigger=shutdown_trigger)
