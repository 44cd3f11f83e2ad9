"""``Resources``: the app extension holding one ``ResourceService`` per resource
of the config; it creates their indexes (and the accounts') when the app
starts serving."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pymongo.errors import PyMongoError

from ..config import Settings
from ..errors import ApiError, ServiceUnavailable
from ..pipelines import joined_collections
from ..storage import Storage
from ..tasks import cancel
from .cursors import CursorCodec
from .documents import etag_key
from .hooks import EXTENSION_KEY as HOOKS_KEY
from .hooks import Hooks
from .indexes import Indexed, ensure_indexes_in_background, record_index_problem
from .model import Resource
from .routes import RouteTable
from .service import ResourceService

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

EXTENSION_KEY = "shoal.resources"


#: Seconds start-up waits for MongoDB before creating indexes in the background.
STARTUP_INDEX_TIMEOUT = 2.0


def build_resources(settings: Settings) -> dict[str, Resource]:
    """Every resource of the config, each knowing the others (its catalog)."""
    key = etag_key(settings.secret_key.get_secret_value())
    built = {
        name: Resource(name, resource, max_query_depth=settings.max_query_depth, etag_key=key)
        for name, resource in settings.resources.items()
    }
    for resource in built.values():
        resource.catalog = built
    return built


def readers(settings: Settings, collection: str) -> list[str]:
    """The resources whose answers show documents of ``collection``: its own
    resources, those that embed them, and aggregations that read or join it.
    A write to the collection makes their cached answers stale."""
    sources = {
        name: resource.datasource.source or name for name, resource in settings.resources.items()
    }
    names = []
    for name, resource in settings.resources.items():
        read = {sources[name]}
        for _, relation in resource.relations:
            if relation.get("embeddable"):
                read.add(sources[relation["resource"]])
        if resource.aggregation is not None:
            read.update(joined_collections(resource.aggregation.pipeline))
        if collection in read:
            names.append(name)
    return names


class Resources:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        cursors = CursorCodec(settings.secret_key.get_secret_value())
        #: The app's event hooks (``shoal_hooks(app)``).
        self.hooks = Hooks(frozenset(settings.resources))
        built = build_resources(settings)
        self.services: dict[str, ResourceService] = {
            name: ResourceService(resource, storage, cursors, self.hooks)
            for name, resource in built.items()
        }
        #: Every route of every resource (``routes.py``).
        self.routes = RouteTable(built)
        #: Collection → the resources whose answers show its documents.
        self.readers = {
            service.collection: readers(settings, service.collection)
            for service in self.services.values()
        }
        self._index_task: asyncio.Task[None] | None = None
        #: Whose indexes start-up creates: every resource, and what else asks.
        self.indexed: list[Indexed] = list(self.services.values())
        #: Owners whose indexes MongoDB refused, and why.
        self.index_problems: dict[str, str] = {}

    def add_indexed(self, owner: Indexed) -> None:
        """Create ``owner``'s indexes at start-up too (the auth accounts)."""
        self.indexed.append(owner)

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.extensions[HOOKS_KEY] = self.hooks
        app.before_serving(self.create_indexes)
        app.after_serving(self.stop)

    async def create_indexes(self) -> None:
        """Create indexes now; if MongoDB is unreachable, keep trying in the
        background rather than refusing to start. An index MongoDB refuses
        (say, existing duplicates under a unique field) is logged and makes
        ``/readyz`` fail, naming the resource, until fixed and restarted."""
        pending: list[Indexed] = []
        for owner in self.indexed:
            try:
                await owner.ensure_indexes(timeout=STARTUP_INDEX_TIMEOUT)
            except ServiceUnavailable:
                pending.append(owner)
            except (ApiError, PyMongoError) as error:
                record_index_problem(self.index_problems, owner.index_owner, error)
        if pending:
            self._index_task = asyncio.create_task(
                ensure_indexes_in_background(pending, self.index_problems)
            )

    async def stop(self) -> None:
        task, self._index_task = self._index_task, None
        await cancel(task)


def get_resources(app: Quart) -> Resources:
    resources: Resources = app.extensions[EXTENSION_KEY]
    return resources
