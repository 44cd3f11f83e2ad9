"""What is measured against which server, phase by phase.

For each worker count: a bare ASGI app (the server alone) and the Quart minimal
app (the framework's ceiling) under the same hypercorn settings, then Shoal
(item GET uncached, by a signed-in caller too, and cached, list GET, item GET at
many connections, POST, PATCH), then the hand-written peer on Starlette and on
Quart (item GET and POST), then Eve under gunicorn on the same data. Once: the driver's ceiling.
Then, for each added delay, the database at that network distance: item GET,
POST and PATCH at ``distance_connections`` against Shoal (a worker per core),
Eve on gunicorn's sync workers (2 x cores + 1) and Eve on its gevent workers
(a worker per core). Then the phases with tables of their own
(``results.PHASES``): the other engines (each started on a stack of its own,
seeded the same way, then Shoal and Eve on one worker in the headline scenarios
and the driver's ceiling), change streams (SSE subscribers on one worker while a
writer POSTs, ``sse_client.py``), keyset pagination (a first and a deep page
by number and by cursor, ``keyset.py``, on the run's engine and then on each of
``keyset_engines``, each on a stack of its own), the load balancer (item GET straight
to one instance and through nginx to several, ``balancer.py``), admission
control (item GET at many connections with ``admission.max_in_flight`` at a few
values, and off) and the event loops (the bare app at many connections, Shoal at
the usual and at many, under hypercorn's uvloop and asyncio workers). Each phase starts its
servers, measures them (``measure.Meter``) and stops them; ``run`` prints and
keeps each one's time.
"""

from __future__ import annotations

import secrets
import subprocess
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import keyset, servers, staleness
from .balancer import Entry, balanced_stack
from .data import Dataset, Workload
from .local_stack import LocalStack, StackError
from .measure import Load, Meter, ping_ms
from .options import Options
from .profile import format_profile, record
from .results import ENGINES, PHASES, SCENARIOS, Result
from .services import Service
from .stack import Stack
from .targets import DISTANCE_DELAY_MS
from .wrk import wrk_command

#: hypercorn's event loops (``worker_class``), the repository's default first.
LOOPS = ("uvloop", "asyncio")
#: The resource of benchmarks/shoal.yaml with ``streams: true``.
STREAMED_RESOURCE = "events"


