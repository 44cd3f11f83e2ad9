"""A TCP proxy on loopback that delays every answer, to put a server at a
network distance (this kernel has no netem).

Put in front of MongoDB, it makes each operation take at least ``delay``
seconds after MongoDB has done it: requests stay in flight long enough for a
test to stop or kill an instance in the middle of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from shoal.system import free_port


class DelayProxy:
    """``127.0.0.1:port`` → ``target``, answers held back ``delay`` seconds::

    with DelayProxy("127.0.0.1", 27017, delay=0.05) as proxy:
        uri = f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true"
    """

    def __init__(self, host: str, port: int, *, delay: float) -> None:
        self.target = (host, port)
        self.delay = delay
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, upstream_writer})
        await asyncio.gather(
            self._pump(reader, upstream_writer, 0.0),
            self._pump(upstream_reader, writer, self.delay),
        )
        self._writers.difference_update({writer, upstream_writer})

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    def start(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
