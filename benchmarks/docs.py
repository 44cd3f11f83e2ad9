"""docs/benchmarks.md and docs/benchmarks.png, rendered from a run's results.

The page's text lives in ``benchmarks/template.md`` (``$name`` placeholders);
the figures come from ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

from .report import (
    ADMISSION_HEADER,
    BALANCER_HEADER,
    DISTANCE_HEADER,
    DISTANCE_RATIO_HEADER,
    ENGINES_HEADER,
    KEYSET_HEADER,
    LOOPS_HEADER,
    RESULT_HEADER,
    STREAMS_HEADER,
    TARGET_HEADER,
    admission_rows,
    balancer_lines,
    balancer_rows,
    distance_ratio_rows,
    distance_rows,
    engines_lines,
    engines_rows,
    keyset_lines,
    keyset_rows,
    loops_lines,
    loops_rows,
    many_connections_lines,
    markdown_table,
    network_lines,
    own_engine,
    phase_lines,
    results_rows,
    streams_rows,
    target_rows,
)
from .results import (
    DISTANCE_SCENARIOS,
    DISTANCE_SERVERS,
    ENGINES,
    SCENARIOS,
    SERVERS,
    Result,
    distant,
    nearby,
)
from .targets import targets

TEMPLATE = Path(__file__).resolve().parent / "template.md"
#: The lines around the soak's section of the page (benchmarks/soak.py writes it).
SOAK_START, SOAK_END = "<!-- soak:start -->", "<!-- soak:end -->"
#: The plot's series, in their order, in a shade per worker count (1, more).
SERIES_COLOURS = {
    "shoal": ("#1f77b4", "#6baed6"),
    "peer_starlette": ("#ff7f0e", "#fdae6b"),
    "peer_quart": ("#8c564b", "#c49c94"),
    "eve": ("#d62728", "#fc9272"),
}
#: The plot's baselines, in a shade per worker count (1, more).
BASELINE_COLOURS = {
    "bare": ("#9467bd", "#c5b0d5"),
    "quart": ("#2ca02c", "#98df8a"),
    "driver": ("#7f7f7f", "#7f7f7f"),
}


def _machine(data: dict[str, Any]) -> str:
    machine = data["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in data["versions"].items())
    return "\n".join(
        [
            f"- CPU: {machine['cpus']} cores ({machine['cpu_model']}), "
            f"{machine['memory_gib']} GiB of memory, {machine['system']}",
            f"- Python {machine['python']}, {machine['wrk']}",
            f"- Packages: {versions}",
        ]
    )


def _profiles(data: dict[str, Any]) -> str:
    profiles = data.get("profiles") or {}
    if not profiles:
        return "_No profile in this run (py-spy missing, or `--no-profile`)._"
    parts = []
    for scenario, profile in profiles.items():
        packages = ", ".join(f"{name} {share:.0f}%" for name, share in profile["packages"][:8])
        own = [[f"{share:.1f}%", f"`{name}`"] for name, share in profile["own"][:12]]
        inclusive = [[f"{share:.1f}%", f"`{name}`"] for name, share in profile["inclusive"][:15]]
        parts += [
            f"**{SCENARIOS.get(scenario, scenario)}** ({profile['samples']} samples of "
            "the one worker's Python stacks; idle time in the event loop is not sampled)",
            "",
            f"Own time by package: {packages}.",
            "",
            markdown_table(["own time", "function"], own),
            "",
            markdown_table(["inclusive time", "function"], inclusive),
            "",
        ]
    return "\n".join(parts).rstrip()


def _notes(data: dict[str, Any]) -> str:
    notes = data.get("notes") or []
    if not notes:
        return "None."
    return "\n".join(f"- {note}" for note in notes)


def _phase_times(data: dict[str, Any]) -> str:
    times = phase_lines(data.get("phase_seconds") or {})
    return ", ".join(times) if times else "not recorded"


def _phase(
    phase: str,
    header: list[str],
    rows: list[list[str]],
    lines: list[str],
) -> str:
    """One phase's table and its lines, or why there is none."""
    if not rows:
        return f"_Not measured in this run (`--skip {phase}`, or it failed: see the notes)._"
    table = markdown_table(header, rows)
    return "\n\n".join([table, "\n".join(f"- {line}" for line in lines)] if lines else [table])


