"""Benchmark Shoal against the stack's ceiling and against Eve, in one run.

One command (``scripts/bench``, or ``python -m benchmarks.run`` in the
project's virtualenv) starts, on free loopback ports:

- the MongoDB stand-in (``shoal.storage.embedded.EmbeddedStore``, in a temp dir),
  or FerretDB or DocumentDB with ``--engine ferretdb`` or ``--engine documentdb``,
  and ``redis-server`` (``stack.py``);
- for each worker count (1, then 2): the minimal Quart app under hypercorn
  (the stack's ceiling), ``shoal serve`` with ``benchmarks/shoal.yaml``, and
  Eve 2.3 under gunicorn, one after the other, on the same data (``servers.py``,
  ``scenarios.py``);
- once, the driver's ceiling (``benchmarks/driver.py``);
- for each added delay, Shoal and Eve with the database at that distance;
- the headline scenarios and the driver's ceiling on the other engines, then
  change streams, keyset pagination (on the run's engine and on DocumentDB), the
  load balancer and admission control, each in a phase of its own
  (``scenarios.py``);

drives each with ``wrk`` for a fixed time (``measure.py``), prints requests/s,
p50/p99, errors and peak RSS per worker, the ratios and the targets they meet
(``report.py``), samples a Shoal worker with py-spy on the hot read paths, and
writes ``benchmarks/results/latest.json``, ``docs/benchmarks.md`` and
``docs/benchmarks.png`` (``docs.py``).

``--docs-only`` re-renders the docs from ``latest.json`` without measuring.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import docs
from .data import Dataset, Workload
from .engine import redact
from .host import machine, raise_open_files_limit, versions
from .measure import Meter
from .options import Options, parse_options
from .report import busy_note, summary_text
from .scenarios import Scenarios
from .stack import Stack
from .targets import targets

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
COMMAND = "scripts/bench"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as name:
        yield Path(name)


def measure_all(options: Options, workdir: Path) -> tuple[Meter, Scenarios]:
    """Start the stack, run every phase, stop the stack."""
    with Stack(workdir, options.mongodb_uri, engine=options.engine) as stack:
        assert stack.engine is not None
        print(f"database engine: {stack.engine.name} ({redact(stack.mongodb_uri)})", flush=True)
        dataset = Dataset(stack.mongodb_uri, stack.database)
        try:
            workload = Workload(
                dataset, workdir, documents=options.documents, patch_pool=options.patch_pool
            )
            meter = Meter(options, stack.db_pids)
            scenarios = Scenarios(
                options, stack, workload, meter, workdir=workdir, results_dir=RESULTS_DIR
            )
            scenarios.run()
        finally:
            dataset.close()
        scenarios.engine = stack.engine.describe()
    return meter, scenarios


def collect(meter: Meter, scenarios: Scenarios, options: Options, elapsed: float) -> dict[str, Any]:
    results = meter.results
    redacted_uri = None if options.mongodb_uri is None else redact(options.mongodb_uri)
    note = busy_note(results, options.busy_percent)
    if note is not None:
        meter.notes.append(note)
    return {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": COMMAND,
        "elapsed_s": round(elapsed, 1),
        "options": {**asdict(options), "mongodb_uri": redacted_uri},
        "engine": scenarios.engine,
        "machine": machine(),
        "versions": versions(),
        "results": [result.to_json() for result in results],
        "targets": [{**asdict(target), "status": target.status} for target in targets(results)],
        "profiles": scenarios.profiles,
        "network": scenarios.network,
        "phase_seconds": scenarios.phase_seconds,
        "notes": meter.notes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    options, docs_only = parse_options(argv)
    latest = RESULTS_DIR / "latest.json"
    if docs_only:
        data = json.loads(latest.read_text())
        print(summary_text(data))
        docs.write(data, ROOT)
        return 0
    limit = raise_open_files_limit()
    if limit < options.many_connections + 100:
        print(f"warning: open files limit {limit} is low for "
              f"{options.many_connections} connections", file=sys.stderr)  # fmt: skip
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _workdir() as workdir:
        meter, scenarios = measure_all(options, workdir)
    data = collect(meter, scenarios, options, time.monotonic() - started)
    latest.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(summary_text(data))
    print(f"\nwrote {latest.relative_to(ROOT)}")
    if options.write_docs:
        for path in docs.write(data, ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
    print(f"total time {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
