"""Compare JSON Schema validators for Shoal's request-body validation.

Shoal validates every POST/PUT body, and every merged PATCH document, against the
resource's JSON Schema (draft 2020-12). This script measures, for one realistic
resource schema, the time per validation of a valid document and of invalid
documents with 1 and with 3 errors, for:

* ``jsonschema_rs``   (Rust, validator built once with ``Draft202012Validator``)
* ``fastjsonschema``  (generates Python code with ``fastjsonschema.compile``)
* ``jsonschema``      (the pure-Python reference implementation, for scale)

Each library is timed in two modes: a yes/no check (``is_valid`` or fastjsonschema's
default fail-fast mode) and collecting every error (what a 422 ``_issues`` body needs).
It then checks, and prints, the features Shoal needs: draft 2020-12 keywords, all errors
of a document, instance paths and messages, checking a schema against the metaschema
with the failing schema path, format assertion, and what happens with BSON values
(``datetime``, ``ObjectId``, ``Int64``) in a document.

Run it from the repository root with the project's virtualenv, after
``scripts/bootstrap bench`` (the ``bench`` extra installs ``fastjsonschema`` and
``jsonschema``, which Shoal itself does not use)::

    .venv/bin/python benchmarks/jsonschema_validators.py            # full run
    .venv/bin/python benchmarks/jsonschema_validators.py --quick    # fewer repeats

The results are recorded in docs/decisions/0003-json-schema-validator.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import timeit
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import bson
import fastjsonschema  # type: ignore[import-not-found, unused-ignore]
import jsonschema  # type: ignore[import-not-found, import-untyped, unused-ignore]
import jsonschema_rs
import orjson

Json = dict[str, Any]
ErrorList = list[tuple[list[str | int], str]]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# A realistic resource schema: ~8 properties, one nested object, one array.
SCHEMA: Json = {
    "$schema": DRAFT_2020_12,
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "isbn", "year", "author"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "isbn": {
            "type": "string",
            "maxLength": 17,
            "pattern": r"^97[89]-[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]$",
        },
        "year": {"type": "integer", "minimum": 0},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "in_print": {"type": "boolean"},
        "binding": {"enum": ["hardcover", "paperback", "ebook", "audio"]},
        "author": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "born": {"type": "integer", "minimum": 0},
            },
        },
        "tags": {
            "type": "array",
            "maxItems": 5,
            "items": {"type": "string", "maxLength": 30},
        },
    },
}

VALID: Json = {
    "title": "The Left Hand of Darkness",
    "isbn": "978-0-441-47812-5",
    "year": 1969,
    "price": 9.99,
    "in_print": True,
    "binding": "paperback",
    "author": {"name": "Ursula K. Le Guin", "born": 1929},
    "tags": ["science fiction", "classic", "hugo"],
}
INVALID_1: Json = {**VALID, "year": -1}
INVALID_3: Json = {
    **VALID,
    "year": -1,  # minimum
    "author": {"born": 1929},  # author.name is required
    "tags": ["a", "b", "c", "d", "e", "f"],  # maxItems
}
DOCUMENTS: dict[str, Json] = {"valid": VALID, "1 error": INVALID_1, "3 errors": INVALID_3}

# A schema with a mistake that a start-up check must catch and locate.
BAD_SCHEMA: Json = {
    "$schema": DRAFT_2020_12,
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 200},
        "year": {"type": "integer", "minimum": "zero"},
    },
}

# One probe per draft 2020-12 feature: (schema, an instance the schema must reject).
FEATURE_PROBES: dict[str, tuple[Json, Any]] = {
    "$defs + $ref": (
        {
            "$schema": DRAFT_2020_12,
            "$defs": {"name": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/name"}},
        },
        {"a": 1},
    ),
    "prefixItems": (
        {"$schema": DRAFT_2020_12, "prefixItems": [{"type": "string"}]},
        [1],
    ),
    "unevaluatedProperties": (
        {
            "$schema": DRAFT_2020_12,
            "allOf": [{"properties": {"a": {"type": "integer"}}}],
            "unevaluatedProperties": False,
        },
        {"a": 1, "b": 2},
    ),
    "dependentRequired": (
        {"$schema": DRAFT_2020_12, "dependentRequired": {"a": ["b"]}},
        {"a": 1},
    ),
}


# --------------------------------------------------------------------------- adapters
# Each library gets the same three operations: build, yes/no check, all errors.


class Library:
    """Uniform wrapper: ``build`` a validator once, then ``check`` or ``errors``."""

    name: str

    def build(self, schema: Json) -> Any:
        raise NotImplementedError

    def build_one(self, schema: Json) -> object:
        """What Shoal would do once per resource at start-up (incl. a schema check)."""
        return self.build(schema)

    def check(self, validator: Any, doc: Any) -> bool:
        """Yes/no (or first-error) validation, the fastest mode the library has."""
        raise NotImplementedError

    def errors(self, validator: Any, doc: Any) -> ErrorList:
        """All errors, each as (instance path, message)."""
        raise NotImplementedError

    def check_schema(self, schema: Json) -> str:
        """Check a schema against its metaschema; return what the user would see."""
        raise NotImplementedError


class JsonschemaRs(Library):
    name = "jsonschema_rs"

    def build(self, schema: Json) -> Any:
        return jsonschema_rs.Draft202012Validator(schema, offline=True)

    def check(self, validator: Any, doc: Any) -> bool:
        return bool(validator.is_valid(doc))

    def errors(self, validator: Any, doc: Any) -> ErrorList:
        return [(list(e.instance_path), e.message) for e in validator.iter_errors(doc)]

    def check_schema(self, schema: Json) -> str:
        # A validator for the 2020-12 metaschema (shipped with jsonschema-rs, so no
        # network) lists every problem. For it the "instance" is the user's schema, so
        # instance_path is the location inside the user's schema. (meta.validate() gives
        # the first problem only, and would fetch an unknown "$schema" URL.)
        meta = jsonschema_rs.Draft202012Validator({"$ref": DRAFT_2020_12}, offline=True)
        problems = [
            f"{'/'.join(str(p) for p in e.instance_path)}: {e.message}"
            for e in meta.iter_errors(schema)
        ]
        return "metaschema validator: " + ("; ".join(problems) or "accepted")


class FastJsonschema(Library):
    name = "fastjsonschema"

    def build(self, schema: Json) -> Any:
        # use_default=False: otherwise the generated code writes `default` values
        # into the validated document.
        return (
            fastjsonschema.compile(schema, use_default=False),
            fastjsonschema.compile(schema, use_default=False, fast_fail=False),
        )

    def build_one(self, schema: Json) -> object:
        return fastjsonschema.compile(schema, use_default=False, fast_fail=False)

    def check(self, validator: Any, doc: Any) -> bool:
        try:
            validator[0](doc)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def errors(self, validator: Any, doc: Any) -> ErrorList:
        try:
            validator[1](doc)
        except fastjsonschema.JsonSchemaValuesException as exc:
            return [(list(e.path[1:]), e.message) for e in exc.errors]
        except fastjsonschema.JsonSchemaValueException as exc:
            return [(list(exc.path[1:]), exc.message)]
        return []

    def check_schema(self, schema: Json) -> str:
        try:
            fastjsonschema.compile(schema)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            return f"compile: {type(exc).__name__}: {exc} (no schema path)"
        return "compile: accepted (no metaschema check)"


class Jsonschema(Library):
    name = "jsonschema"

    def build(self, schema: Json) -> Any:
        return jsonschema.Draft202012Validator(schema)

    def build_one(self, schema: Json) -> object:
        # The constructor does not check the schema (and compiles nothing), so add
        # the metaschema check that the other two do while building.
        jsonschema.Draft202012Validator.check_schema(schema)
        return jsonschema.Draft202012Validator(schema)

    def check(self, validator: Any, doc: Any) -> bool:
        return bool(validator.is_valid(doc))

    def errors(self, validator: Any, doc: Any) -> ErrorList:
        return [(list(e.absolute_path), e.message) for e in validator.iter_errors(doc)]

    def check_schema(self, schema: Json) -> str:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            return f"check_schema: {where}: {exc.message}"
        return "check_schema: accepted"


LIBRARIES: list[Library] = [JsonschemaRs(), FastJsonschema(), Jsonschema()]


# --------------------------------------------------------------------------- timing


def per_call_us(fn: Callable[[], object], repeat: int, min_time: float) -> tuple[float, float]:
    """Return (best, median) µs per call over ``repeat`` runs of at least ``min_time`` s."""
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < min_time:
        number *= 2
    runs = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs)


def run_benchmark(repeat: int, min_time: float) -> dict[str, dict[str, float]]:
    """Time every library and mode on every document; return best µs per validation."""
    results: dict[str, dict[str, float]] = {}
    for lib in LIBRARIES:
        validator = lib.build(SCHEMA)
        modes: dict[str, Callable[[Any, Any], object]] = {
            "yes/no": lib.check,
            "all errors": lib.errors,
        }
        for mode, call in modes.items():
            row = f"{lib.name} ({mode})"
            results[row] = {}
            for doc_name, doc in DOCUMENTS.items():
                fn = functools.partial(call, validator, doc)
                best, median = per_call_us(fn, repeat, min_time)
                results[row][doc_name] = best
                results[row][doc_name + " median"] = median
    return results


def build_times(repeat: int) -> dict[str, float]:
    """µs to build one all-errors validator from SCHEMA (once per resource)."""
    out: dict[str, float] = {}
    for lib in LIBRARIES:
        best, _ = per_call_us(functools.partial(lib.build_one, SCHEMA), repeat, 0.05)
        out[lib.name] = best
    return out


def print_table(results: dict[str, dict[str, float]]) -> None:
    cols = list(DOCUMENTS)
    print(f"| {'library (mode)':<28} | " + " | ".join(f"{c:>10}" for c in cols) + " |")
    print(f"|{'-' * 30}|" + "|".join("-" * 11 + ":" for _ in cols) + "|")
    for row, vals in results.items():
        cells = " | ".join(f"{vals[c]:>10.2f}" for c in cols)
        print(f"| {row:<28} | {cells} |")
    print("\nMedian of the repeats (µs), to show the spread:")
    for row, vals in results.items():
        cells = " | ".join(f"{vals[c + ' median']:>10.2f}" for c in cols)
        print(f"| {row:<28} | {cells} |")
    base_name = "jsonschema_rs (all errors)"
    base = results[base_name]
    print(f"\nRatios: time / time of {base_name} (higher = slower)")
    print(f"| {'library (mode)':<28} | " + " | ".join(f"{c:>10}" for c in cols) + " |")
    print(f"|{'-' * 30}|" + "|".join("-" * 11 + ":" for _ in cols) + "|")
    for row, vals in results.items():
        cells = " | ".join(f"{vals[c] / base[c]:>9.1f}x" for c in cols)
        print(f"| {row:<28} | {cells} |")


# --------------------------------------------------------------------------- features


# What the libraries raise for bad input or a schema they cannot handle; all three
# libraries' errors subclass ValueError, except jsonschema_rs.ReferencingError.
PROBE_ERRORS = (ValueError, TypeError, jsonschema_rs.ReferencingError)


def probe(fn: Callable[[], object]) -> str:
    """Run ``fn`` and describe its result or the exception it raised."""
    try:
        return repr(fn())
    except PROBE_ERRORS as exc:
        return f"raises {type(exc).__name__}: {exc}".splitlines()[0]


def feature_checks() -> None:
    for lib in LIBRARIES:
        print(f"\n=== {lib.name} {version(lib.name.replace('_', '-'))} ===")

        print("draft 2020-12 keywords (must reject the probe instance):")
        for feature, (schema, instance) in FEATURE_PROBES.items():
            try:
                ok = not lib.check(lib.build(schema), instance)
                verdict = "supported" if ok else "NOT supported (silently ignored)"
            except PROBE_ERRORS as exc:
                verdict = f"NOT supported ({type(exc).__name__}: {exc})"
            print(f"  {feature:<22} {verdict}")

        validator = lib.build(SCHEMA)
        errs = lib.errors(validator, INVALID_3)
        first_only = not lib.check(validator, INVALID_3)
        print(
            f"all errors of the 3-error document: {len(errs)} reported"
            f" (yes/no mode rejects it: {first_only})"
        )
        for path, message in errs:
            print(f"  instance path {path!s:<14} message: {message}")
        if isinstance(lib, JsonschemaRs):
            print("  error details (keyword, kind.as_dict(), schema_path):")
            extra = {**INVALID_3, "subtitle": "x"}
            for e in validator.iter_errors(extra):
                print(f"    {e.kind.name:<22} {e.kind.as_dict()!s:<28} {list(e.schema_path)}")

        print("schema checked against the metaschema (year.minimum is a string):")
        print(f"  {lib.check_schema(BAD_SCHEMA)}")
        typo: Json = {"type": "object", "properties": {"t": {"type": "strnig"}}}
        print(f"  type 'strnig': {lib.check_schema(typo)}")

    format_checks()
    bson_checks()
    normalise_check()


def format_checks() -> None:
    print("\n=== format assertion ('format': 'date-time', instance 'not-a-date') ===")
    schema: Json = {"$schema": DRAFT_2020_12, "type": "string", "format": "date-time"}
    rs_default = jsonschema_rs.Draft202012Validator(schema)
    rs_on = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    print(f"  jsonschema_rs default:                 valid={rs_default.is_valid('not-a-date')}")
    print(
        f"  jsonschema_rs validate_formats=True:   valid={rs_on.is_valid('not-a-date')}"
        f" {[e.message for e in rs_on.iter_errors('not-a-date')]}"
    )
    fjs = fastjsonschema.compile(schema)
    print(f"  fastjsonschema default (use_formats):  {probe(lambda: fjs('not-a-date'))}")
    js_cls = jsonschema.Draft202012Validator
    js_default = js_cls(schema)
    js_on = js_cls(schema, format_checker=js_cls.FORMAT_CHECKER)
    print(f"  jsonschema default:                    valid={js_default.is_valid('not-a-date')}")
    print(
        f"  jsonschema format_checker:             valid={js_on.is_valid('not-a-date')}"
        " (date-time needs the optional rfc3339-validator package)"
    )


def messages(lib: Library, validator: Any, doc: Any) -> list[str]:
    return [message for _, message in lib.errors(validator, doc)]


def bson_checks() -> None:
    print("\n=== BSON values in a document (what PATCH merges read back from MongoDB) ===")
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    values: dict[str, Any] = {
        "datetime": when,
        "ObjectId": bson.ObjectId("65a1b2c3d4e5f60718293a4b"),
        "Int64": bson.Int64(2**40),
    }
    schemas: dict[str, Json] = {
        "field typed string/integer": {
            "type": "object",
            "properties": {"v": {"type": ["string", "integer"]}},
        },
        "field not in schema": {"type": "object", "properties": {"w": {"type": "string"}}},
        "additionalProperties false": {
            "type": "object",
            "properties": {"w": {"type": "string"}},
            "additionalProperties": False,
        },
    }
    for schema_name, schema in schemas.items():
        print(f"  schema: {schema_name}")
        for value_name, value in values.items():
            doc = {"v": value}
            for lib in LIBRARIES:
                v = lib.build(schema)
                ok = probe(functools.partial(lib.check, v, doc))
                errs = probe(functools.partial(messages, lib, v, doc))
                print(f"    {value_name:<8} {lib.name:<14} yes/no: {ok:<5}  all errors: {errs}")


def normalise_check() -> None:
    """Show (and time) turning a BSON-decoded document into plain JSON types first."""
    print("\n=== normalising a BSON-decoded document before jsonschema_rs ===")
    stored = bson.decode(bson.encode({**VALID, "year": 2**40}))
    merged = {
        **stored,
        "_id": bson.ObjectId("65a1b2c3d4e5f60718293a4b"),
        "_created": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    }
    print(f"  bson.decode gives year as {type(stored['year']).__name__}")

    def plain(doc: Json) -> Any:
        return orjson.loads(orjson.dumps(doc, default=str))

    validator = jsonschema_rs.Draft202012Validator(SCHEMA, offline=True)
    body = {k: v for k, v in merged.items() if not k.startswith("_")}
    print(f"  raw merged document:       {probe(lambda: validator.is_valid(body))}")
    print(f"  orjson round trip, then:   {probe(lambda: validator.is_valid(plain(body)))}")
    best, _ = per_call_us(lambda: plain(body), 5, 0.1)
    print(f"  cost of the orjson round trip: {best:.2f} µs per document")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats of >=0.05 s each")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats (default 7)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat")
    args = parser.parse_args()
    repeat, min_time = (3, 0.05) if args.quick else (args.repeat, args.min_time)

    print(
        f"Python {platform.python_version()} on {platform.machine()},"
        f" {os.cpu_count()} CPUs; "
        + ", ".join(f"{lib.name} {version(lib.name.replace('_', '-'))}" for lib in LIBRARIES)
    )

    # Sanity: every library must agree on how many errors each document has.
    for lib in LIBRARIES:
        counts = {name: len(lib.errors(lib.build(SCHEMA), d)) for name, d in DOCUMENTS.items()}
        assert counts == {"valid": 0, "1 error": 1, "3 errors": 3}, (lib.name, counts)

    print(f"\nµs per validation, best of {repeat} repeats of >= {min_time} s each")
    print_table(run_benchmark(repeat, min_time))

    print("\nµs to build one validator (once per resource at start-up):")
    for name, us in build_times(max(3, repeat // 2)).items():
        print(f"  {name:<14} {us:>10.1f}")

    feature_checks()


if __name__ == "__main__":
    main()