def _distance(data: dict[str, Any], results: list[Result]) -> str:
    if not distant(results):
        return "_No scenario with the database at a distance in this run (`--delays`)._"
    network = [f"- {line}" for line in network_lines(data.get("network") or [])]
    return "\n\n".join(
        [
            markdown_table(DISTANCE_HEADER, distance_rows(results)),
            markdown_table(DISTANCE_RATIO_HEADER, distance_ratio_rows(results)),
            "\n".join(network) or "_The added round trip was not measured._",
        ]
    )


#: What a run of an older harness (no "engine" in its results) ran against.
STAND_IN: dict[str, Any] = {
    "name": "nx-27017, the MongoDB stand-in (SQLite underneath)",
    "cpu_counted": True,
}


def _engine(data: dict[str, Any]) -> tuple[str, str]:
    """What the page says of the database: in the introduction, and in the method."""
    engine = data.get("engine") or STAND_IN
    started = data.get("options", {}).get("engine", "standin")
    if not engine.get("given") and started != "standin":
        return (
            f"The database is **{engine['name']}**, which the run starts on this machine "
            f'(`scripts/{started}`); its CPU is the "db" share of the CPU% column. The '
            "driver's ceiling is measured on it too.",
            f"**{engine['name']}**, started by `scripts/{started} run` on a free loopback "
            "port with its data in a temp dir",
        )
    if not engine.get("given"):
        return (
            "The database is the MongoDB stand-in (nx-27017: one Python process over "
            "SQLite), not MongoDB, so the database side is far slower than a real `mongod` "
            "and dominates every read and write; the ratios between servers on the same "
            "data matter more than the absolute numbers. `--mongodb-uri` (or "
            "`SHOAL_BENCH_MONGODB_URI`) runs the same scenarios against another engine.",
            f"{engine['name']} (`shoal.storage.embedded.EmbeddedStore`, data in a temp dir)",
        )
    counted = (
        'its CPU is the "db" share of the CPU% column'
        if engine.get("cpu_counted")
        else "it is not a process the harness could see on this machine, so the "
        'CPU% column\'s "db" share does not count it'
    )
    return (
        f"The database is **{engine['name']}**, given with `--mongodb-uri` "
        f"(`{engine.get('uri', '?')}`); {counted}. The driver's ceiling is measured on "
        "it too.",
        f"**{engine['name']}** (`{engine.get('uri', '?')}`), in a database of the run's "
        "own, dropped at the end",
    )


