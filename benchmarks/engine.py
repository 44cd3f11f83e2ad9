"""The database engine a run measures, and the URIs that reach it.

By default the run starts the MongoDB stand-in (nx-27017, SQLite underneath) on
a free loopback port. ``--mongodb-uri`` (or ``SHOAL_BENCH_MONGODB_URI``) names any
MongoDB-compatible server instead (a real ``mongod``, FerretDB): every scenario
then runs against it, in a database of the run's own that is dropped at the end.
``identify`` asks the server what it is (``buildInfo``, ``serverStatus``), so the
report can name the engine, and for a server on this machine finds the process
listening on its port, whose CPU counts as the database's.

The URI helpers keep everything the given URI holds (credentials, options) and
change only what the harness needs: the address (``with_address``, to go through
the delay proxy) and the database (``with_database``, for Eve, which reads it
from the URI). ``redact`` drops the password before a URI is printed or saved.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from .proc import listening_pid

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class MongoURI:
    """The parts of a ``mongodb://`` URI (``user:pass@host:port,…/database?options``)."""

    scheme: str
    userinfo: str
    hosts: tuple[str, ...]
    database: str
    options: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, uri: str) -> MongoURI:
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in {"mongodb", "mongodb+srv"}:
            raise ValueError("expected a mongodb:// or mongodb+srv:// URI")
        authority, _, tail = rest.partition("/")
        if "?" in authority:  # a query needs the "/" first; be lenient
            authority, _, query = authority.partition("?")
            tail = "?" + query + tail
        userinfo, _, hosts = authority.rpartition("@")
        database, _, query = tail.partition("?")
        return cls(
            scheme=scheme,
            userinfo=userinfo,
            hosts=tuple(host for host in hosts.split(",") if host),
            database=database,
            options=tuple(parse_qsl(query, keep_blank_values=True)),
        )

    def __str__(self) -> str:
        authority = (self.userinfo + "@" if self.userinfo else "") + ",".join(self.hosts)
        query = urlencode(self.options, safe=":,/") if self.options else ""
        return f"{self.scheme}://{authority}/{self.database}" + (f"?{query}" if query else "")

    def option(self, name: str) -> str | None:
        found = [value for key, value in self.options if key.lower() == name.lower()]
        return found[-1] if found else None

    def with_option(self, name: str, value: str) -> MongoURI:
        kept = tuple((key, v) for key, v in self.options if key.lower() != name.lower())
        return replace(self, options=(*kept, (name, value)))

    def address(self) -> tuple[str, int]:
        """The one server this URI names (the delay proxy needs a single target)."""
        if self.scheme != "mongodb" or len(self.hosts) != 1:
            raise ValueError(
                "putting the database at a distance needs a mongodb:// URI naming one "
                "host (not mongodb+srv://, not a replica set's seed list)"
            )
        host, _, port = self.hosts[0].rpartition(":")
        if not host or not port.isdigit():  # no port: the default one
            return self.hosts[0].strip("[]"), 27017
        return host.strip("[]"), int(port)


def with_address(uri: str, host: str, port: int) -> str:
    """``uri`` pointed at ``host:port`` directly (the delay proxy), nothing else changed."""
    parts = MongoURI.parse(uri)
    parts.address()  # refuses what the proxy cannot stand in for
    moved = replace(parts, hosts=(f"{host}:{port}",))
    # The server may announce other addresses (a replica set's members): talk to this one.
    return str(moved.with_option("directConnection", "true"))


def with_database(uri: str, database: str) -> str:
    """``uri`` with ``database`` as its default database; credentials keep the
    database they authenticate against (the URI's own, else ``admin``)."""
    parts = MongoURI.parse(uri)
    if parts.userinfo and parts.option("authSource") is None:
        parts = parts.with_option("authSource", parts.database or "admin")
    return str(replace(parts, database=quote(database)))


def redact(uri: str) -> str:
    """``uri`` without its password, for the report."""
    try:
        parts = MongoURI.parse(uri)
    except ValueError:
        return "<not a MongoDB URI>"
    if ":" in parts.userinfo:
        user = parts.userinfo.split(":", 1)[0]
        parts = replace(parts, userinfo=f"{user}:***")
    return str(parts)


@dataclass
class Engine:
    """A MongoDB-compatible server the run uses: how to reach it, what it is."""

    uri: str
    name: str
    #: Local processes whose CPU the results count as the database's.
    pids: list[int] = field(default_factory=list)
    #: Named by ``--mongodb-uri`` (not the stand-in the run started).
    given: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": redact(self.uri),
            "cpu_counted": bool(self.pids),
            "given": self.given,
        }


def name_of(build_info: dict[str, Any], server_status: dict[str, Any]) -> str:
    """A readable name for the server from its ``buildInfo`` and ``serverStatus``."""
    version = str(build_info.get("version", "?"))
    for document in (build_info, server_status):
        for key, value in document.items():
            if key.lower().startswith("ferretdb"):
                ferret = value.get("version") if isinstance(value, dict) else value
                return f"FerretDB {ferret} (MongoDB {version} compatible)"
    process = str(server_status.get("process") or build_info.get("process") or "")
    if process.startswith("nx_27017"):
        installed = ""
        with contextlib.suppress(metadata.PackageNotFoundError):
            installed = " " + metadata.version("nx-27017")
        return f"nx-27017{installed}, the MongoDB stand-in (SQLite underneath)"
    if process and Path(process).name not in {"mongod", "mongos"}:
        return f"{Path(process).name} (MongoDB {version} compatible)"
    return f"MongoDB {version}"


def identify(uri: str) -> Engine:
    """Ask the server at ``uri`` what it is; fails if it does not answer."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        build_info = client.admin.command("buildInfo")
        server_status: dict[str, Any] = {}
        with contextlib.suppress(PyMongoError):
            server_status = client.admin.command("serverStatus")
    finally:
        client.close()
    engine = Engine(uri=uri, name=name_of(build_info, server_status))
    with contextlib.suppress(ValueError):
        host, port = MongoURI.parse(uri).address()
        pid = listening_pid(port) if host in LOOPBACK else None
        if pid is not None:
            engine.pids = [pid]
    return engine
