"""Media fields: uploads and downloads of files, and what they cost a worker's
memory. ::

    python -m benchmarks.media [--engine standin|documentdb] [--clients 8] [--files 64]
                               [--large-mb 50] [--json FILE]

Starts the engine and ``redis-server`` (``stack.py``) and ``shoal serve
--workers 1`` with ``benchmarks/shoal.yaml`` plus a resource with a media field
(``files``, public). Then, each figure from one run:

1. one client uploads one file of ``--large-mb`` MB (50), and downloads it. (The
   embedded store cannot give back a file over about 48 MB, decision 0028: on it,
   such a file is uploaded only.)
2. ``--clients`` clients upload ``--files`` files of 1 MB in all, as
   ``multipart/form-data`` sent 64 KiB at a time, and then download each one
   (the bytes are compared): files per second and MB/s each way.

Every upload is sent 64 KiB at a time. The worker's RSS is sampled every 50 ms:
its level before, and its peak during each step. A worker that held a whole
upload or download would grow by the file's size; one that streams grows by
a few megabytes, whatever the file's size. Nothing here is a test: the figures
are one run's, on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from . import servers
from .proc import rss_mb, sampling_rss
from .services import Service
from .stack import Stack

MB = 1_000_000
PIECE = 64 * 1024
FILES = {
    "schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "blob": {"type": "string", "format": "binary"}},
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET"],
    "public_methods": ["GET", "POST"],
    "public_item_methods": ["GET"],
    "media": {"max_body_bytes": 60 * MB},
}


def _parts(size: int, seed: int) -> tuple[str, int, Iterator[bytes]]:
    """A multipart body with one field and one file of ``size`` bytes (made
    as it is sent: the client holds no more than a piece of it)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nf{seed}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="blob"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        for start in range(0, size, PIECE):
            yield _content(seed, start, min(PIECE, size - start))
        yield tail

    return boundary, len(head) + size + len(tail), body()


def _content(seed: int, start: int, length: int) -> bytes:
    """The bytes of file ``seed`` from ``start``: the same on each call."""
    block = (seed.to_bytes(4, "big") + start.to_bytes(8, "big")) * (PIECE // 12 + 1)
    return block[:length]


def upload(port: int, size: int, seed: int) -> str:
    """POST one file; the URL its item gives for it."""
    boundary, length, body = _parts(size, seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request(
            "POST",
            "/files",
            body=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 201:
            raise RuntimeError(f"upload answered {response.status}: {answer}")
        connection.request("GET", f"/files/{answer['_id']}")
        item = json.loads(connection.getresponse().read())
        url: str = item["blob"]
        return url
    finally:
        connection.close()


def download(port: int, url: str, size: int, seed: int) -> None:
    """GET one file, comparing its bytes a piece at a time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download answered {response.status}")
        start = 0
        while True:
            data = response.read(PIECE)
            if not data:
                break
            if data != _content(seed, start, len(data)):
                raise RuntimeError(f"{url}: bytes from {start} differ from the upload's")
            start += len(data)
        if start != size:
            raise RuntimeError(f"{url}: {start} bytes read, {size} sent")
    finally:
        connection.close()


def _timed(work: Any) -> float:
    began = time.monotonic()
    work()
    return time.monotonic() - began


#: The largest file the embedded store gives back (its one reply under 48 MB).
STANDIN_READ_LIMIT = 45 * MB


def run(engine: str, clients: int, files: int, large_mb: int = 50) -> dict[str, Any]:
    large_size = large_mb * MB
    figures: dict[str, Any] = {
        "engine": engine,
        "clients": clients,
        "files": files,
        "large_mb": large_mb,
    }
    with (
        tempfile.TemporaryDirectory(prefix="shoal-media-") as name,
        Stack(Path(name), engine=engine) as stack,
    ):
        workdir = Path(name)
        config = servers.derived_config(
            workdir,
            "media",
            resources={**yaml.safe_load(servers.CONFIG.read_text())["resources"], "files": FILES},
        )  # fmt: skip
        shoal: Service = servers.shoal(
            workdir, 1, mongodb_uri=stack.mongodb_uri, database=stack.database,
            redis_url=stack.redis_url, config=config,
        )  # fmt: skip
        with shoal:
            [worker] = shoal.workers()
            port = shoal.port
            upload(port, 1000, 0)  # the first request's imports and indexes, before measuring
            figures["rss_idle_mb"] = idle = rss_mb(worker)
            # The large file first, from the idle level: what it adds is its own.
            with sampling_rss(worker, 0.05) as big_up:
                big_url = upload(port, large_size, 999)
            figures["large"] = {"upload_rss_peak_mb": max(big_up)}
            if engine != "standin" or large_size <= STANDIN_READ_LIMIT:
                with sampling_rss(worker, 0.05) as big_down:
                    download(port, big_url, large_size, 999)
                figures["large"]["download_rss_peak_mb"] = max(big_down)
            urls: list[str] = [""] * files
            with ThreadPoolExecutor(clients) as pool, sampling_rss(worker, 0.05) as small:

                def up() -> None:
                    for index, url in enumerate(
                        pool.map(lambda seed: upload(port, MB, seed), range(1, files + 1))
                    ):
                        urls[index] = url

                def down() -> None:
                    list(
                        pool.map(
                            lambda pair: download(port, pair[1], MB, pair[0] + 1),
                            enumerate(urls),
                        )
                    )

                up_seconds = _timed(up)
                down_seconds = _timed(down)
            figures["small"] = {
                "upload_files_per_s": files / up_seconds,
                "upload_mb_per_s": files * MB / up_seconds / MB,
                "download_files_per_s": files / down_seconds,
                "download_mb_per_s": files * MB / down_seconds / MB,
                "rss_peak_mb": max(small),
            }
            figures["rss_after_mb"] = rss_mb(worker)
    one_mb, large = figures["small"], figures["large"]
    print(f"engine: {engine}; one worker; RSS idle {idle:.1f} MB", flush=True)
    print(
        f"{files} files of 1 MB, {clients} clients: upload {one_mb['upload_files_per_s']:.1f}"
        f" files/s ({one_mb['upload_mb_per_s']:.1f} MB/s), download "
        f"{one_mb['download_files_per_s']:.1f} files/s "
        f"({one_mb['download_mb_per_s']:.1f} MB/s); worker RSS peak "
        f"{one_mb['rss_peak_mb']:.1f} MB (+{one_mb['rss_peak_mb'] - idle:.1f})",
        flush=True,
    )
    down_peak = large.get("download_rss_peak_mb")
    downloading = (
        f"{down_peak:.1f} MB downloading (+{down_peak - idle:.1f})"
        if down_peak is not None
        else "not downloaded (the embedded store gives back no file over 45 MB)"
    )
    print(
        f"one {large_mb} MB file: worker RSS peak {large['upload_rss_peak_mb']:.1f} MB "
        f"uploading (+{large['upload_rss_peak_mb'] - idle:.1f}), {downloading}; "
        f"{figures['rss_after_mb']:.1f} MB after",
        flush=True,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="standin", choices=("standin", "documentdb"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--large-mb", type=int, default=50, help="the large file's size")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run(args.engine, args.clients, args.files, args.large_mb)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