def render(data: dict[str, Any]) -> str:
    results = [Result.from_json(item) for item in data["results"]]
    options = data["options"]
    cores = options.get("cores", data["machine"]["cpus"])
    found = targets(results)
    engine_note, engine_method = _engine(data)
    return Template(TEMPLATE.read_text()).substitute(
        generated=data["generated"],
        command=data["command"],
        elapsed=f"{data['elapsed_s']:.0f}",
        duration=f"{options['duration']:g}",
        side_duration=f"{options.get('side_duration', options['duration']):g}",
        warmup=f"{options['warmup']:g}",
        connections=options["connections"],
        timeout=f"{options.get('timeout', 2.0):g}",
        many_connections=f"{options['many_connections']:,}",
        documents=f"{options['documents']:,}",
        patch_pool=f"{options['patch_pool']:,}",
        workers=" and ".join(str(w) for w in options["workers"]),
        machine=_machine(data),
        engine_note=engine_note,
        engine_method=engine_method,
        results=markdown_table(RESULT_HEADER, results_rows(nearby(results))),
        distance=_distance(data, results),
        delays=" and ".join(f"{delay:g} ms" for delay in options.get("delays", [])) or "none",
        distance_connections=options.get("distance_connections", 64),
        cores=cores,
        sync_workers=2 * cores + 1,
        targets=markdown_table(TARGET_HEADER, target_rows(found)),
        targets_met=f"{sum(target.met is True for target in found)} of {len(found)}",
        profiles=_profiles(data),
        notes=_notes(data),
        phase_times=_phase_times(data),
        subscribers=f"{options.get('subscribers', 500):,}",
        stream_drain=f"{options.get('stream_drain', 10.0):g}",
        keyset_documents=f"{options.get('keyset_documents', 50_000):,}",
        keyset_page=f"{options.get('keyset_page', 2000):,}",
        keyset_max_results=options.get("keyset_max_results", 25),
        keyset_connections=options.get("keyset_connections", 4),
        balancer_instances=options.get("balancer_instances", 2),
        staleness_rounds=options.get("staleness_rounds", 200),
        admission_limits=", ".join(str(n) for n in options.get("admission_limits", [16, 64, 256])),
        engines=_phase(
            "engines",
            ENGINES_HEADER,
            engines_rows(results, own_engine(data)),
            engines_lines(results, own_engine(data)),
        ),
        other_engines=", ".join(ENGINES.get(e, e) for e in options.get("other_engines", []))
        or "none",
        streams=_phase("streams", STREAMS_HEADER, streams_rows(results), []),
        keyset=_phase(
            "keyset",
            KEYSET_HEADER,
            keyset_rows(results, own_engine(data)),
            keyset_lines(results, own_engine(data)),
        ),
        keyset_engines=", ".join(ENGINES.get(e, e) for e in options.get("keyset_engines", []))
        or "none",
        balancer=_phase(
            "balancer", BALANCER_HEADER, balancer_rows(results), balancer_lines(results)
        ),
        loops=_phase("loops", LOOPS_HEADER, loops_rows(results), loops_lines(results)),
        admission=_phase(
            "admission",
            ADMISSION_HEADER,
            admission_rows(results),
            many_connections_lines(results),
        ),
    )


