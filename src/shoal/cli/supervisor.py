"""`shoal serve`'s own process: it binds the listening sockets once, runs N
worker processes on them (``worker.py``), restarts a worker that dies, and
orders the shutdown.

hypercorn's own multi-process runner keeps its copy of the listening socket
open until every worker has exited, so connections queued meanwhile are reset
when it finally closes; and the first worker to finish draining gets the
others terminated mid-request. This supervisor replaces it. On SIGTERM or
SIGINT:

1. **drain**: every worker is told to drain (``/readyz`` answers 503, event
   streams end, HTTP/1.1 answers carry ``Connection: close``) and keeps
   serving for ``drain_delay`` seconds, so that a load balancer probing
   readiness stops sending first;
2. **stop accepting**: the supervisor closes its copy of the sockets, then
   tells each worker to stop; each worker closes its own copy after taking
   the connections already queued, so once the last copy is closed, a new
   connection is refused (a load balancer retries it elsewhere) instead of
   being accepted and reset;
3. **finish**: in-flight requests get ``graceful_timeout`` seconds, then each
   worker's ``after_serving`` closes its MongoDB and Redis clients.

Each worker tells the supervisor once it accepts connections (after the app's
``before_serving``); the first to do so has ``on_serving`` called, which is
when `shoal serve` says it is serving.

A further signal during the drain delay skips the rest of it; one after that
kills the workers (so with no drain delay, the default, the second signal
kills them).
Workers still running ``stop_seconds()`` after the signal are killed, and the
exit status is then 1.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from multiprocessing.process import BaseProcess

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from . import worker

logger = logging.getLogger("shoal.serve")

#: Seconds a stopping worker gives connections it has just accepted to send
#: their request, before hypercorn closes idle connections.
SETTLE = 0.5
#: Seconds a worker has, once its requests are done, to run ``after_serving``
#: (closing MongoDB and Redis, stopping background tasks) and exit; the app's
#: shutdown itself gets one second less (hypercorn's ``shutdown_timeout``).
AFTER_SERVING = 5.0
EXIT_ALLOWANCE = 1.0
#: A worker that dies within this many seconds of its start died "at once".
MIN_UPTIME = 5.0
#: So many deaths at once in a row stop the instance (exit status 1): a worker
#: that cannot start (bad config, a failing before_serving) is not restarted forever.
MAX_QUICK_DEATHS = 5


def stop_seconds(graceful_timeout: float, drain_delay: float = 0.0) -> float:
    """The longest a SIGTERM'd `shoal serve` takes to exit: an orchestrator's
    grace period (compose's stop_grace_period, Kubernetes'
    terminationGracePeriodSeconds) must be longer."""
    return drain_delay + SETTLE + graceful_timeout + AFTER_SERVING


@dataclass
class _Worker:
    process: BaseProcess
    control: Connection
    started: float
    #: Where the worker says it serves; None once it has (or has died).
    ready: Connection | None = None


class Supervisor:
    """Run ``workers`` worker processes of the app in ``config`` and order
    their shutdown (see the module's docstring)::

        supervisor = Supervisor(config, workers=2, drain_delay=5, on_serving=announce)
        supervisor.bind()          # OSError when an address is taken
        status = supervisor.run()  # until SIGTERM / SIGINT
    """

    def __init__(
        self,
        config: HypercornConfig,
        *,
        workers: int,
        drain_delay: float = 0.0,
        on_serving: Callable[[], None] | None = None,
    ) -> None:
        self.config = copy.copy(config)
        # Each worker serves the sockets as hypercorn's single worker.
        self.config.workers = 1
        self.config.shutdown_timeout = AFTER_SERVING - EXIT_ALLOWANCE
        self.size = workers
        self.drain_delay = drain_delay
        #: After the stop: settle, requests, after_serving; then workers are killed.
        self.stop_budget = SETTLE + float(config.graceful_timeout) + AFTER_SERVING
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.sockets: Sockets | None = None
        self.state = "running"  # then "draining", then "stopping"
        self.drain_until = 0.0
        self.kill_at: float | None = None
        self.exit_status = 0
        self.on_serving = on_serving
        self.serving = False

    def bind(self) -> None:
        """Create the listening sockets; OSError when an address cannot be bound.

        One socket per address, shared by the workers, without SO_REUSEPORT
        (which hypercorn sets for several workers): a second server on a taken
        port must fail, not silently share the port's traffic.
        """
        self.sockets = self.config.create_sockets()

    # -- workers -----------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        assert self.sockets is not None
        reader, writer = self.context.Pipe(duplex=False)
        ready, ready_writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=worker.run,
            args=(
                self.config,
                self.sockets,
                reader,
                ready_writer,
                os.getpid(),
                SETTLE,
                self.stop_budget,
            ),
            name=f"shoal-worker-{slot}",
            # Joined or killed here; a daemon worker that ignores SIGTERM would
            # hang multiprocessing's exit handler.
            daemon=False,
        )
        # The child inherits the signal mask (not the handlers): blocked, a
        # signal can neither kill a worker still starting nor be lost.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, worker.STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        reader.close()  # only the worker holds the read end: our exit is its EOF
        ready_writer.close()  # and the write end of this one: its death is our EOF
        self.workers[slot] = _Worker(process, writer, time.monotonic(), ready)
        logger.info("worker %s started (pid %s)", slot, process.pid)

    def close(self) -> None:
        """Close the listening sockets, if still open (``run`` does it too)."""
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self.sockets is None:
            return
        for sock in [*self.sockets.secure_sockets, *self.sockets.insecure_sockets]:
            sock.close()
        self.sockets = None

    # -- the shutdown --------------------------------------------------------

    def _begin_drain(self) -> None:
        self.state = "draining"
        for item in self.workers.values():
            with contextlib.suppress(OSError):
                item.control.send_bytes(worker.DRAIN)
        self.drain_until = time.monotonic() + self.drain_delay
        logger.info(
            "draining: /readyz answers 503 for %gs, then the listener closes", self.drain_delay
        )

    def _stop_accepting(self) -> None:
        self.state = "stopping"
        # Ours first (we never accept), then each worker's: a worker accepts
        # until it closes its own, so the queue is served up to the last close.
        self._close_sockets()
        for item in self.workers.values():
            item.control.close()  # end of file: stop
        self.kill_at = time.monotonic() + self.stop_budget
        logger.info("stopped accepting; waiting for in-flight requests")

    def _on_signal(self) -> None:
        if self.state == "running":
            self._begin_drain()
            if self.drain_delay <= 0:
                self._stop_accepting()
        elif self.state == "draining":  # a signal during the delay: skip the rest of it
            self._stop_accepting()
        else:  # a signal once the listeners are closed: stop waiting
            self.kill_at = time.monotonic()

    def _ready(self, item: _Worker) -> None:
        """A worker's word that it accepts connections (or its death)."""
        assert item.ready is not None
        try:
            serving = item.ready.recv_bytes() == worker.SERVING
        except (EOFError, OSError):
            serving = False
        item.ready.close()
        item.ready = None
        if serving and not self.serving and self.state == "running":
            self.serving = True
            if self.on_serving is not None:
                self.on_serving()

    def _reap(self, slot: int, quick_deaths: int) -> int:
        item = self.workers.pop(slot)
        item.process.join()
        with contextlib.suppress(OSError):
            item.control.close()
        if item.ready is not None:
            item.ready.close()
        code = item.process.exitcode
        if self.state != "running":
            if code != 0:
                self.exit_status = 1
            logger.info("worker %s exited (status %s)", slot, code)
            return quick_deaths
        quick = time.monotonic() - item.started < MIN_UPTIME
        quick_deaths = quick_deaths + 1 if quick else 0
        logger.error("worker %s (pid %s) died (status %s)", slot, item.process.pid, code)
        if quick_deaths >= MAX_QUICK_DEATHS:
            logger.error("workers keep dying as they start; stopping")
            self.exit_status = 1
            self._begin_drain()
            self._stop_accepting()
        else:
            self._spawn(slot)
        return quick_deaths

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self.state == "draining":
            return max(0.0, self.drain_until - now)
        if self.state == "stopping" and self.kill_at is not None:
            return max(0.0, self.kill_at - now)
        return None

    def _deadlines(self) -> None:
        now = time.monotonic()
        if self.state == "draining" and now >= self.drain_until:
            self._stop_accepting()
        elif self.state == "stopping" and self.kill_at is not None and now >= self.kill_at:
            for item in self.workers.values():
                logger.error("worker pid %s is still running; killing it", item.process.pid)
                item.process.kill()
            self.exit_status = 1
            self.kill_at = None  # now only wait for them to be gone

    def run(self) -> int:
        """Serve until stopped; the exit status (0, or 1 if workers had to be
        killed or kept dying)."""
        if self.sockets is None:
            self.bind()
        # Python's signal handlers do not interrupt the wait below (PEP 475
        # retries it); the wakeup descriptor does.
        wake_reader, wake_writer = os.pipe()
        os.set_blocking(wake_reader, False)
        os.set_blocking(wake_writer, False)
        previous_wakeup = signal.set_wakeup_fd(wake_writer)
        previous_handlers = {
            signum: signal.signal(signum, lambda *_: None) for signum in worker.STOP_SIGNALS
        }
        quick_deaths = 0
        try:
            for slot in range(self.size):
                self._spawn(slot)
            while self.workers:
                sentinels = {item.process.sentinel: slot for slot, item in self.workers.items()}
                readiness = {
                    item.ready: item for item in self.workers.values() if item.ready is not None
                }
                ready = wait_for_any([wake_reader, *sentinels, *readiness], self._timeout())
                if wake_reader in ready:
                    received = os.read(wake_reader, 64)
                    for _ in range(sum(1 for signum in received if signum in worker.STOP_SIGNALS)):
                        self._on_signal()
                for connection in ready:
                    if connection in readiness:
                        self._ready(readiness[connection])
                for sentinel in ready:
                    if sentinel in sentinels:
                        quick_deaths = self._reap(sentinels[sentinel], quick_deaths)
                self._deadlines()
        finally:
            self._close_sockets()
            for item in self.workers.values():  # only after an exception
                with contextlib.suppress(OSError):
                    item.process.kill()
                item.process.join()
                if item.ready is not None:
                    item.ready.close()
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            os.close(wake_reader)
            os.close(wake_writer)
        return self.exit_status
