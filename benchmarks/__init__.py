"""Shoal's benchmarks: one run drives Shoal, its baselines and Eve with wrk.

``scripts/bench`` (or ``python -m benchmarks.run``) is the command; see
docs/benchmarks.md for the method and the latest figures. The modules, one
concern each:

- ``options``: the command line; ``run``: the orchestration and the output files;
- ``stack``: the shared database and Redis, and the delay proxy in front of the
  database (``delay_proxy``, its own process); ``servers``: the servers under test
  (their apps in ``apps/``); ``services``: one process of either kind; ``proc``:
  what /proc says of them;
- ``data``: the documents, the seed and the PATCH pool; ``keyset``: the keyset
  phase's large collection and its deep cursor;
- ``scenarios``: what is measured against which server, phase by phase;
- ``measure``: one measured scenario (wrk, CPU, RSS); ``wrk``: wrk's command and
  report; ``driver``: the driver's ceiling; ``profile``: py-spy; ``sse_client``:
  SSE subscribers and a writer (the change-stream phase, its own process);
  ``balancer``: a local stack behind nginx (``local_stack``, also
  ``scripts/stack``) as servers to measure;
- ``results``: a run's results and their ratios; ``targets``: the targets they meet;
  ``report``: the tables and text; ``docs``: the docs page and plot; ``host``: the
  machine;
- ``memory``: what a worker's imports add to its memory (a command of its own,
  ``python -m benchmarks.memory``, not part of the run).
"""
