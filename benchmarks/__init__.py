"""Shoal's benchmarks: one run drives Shoal, its baselines and Eve with wrk.

``scripts/bench`` (or ``python -m benchmarks.run``) is the command; see
docs/benchmarks.md for the method and the latest figures. The modules, one
concern each:

- ``options``: the command line; ``run``: the orchestration and the output files;
- ``stack``: the shared database and Redis; ``servers``: the servers under test;
  ``services``: one process of either kind; ``proc``: what /proc says of them;
- ``data``: the documents, the seed and the PATCH pool;
- ``scenarios``: what is measured against which server;
- ``measure``: one measured scenario (wrk, CPU, RSS); ``wrk``: wrk's command and
  report; ``driver``: the driver's ceiling; ``profile``: py-spy;
- ``report``: results, ratios, targets and tables; ``docs``: the docs page and plot;
  ``host``: the machine.
"""