def plot(data: dict[str, Any], path: Path) -> Path:
    """Requests/s and p99 latency per scenario: Shoal, the hand-written peers and Eve
    for each worker count, with the Quart minimal app and the driver's ceiling for
    scale."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    everything = [Result.from_json(item) for item in data["results"]]
    results = nearby(everything)
    scenarios = [key for key in SCENARIOS if any(r.scenario == key for r in results)]
    series = sorted(
        {(r.server, r.workers) for r in results if r.server in SERIES_COLOURS},
        key=lambda pair: (list(SERIES_COLOURS).index(pair[0]), pair[1]),
    )
    baselines = [r for r in results if r.server in BASELINE_COLOURS]
    far = distant(everything)
    rows = 3 if far else 2
    figure, axes = plt.subplots(rows, 1, figsize=(11, 4 * rows))
    rate_axis, p99_axis = axes[0], axes[1]
    width = 0.8 / max(1, len(series))
    positions = list(range(len(scenarios)))
    for index, (server, workers) in enumerate(series):
        rates, p99s = [], []
        for scenario in scenarios:
            found = next(
                (
                    r
                    for r in results
                    if r.server == server and r.workers == workers and r.scenario == scenario
                ),
                None,
            )
            rates.append(found.requests_per_s if found else 0.0)
            p99s.append(found.p99_ms if found else 0.0)
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        shade = SERIES_COLOURS[server][0 if workers == 1 else 1]
        label = f"{SERVERS[server]}, {workers} worker{'s' if workers > 1 else ''}"
        bars = rate_axis.bar(offsets, rates, width, label=label, color=shade)
        rate_axis.bar_label(bars, labels=[f"{rate:.0f}" if rate else "" for rate in rates],
                            fontsize=6)  # fmt: skip
        p99_axis.bar(offsets, p99s, width, label=label, color=shade)
    for baseline in baselines:
        position = scenarios.index(baseline.scenario)
        per_worker = baseline.server != "driver"
        offset = position - 0.4 + width * ((baseline.workers - 1 if per_worker else 0) + 0.5)
        shades = BASELINE_COLOURS[baseline.server]
        colour = shades[0 if baseline.workers == 1 else 1]
        label = f"{SERVERS[baseline.server]}" + (
            f", {baseline.workers} worker{'s' if baseline.workers > 1 else ''}"
            if per_worker
            else " (1 process)"
        )
        bars = rate_axis.bar([offset], [baseline.requests_per_s], width, color=colour, label=label)
        rate_axis.bar_label(bars, fmt="%.0f", fontsize=6)
        p99_axis.bar([offset], [baseline.p99_ms], width, color=colour)
    rate_axis.set_ylabel("requests/s (higher is better)")
    p99_axis.set_ylabel("p99 latency, ms (lower is better, log scale)")
    p99_axis.set_yscale("log")
    rate_axis.set_xticks(positions)
    rate_axis.set_xticklabels([])
    p99_axis.set_xticks(positions)
    p99_axis.set_xticklabels([SCENARIOS[s] for s in scenarios], rotation=20, ha="right")
    rate_axis.legend(fontsize=8, ncol=2)
    rate_axis.grid(axis="y", alpha=0.3)
    p99_axis.grid(axis="y", alpha=0.3)
    if far:
        _plot_distance(axes[2], far)
    figure.suptitle(
        f"Shoal benchmarks, {data['machine']['cpus']} cores shared by wrk and the servers "
        f"({data['generated'][:10]})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_distance(axis: Any, results: list[Result]) -> None:
    """Requests/s per added delay and scenario: Shoal, Eve sync and Eve gevent."""
    groups = [
        (delay, scenario)
        for delay in sorted({r.delay_ms for r in results})
        for scenario in DISTANCE_SCENARIOS
    ]
    width = 0.8 / len(DISTANCE_SERVERS)
    colours = {"shoal": "#1f77b4", "eve": "#d62728", "eve_gevent": "#ff9896"}
    for index, server in enumerate(DISTANCE_SERVERS):
        found = [
            next((r for r in results if (r.delay_ms, r.scenario, r.server) == (*group, server)),
                 None)
            for group in groups
        ]  # fmt: skip
        rates = [r.ok_per_s if r else 0.0 for r in found]
        workers = next((r.workers for r in found if r), 0)
        offsets = [p - 0.4 + width * (index + 0.5) for p in range(len(groups))]
        label = f"{SERVERS[server]}, {workers} worker{'s' if workers != 1 else ''}"
        bars = axis.bar(offsets, rates, width, label=label, color=colours[server])
        axis.bar_label(bars, labels=[f"{rate:.0f}" if rate else "" for rate in rates],
                       fontsize=6)  # fmt: skip
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(
        [f"db +{delay:g} ms\n{SCENARIOS[scenario]}" for delay, scenario in groups], fontsize=8
    )
    axis.set_ylabel("2xx/3xx requests/s, database at a distance")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)


def write(data: dict[str, Any], root: Path) -> list[Path]:
    """Write docs/benchmarks.md and, when matplotlib is installed, docs/benchmarks.png."""
    page = root / "docs" / "benchmarks.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    text = render(data)
    # The soak's section (python -m benchmarks.soak, a run of its own) is kept.
    old = page.read_text() if page.exists() else ""
    if SOAK_START in old and SOAK_END in old:
        section = SOAK_START + old.split(SOAK_START, 1)[1].split(SOAK_END, 1)[0] + SOAK_END
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    page.write_text(text)
    written = [page]
    try:
        written.append(plot(data, root / "docs" / "benchmarks.png"))
    except ImportError:
        print("matplotlib is not installed: docs/benchmarks.png not regenerated")
    return written