class Scenarios:
    """The phases of one run, on one stack and one workload."""

    def __init__(
        self,
        options: Options,
        stack: Stack,
        workload: Workload,
        meter: Meter,
        *,
        workdir: Path,
        results_dir: Path,
    ) -> None:
        self.options = options
        self.stack = stack
        self.workload = workload
        self.meter = meter
        self.workdir = workdir
        self.results_dir = results_dir
        self.profiles: dict[str, Any] = {}
        #: Per added delay: a MongoDB ping's round trip, direct and through the proxy.
        self.network: list[dict[str, float]] = []
        #: The database engine, as the report names it (``Engine.describe``).
        self.engine: dict[str, Any] = {}
        #: Seconds each phase took, in the order they ran.
        self.phase_seconds: dict[str, float] = {}

    # -- what wrk sends ----------------------------------------------------------------

    def _get_args(self, prefix: str) -> tuple[str, ...]:
        return (str(self.workload.ids_file), prefix, str(self.options.threads))

    def item_get(
        self,
        scenario: str = "item_get",
        prefix: str = "/items/",
        *,
        connections: int | None = None,
        note: str = "",
        before: Callable[[], object] | None = None,
        headers: tuple[str, ...] = (),
    ) -> Load:
        """GET one item per request, each wrk thread cycling through its share of ids."""
        args = self._get_args(prefix)
        return Load(
            scenario=scenario,
            script="get.lua",
            script_args=lambda: args,
            connections=connections,
            before=before,
            note=note,
            headers=headers,
        )

    def many_connections(self) -> Load:
        return self.item_get("item_get_1000c", connections=self.options.many_connections)

    def post(self, connections: int | None = None) -> Load:
        return Load(
            scenario="post",
            script="post.lua",
            script_args=lambda: ("/items",),
            connections=connections,
            before=self.workload.remove_posted,
        )

    def patch(self, *, fresh_only: bool, connections: int | None = None, note: str = "") -> Load:
        """PATCH with If-Match over the pool, put back first (``insert_pool``).

        Eve's runs patch only documents it has not patched yet (``fresh_only``):
        once Eve has patched a document on the stand-in, its `_updated` is a string
        (the stand-in's `$set` datetime gap) and Eve fails on it.
        """

        def args() -> tuple[str, ...]:
            pool = self.workload.pool_file(fresh_only=fresh_only)
            return (str(pool), "/items/", str(self.options.threads))

        return Load(
            scenario="patch",
            script="patch.lua",
            script_args=args,
            connections=connections,
            note=note,
        )

    def writes(
        self,
        service: Service,
        server: str,
        workers: int,
        *,
        connections: int | None = None,
        delay_ms: float = 0.0,
    ) -> None:
        """POST, then PATCH, each on a clean collection and a fresh pool."""
        eve = server.startswith("eve")
        measure = self.meter.measure
        measure(service, server, workers, self.post(connections), delay_ms=delay_ms)
        self.workload.remove_posted()
        self.workload.insert_pool()
        stand_in = self.stack.started_by_run == "standin"
        note = "each pool document patched once (stand-in gap)" if eve and stand_in else ""
        patch = self.patch(fresh_only=eve, connections=connections, note=note)
        result = measure(service, server, workers, patch, delay_ms=delay_ms)
        if eve and result is not None and result.requests >= self.workload.pool_size:
            self.meter.notes.append(
                f"Eve's PATCH run ({service.name}) used up its pool of "
                f"{self.workload.pool_size} unpatched documents (its errors are the "
                "stand-in gap, not Eve's): raise --patch-pool"
            )

    def seed(self) -> None:
        """Insert the documents through a Shoal of one worker, once a run."""
        with self._shoal(1) as shoal:
            print(self.workload.seed(shoal.url), flush=True)

    def reset(self) -> None:
        """The seed documents only, and an empty Redis."""
        self.workload.reset()
        self.stack.flush_redis()

    # -- the phases --------------------------------------------------------------------

    def run(self) -> None:
        options = self.options
        # The item GET and write scenarios read the seed; streams and keyset pages
        # have documents of their own.
        seeded_phases = {"balancer", "admission", "loops"}
        if options.workers or options.delays or seeded_phases & set(options.phases):
            self.timed("seed", self.seed)
        for index, workers in enumerate(options.workers):
            print(f"\n== {workers} worker(s)", flush=True)
            self.timed(f"{workers} worker(s)", partial(self.loopback_phases, workers, index == 0))
        for delay_ms in options.delays:
            self.timed(f"database +{delay_ms:g} ms", partial(self.distance_phase, delay_ms))
        phases: dict[str, Callable[[], None]] = {
            "engines": self.engines_phase,
            "streams": self.streams_phase,
            "keyset": self.keyset_phase,
            "balancer": self.balancer_phase,
            "admission": self.admission_phase,
            "loops": self.loops_phase,
        }
        for phase in options.phases:
            print(f"\n== {PHASES[phase]}", flush=True)
            try:
                self.timed(PHASES[phase], phases[phase])
            except Exception as error:  # the main phases' results are kept
                traceback.print_exc()
                self.meter.notes.append(f"the {PHASES[phase]} phase failed: {error!r}")

    def timed(self, name: str, phase: Callable[[], None]) -> None:
        """Run one phase; print and keep how long it took."""
        started = time.monotonic()
        try:
            phase()
        finally:
            self.phase_seconds[name] = round(time.monotonic() - started, 1)
            print(f"-- {name}: {self.phase_seconds[name]:.0f}s", flush=True)

    def loopback_phases(self, workers: int, first: bool) -> None:
        """The servers one at a time with ``workers`` workers, the database on loopback."""
        self.bare_phase(workers)
        self.quart_phase(workers)
        self.shoal_phase(workers)
        if first:
            self.meter.driver_ceiling(
                self.stack.mongodb_uri, self.stack.database, self.workload.ids_file
            )
        if self.options.peers:
            self.peer_phase(workers)
        if self.options.eve:
            self.eve_phase(workers)

    def bare_phase(self, workers: int) -> None:
        """The server alone, on the paths of the item GET (any path, the same body)."""
        with servers.bare(self.workdir, workers) as bare:
            self.meter.measure(bare, "bare", workers, self.item_get("bare_get"))

    def quart_phase(self, workers: int) -> None:
        with servers.quart(self.workdir, workers) as quart:
            self.meter.measure(quart, "quart", workers, Load(scenario="minimal", path="/"))

    def _shoal(
        self,
        workers: int,
        mongodb_uri: str | None = None,
        *,
        config: Path = servers.CONFIG,
        secret_key: str | None = None,
        hypercorn_toml: Path = servers.HYPERCORN_TOML,
    ) -> Service:
        return servers.shoal(
            self.workdir,
            workers,
            mongodb_uri=mongodb_uri or self.stack.mongodb_uri,
            database=self.stack.database,
            redis_url=self.stack.redis_url,
            config=config,
            secret_key=secret_key,
            hypercorn_toml=hypercorn_toml,
        )

    def _eve(self, workers: int, mongodb_uri: str | None = None, **kind: Any) -> Service:
        return servers.eve(
            self.workdir,
            workers,
            mongodb_uri=mongodb_uri or self.stack.mongodb_uri,
            database=self.stack.database,
            **kind,
        )

    def shoal_phase(self, workers: int) -> None:
        measure = self.meter.measure
        with self._shoal(workers) as shoal:
            self.reset()
            measure(shoal, "shoal", workers, self.item_get())
            # The same reads by a signed-in caller: the token's expiry checked on
            # every request, its revocation in the worker's memory (the config's
            # auth.revocation_cache; Redis asked again after any change of its user).
            bearer = f"Authorization: Bearer {servers.bearer_token(shoal)}"
            measure(shoal, "shoal", workers, self.item_get("item_get_bearer", headers=(bearer,)))
            # The same caller on a resource whose rules filter and mask.
            ruled = self.item_get(
                "item_get_rules",
                "/items_ruled/",
                headers=(bearer,),
                note="items_ruled: the same collection, a role with a read filter and "
                "a hidden field",
            )
            measure(shoal, "shoal", workers, ruled)
            # The same collection read through the cache: in Redis, then also in
            # each worker's memory.
            for scenario, name, tier in (
                ("item_get_cached", "items_cached", ""),
                ("item_get_cached_worker", "items_local", ", cache_tier: worker"),
            ):
                cached = self.item_get(
                    scenario,
                    f"/{name}/",
                    note=f"{name} (cache_ttl 60{tier}) on the same collection, every id "
                    "read once before",
                    # Every answer a hit: the warm-up alone may not reach every id.
                    before=partial(self.workload.read_each, f"{shoal.url}/{name}/"),
                )
                measure(shoal, "shoal", workers, cached)
            measure(shoal, "shoal", workers, Load(scenario="list_get", path="/items"))
            measure(shoal, "shoal", workers, self.many_connections())
            if self.options.profile and workers == 1:
                self.profile(shoal)
            self.writes(shoal, "shoal", workers)
        self.reset()

    def peer_phase(self, workers: int) -> None:
        """The item GET and POST a team would write by hand, on each framework."""
        for framework in servers.PEER_FRAMEWORKS:
            self.reset()
            service = servers.peer(
                self.workdir,
                workers,
                framework,
                mongodb_uri=self.stack.mongodb_uri,
                database=self.stack.database,
            )
            with service:
                name = f"peer_{framework}"
                self.meter.measure(service, name, workers, self.item_get())
                self.meter.measure(service, name, workers, self.post())
        self.reset()

    def eve_phase(self, workers: int) -> None:
        measure = self.meter.measure
        self.reset()
        with self._eve(workers) as eve:
            measure(eve, "eve", workers, self.item_get())
            measure(eve, "eve", workers, Load(scenario="list_get", path="/items"))
            measure(eve, "eve", workers, self.many_connections())
            # Last, on documents nothing reads afterwards (see ``patch``).
            self.writes(eve, "eve", workers)
        self.reset()

    def distance_phase(self, delay_ms: float) -> None:
        """Shoal and Eve (sync and gevent workers) with the database ``delay_ms``
        away; measured for ``side_duration`` but at ``DISTANCE_DELAY_MS``, the
        distance the targets read."""
        if delay_ms == DISTANCE_DELAY_MS:
            self._at_distance(delay_ms)
        else:
            with self.meter.briefly():
                self._at_distance(delay_ms)

    def _at_distance(self, delay_ms: float) -> None:
        cores = self.options.cores
        connections = self.options.distance_connections
        print(f"\n== database at +{delay_ms:g} ms, {connections} connections", flush=True)
        try:
            self.stack.database_address()
        except ValueError as error:
            self.meter.notes.append(f"no scenario with the database at a distance: {error}")
            return
        with self.stack.distance(delay_ms) as uri:
            direct, proxied = ping_ms(self.stack.mongodb_uri), ping_ms(uri)
            self.network.append(
                {"delay_ms": delay_ms, "ping_ms": direct, "proxied_ping_ms": proxied}
            )
            print(f"  MongoDB ping: {direct:.2f} ms direct, {proxied:.2f} ms through the proxy")
            subjects: list[tuple[str, int, Callable[[], Service]]] = [
                ("shoal", cores, lambda: self._shoal(cores, uri))
            ]
            if self.options.eve:
                sync, gevent = 2 * cores + 1, cores
                subjects += [
                    ("eve", sync, lambda: self._eve(sync, uri)),
                    ("eve_gevent", gevent, lambda: self._eve(gevent, uri, gevent=True)),
                ]
            for server, workers, start in subjects:
                self.reset()
                with start() as service:
                    self.meter.measure(
                        service,
                        server,
                        workers,
                        self.item_get(connections=connections),
                        delay_ms=delay_ms,
                    )
                    self.writes(
                        service, server, workers, delay_ms=delay_ms, connections=connections
                    )
            self.reset()

    # -- the phases with tables of their own --------------------------------------------

    def engines_phase(self) -> None:
        """The headline scenarios on each of ``other_engines`` but the run's own
        (no target reads them: measured for ``side_duration``)."""
        with self.meter.briefly():
            self._on_other_engines()

    def _on_other_engines(self) -> None:
        for key in self.options.other_engines:
            if key == self.stack.started_by_run:
                continue
            try:
                self.on_engine(key)
            except Exception as error:  # the next engine is still measured
                traceback.print_exc()
                self.meter.notes.append(f"the headline on {ENGINES[key]} failed: {error!r}")

    def on_engine(self, key: str) -> None:
        """A stack of its own on engine ``key``, seeded like the run's, then Shoal,
        the driver and Eve on one worker, the results in the "engines" phase."""
        workdir = self.workdir / f"engine-{key}"
        with Stack(workdir, engine=key) as stack:
            assert stack.engine is not None
            print(f"  {stack.engine.name} ({stack.mongodb_uri})", flush=True)
            dataset = Dataset(stack.mongodb_uri, stack.database)
            try:
                workload = Workload(
                    dataset,
                    workdir,
                    documents=self.options.documents,
                    patch_pool=self.options.patch_pool,
                )
                there = Scenarios(
                    self.options,
                    stack,
                    workload,
                    self.meter,
                    workdir=workdir,
                    results_dir=self.results_dir,
                )
                extra = {"engine": key, "engine_name": stack.engine.name}
                with self.meter.elsewhere(stack.db_pids, phase="engines", extra=extra):
                    there.seed()
                    there.headline()
            finally:
                dataset.close()

    def headline(self) -> None:
        """Shoal on one worker (item GET, list GET, POST, PATCH), the driver's
        ceiling, then Eve on one worker in the same scenarios."""
        measure = self.meter.measure
        with self._shoal(1) as shoal:
            self.reset()
            measure(shoal, "shoal", 1, self.item_get())
            measure(shoal, "shoal", 1, Load(scenario="list_get", path="/items"))
            self.writes(shoal, "shoal", 1)
        self.reset()
        self.meter.driver_ceiling(
            self.stack.mongodb_uri, self.stack.database, self.workload.ids_file
        )
        if self.options.eve:
            with self._eve(1) as eve:
                measure(eve, "eve", 1, self.item_get())
                measure(eve, "eve", 1, Load(scenario="list_get", path="/items"))
                self.writes(eve, "eve", 1)
            self.reset()

    def streams_phase(self) -> None:
        """SSE subscribers of one resource on one worker while a writer POSTs to it."""
        with self._shoal(1) as shoal:
            self.meter.fan_out(
                shoal,
                STREAMED_RESOURCE,
                self.options.subscribers,
                drain=self.options.stream_drain,
            )

    def keyset_phase(self) -> None:
        """The first and a deep page of a large collection, by number and by cursor:
        on the run's engine, then on each of ``keyset_engines`` but the run's own
        (each on a stack of its own). No target reads them: measured for
        ``side_duration``."""
        with self.meter.briefly():
            self._keyset_everywhere()

    def _keyset_everywhere(self) -> None:
        self.keyset_pages()
        for key in self.options.keyset_engines:
            if key == self.stack.started_by_run:
                continue
            try:
                self.keyset_on_engine(key)
            except Exception as error:  # the next engine is still measured
                traceback.print_exc()
                self.meter.notes.append(f"keyset pagination on {ENGINES[key]} failed: {error!r}")

    def keyset_on_engine(self, key: str) -> None:
        """A stack of its own on engine ``key``, then the keyset pages there, the
        results in the "keyset" phase with the engine among their figures."""
        workdir = self.workdir / f"keyset-{key}"
        with Stack(workdir, engine=key) as stack:
            assert stack.engine is not None
            print(f"  {stack.engine.name} ({stack.mongodb_uri})", flush=True)
            dataset = Dataset(stack.mongodb_uri, stack.database)
            try:
                workload = Workload(
                    dataset,
                    workdir,
                    documents=self.options.documents,
                    patch_pool=self.options.patch_pool,
                )
                there = Scenarios(
                    self.options,
                    stack,
                    workload,
                    self.meter,
                    workdir=workdir,
                    results_dir=self.results_dir,
                )
                extra = {"engine": key, "engine_name": stack.engine.name}
                with self.meter.elsewhere(stack.db_pids, phase="keyset", extra=extra):
                    there.keyset_pages()
            finally:
                dataset.close()

    def keyset_pages(self) -> None:
        """The keyset pages on this stack's engine."""
        options = self.options
        secret = secrets.token_hex(24)
        page, size = options.keyset_page, options.keyset_max_results
        uri, database = self.stack.mongodb_uri, self.stack.database
        try:
            with self._shoal(1, secret_key=secret) as shoal:
                ids, line = keyset.seed(shoal.url, uri, database, options.keyset_documents)
                print(f"  {line}", flush=True)
                keyset.check_cursors(shoal.url, secret, ids, page, size)
                deep = keyset.deep_cursor(secret, ids, page, size)
                alone = keyset.database_ms(uri, database, ids, page, size)
                pages = (
                    ("page_first_skip", 1, "page", {"page": 1}),
                    ("page_deep_skip", page, "page", {"page": page}),
                    ("page_first_cursor", 1, "cursor", {"cursor": ""}),
                    ("page_deep_cursor", page, "cursor", {"cursor": deep}),
                )
                for scenario, number, by, at in pages:
                    path = keyset.page_path(max_results=size, **at)
                    self.meter.measure(
                        shoal,
                        "shoal",
                        1,
                        Load(scenario=scenario, path=path, connections=options.keyset_connections),
                        warmup=False,  # seeding and the checks warmed the server
                        phase="keyset",
                        extra={
                            "page": number,
                            "by": by,
                            "documents": len(ids),
                            "seed": line,
                            "database_ms": alone,
                        },
                    )
        except keyset.CursorMismatch as error:
            self.meter.notes.append(f"keyset pagination not measured: {error}")
        finally:
            keyset.drop(uri, database)

    def balancer_phase(self) -> None:
        """Item GET straight to one instance, then through nginx to every instance."""
        count = self.options.balancer_instances
        self.reset()
        stack = balanced_stack(
            self.workdir / "balancer",
            count,
            mongodb_uri=self.stack.mongodb_uri,
            database=self.stack.database,
            redis_url=self.stack.redis_url,
        )
        try:
            with stack:
                for entry, workers, scenario in (
                    (Entry(stack, 0), 1, "item_get_direct"),
                    (Entry(stack), count, "item_get_nginx"),
                ):
                    self.meter.measure(
                        entry,
                        "shoal",
                        workers,
                        self.item_get(scenario),
                        phase="balancer",
                        extra={"instances": workers, "entry": entry.name},
                    )
                if count > 1:
                    self.tier_staleness(stack)
        except StackError as error:
            self.meter.notes.append(f"the load balancer's cost not measured: {error}")

    def tier_staleness(self, stack: LocalStack) -> None:
        """The worker tier's staleness between two instances of the stack, over
        HTTP, then of Redis's push alone (``staleness.py``); a result each."""
        ids = [str(document["_id"]) for document in self.workload.dataset.snapshot[:50]]
        rounds = self.options.staleness_rounds
        print(f"  worker tier staleness, {rounds} writes", flush=True)
        started = time.perf_counter()
        http = staleness.over_http(stack.instance_url(0), stack.instance_url(1), ids, rounds)
        push = staleness.push_alone(self.stack.redis_url, rounds)
        seconds = time.perf_counter() - started
        for scenario, window in (("tier_staleness_http", http), ("tier_staleness_push", push)):
            self.meter.results.append(
                Result(
                    server="shoal",
                    scenario=scenario,
                    workers=1,
                    connections=1,
                    requests=window.rounds,
                    seconds=seconds,
                    requests_per_s=0.0,
                    p50_ms=window.p50_ms,
                    p99_ms=window.p99_ms,
                    errors=window.lost,
                    phase="balancer",
                    extra={"instances": 2, "stale": window.stale},
                )
            )

    def admission_phase(self) -> None:
        """Item GET at many connections on one worker, for each ``max_in_flight``
        and with admission off."""
        connections = self.options.many_connections
        self.reset()
        for limit in [*self.options.admission_limits, None]:
            name = "off" if limit is None else str(limit)
            section = {"enabled": False} if limit is None else {"max_in_flight": limit}
            config = servers.derived_config(
                self.workdir, f"shoal-admission-{name}", admission=section
            )
            with self._shoal(1, config=config) as shoal:
                self.meter.measure(
                    shoal,
                    "shoal",
                    1,
                    self.item_get("item_get_1000c", connections=connections),
                    phase="admission",
                    extra={"max_in_flight": limit},
                )

    def loops_phase(self) -> None:
        """The bare ASGI app at many connections and Shoal on one worker at the
        usual and at many connections, under hypercorn's uvloop and asyncio workers."""
        connections = self.options.many_connections
        self.reset()
        for loop in LOOPS:
            toml = servers.derived_toml(self.workdir, f"hypercorn-{loop}", worker_class=loop)
            extra = {"loop": loop}
            with servers.bare(self.workdir, 1, toml) as bare:
                load = self.item_get("bare_get", connections=connections)
                self.meter.measure(bare, "bare", 1, load, phase="loops", extra=extra)
            with self._shoal(1, hypercorn_toml=toml) as shoal:
                # At the usual connections (what the loop costs where fairness does
                # not matter), then at many.
                for load in (
                    self.item_get(),
                    self.item_get("item_get_1000c", connections=connections),
                ):
                    self.meter.measure(shoal, "shoal", 1, load, phase="loops", extra=extra)

    # -- profiles ----------------------------------------------------------------------

    def profile(self, shoal: Service) -> None:
        """Sample the (single) Shoal worker under the uncached item GET and list GET."""
        duration = self.options.profile_duration
        for scenario, path, script, args in (
            ("item_get", "", "get.lua", self._get_args("/items/")),
            ("list_get", "/items", None, ()),
        ):
            command = wrk_command(
                shoal.url + path,
                duration=duration + 2,
                connections=self.options.connections,
                threads=self.options.threads,
                script=script,
                script_args=args,
            )
            wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.0)
                raw = self.results_dir / f"profile-{scenario}.txt"
                summary = record(shoal.workers()[0], raw, duration=duration)
            finally:
                wrk.wait(duration + 30)
            if summary is None:
                self.meter.notes.append(f"py-spy could not sample Shoal's {scenario}")
                continue
            self.profiles[scenario] = summary.to_json()
            print(format_profile(f"py-spy, Shoal {SCENARIOS[scenario]}", summary), flush=True)
