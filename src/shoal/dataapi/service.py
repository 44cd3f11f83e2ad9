"""The Data API service: which collections a caller may reach, and what each
action does to them.

A namespace is served only if the config lists it (``data_api.data_sources``),
and only to the roles listed there. A collection of the configured database
that belongs to a declared resource keeps that resource's rules as well: the
resource must serve the REST method the action stands for, the caller needs
the resource's roles, an ``auth_field`` keeps each caller to their own
documents, every written document is checked against the schema and stamped
(``_etag``, ``_updated``) as a REST write would be, and the resource's cache
generation moves on. Anything else goes to MongoDB as the client sent it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..auth import Principal, resource_access, ruled_access
from ..config import DataApiCollectionSettings, Settings
from ..errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    UnprocessableEntity,
)
from ..resources import UNRESTRICTED, Access, Resources, ResourceService
from ..resources.documents import content_of, etag_key
from ..resources.visibility import FieldMask
from ..storage import Storage, UpdateOutcome
from .refusals import JoinCheck, check_expression, check_pipeline
from .requests import ACTIONS, MAX_LIMIT, Action, ActionRequest, Namespace
from .rules import check_readable, check_ruled_inserts, check_ruled_update, refuse_ruled_upsert

#: Reads a user's ``data`` by the user's id (``Accounts.user_data``).
UserData = Callable[[str], Awaitable[Mapping[str, Any]]]

if TYPE_CHECKING:  # Quart only for types
    from quart import Quart

EXTENSION_KEY = "shoal.data_api"

#: How often an update of a resource's document is tried again after another
#: writer changed the document between the read and the write.
_RACE_RETRIES = 3

Document = dict[str, Any]


@dataclass(frozen=True)
class Result:
    """A success: the body (BSON values) and its status."""

    body: Document
    status: int = 200


@dataclass(frozen=True)
class Target:
    """A namespace the caller may use for one action, the MongoDB database it
    stands for, and the rules that apply."""

    namespace: Namespace
    database: str
    service: ResourceService | None
    access: Access

    @property
    def collection(self) -> str:
        return self.namespace.collection


def no_rule(namespace: Namespace) -> Forbidden:
    return Forbidden(f"no rule exists for namespace '{namespace}'", code="NoMatchingRuleFound")


class DataApi:
    """The extension: the Data API's rules and actions, on one worker's storage."""

    def __init__(self, settings: Settings, storage: Storage, resources: Resources) -> None:
        self.settings = settings.data_api
        self.storage = storage
        self.home_database = settings.mongodb.database
        #: (database, collection) → the resource whose rules apply there: the
        #: one resource serving it (the config refuses two for a collection the
        #: Data API serves); an aggregation endpoint only reads its collection.
        self.resources: dict[tuple[str, str], ResourceService] = {
            (self.home_database, service.collection): service
            for service in resources.services.values()
            if service.aggregation is None
        }
        ruled = [service.resource.settings.rules for service in self.resources.values()]
        ruled += [
            collection.rules
            for source in self.settings.data_sources.values()
            for database in source.databases.values()
            for collection in database.collections.values()
        ]
        self.rules_use_user_data = any(
            rules is not None and rules.uses_user_data for rules in ruled
        )
        #: What ETags of documents shown without some of their fields are made with.
        self.etag_key = etag_key(settings.secret_key.get_secret_value())

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # -- who may reach what --------------------------------------------------

    def rules(self, namespace: Namespace) -> tuple[str, DataApiCollectionSettings]:
        """The MongoDB database and the config entry of ``namespace``; 400 for
        an unknown data source, 403 for a database or collection not served."""
        source = self.settings.data_sources.get(namespace.data_source)
        if source is None:
            raise BadRequest(
                f"The data source '{namespace.data_source}' is disabled or does not exist",
                code="InvalidParameter",
            )
        database = source.databases.get(namespace.database)
        rules = database.collections.get(namespace.collection) if database else None
        if database is None or rules is None:
            raise no_rule(namespace)
        return database.name or namespace.database, rules

    def target(
        self,
        namespace: Namespace,
        action: Action,
        principal: Principal,
        data: Mapping[str, Any] | None = None,
    ) -> Target:
        """What ``principal`` (whose ``%%user.data`` is ``data``) may do with
        ``action`` on ``namespace``; 403 otherwise."""
        database, rules = self.rules(namespace)
        allowed = rules.writer_roles if action.writes else rules.reader_roles
        if principal.roles.isdisjoint(allowed):
            kind = "write to" if action.writes else "read"
            raise Forbidden(
                f"no rule lets this caller {kind} '{namespace}'"
                + (f"; it needs one of the roles: {', '.join(sorted(allowed))}" if allowed else ""),
                code="NoMatchingRuleFound",
            )
        service = self.resources.get((database, namespace.collection))
        if service is None:
            if rules.rules is None:
                return Target(namespace, database, None, UNRESTRICTED)
            try:
                access = ruled_access(
                    UNRESTRICTED,
                    rules.rules,
                    action.method,
                    principal,
                    data,
                    mask=FieldMask(meta=frozenset({"_id"})),
                    etag_key=self.etag_key,
                    name=f"'{namespace}'",
                )
            except ApiError as error:
                raise Forbidden(error.message, code="NoMatchingRuleFound") from None
            return Target(namespace, database, None, access)
        settings = service.resource.settings
        if action.method in settings.resource_methods:
            item = False
        elif action.method in settings.item_methods:
            item = True
        else:
            raise Forbidden(
                f"{action.name} is not allowed on '{namespace}': its resource "
                f"{service.resource.name} does not serve {action.method}",
                code="NoMatchingRuleFound",
            )
        try:
            access = resource_access(
                service.resource, action.method, principal, item=item, data=data
            )
        except ApiError as error:
            raise Forbidden(error.message, code="NoMatchingRuleFound") from None
        # The resource's own documents only: its datasource.filter, and with
        # soft delete the documents not deleted.
        access = access.narrowed(service.resource.base_filter(include_deleted=False))
        return Target(namespace, database, service, access)

    def _join_check(
        self, home: Target, principal: Principal, data: Mapping[str, Any] | None
    ) -> JoinCheck:
        def may_join(collection: str) -> str | None:
            namespace = Namespace(home.namespace.data_source, home.namespace.database, collection)
            try:
                target = self.target(namespace, ACTIONS["find"], principal, data)
            except ApiError as error:
                return error.message
            if target.access.filter:
                return "its resource keeps documents to their owners or filters them"
            if target.access.fields.hides:
                return "its resource keeps some fields of its documents from this caller"
            return None

        return may_join

    # -- the actions -----------------------------------------------------------

    async def run(
        self, request: ActionRequest, principal: Principal, user_data: UserData | None = None
    ) -> Result:
        """Do ``request`` as ``principal``; errors are ``ApiError`` values.
        ``user_data`` reads a user's ``%%user.data``, where resources' rules use it."""
        data = None
        if user_data is not None and principal.kind == "user" and self.rules_use_user_data:
            data = await user_data(principal.id)
        target = self.target(request.namespace, request.action, principal, data)
        check_expression(request.filter, "filter")
        if request.projection is not None:  # a projection may hold expressions too
            check_expression(request.projection, "projection")
        if request.update is not None:
            check_expression(request.update, "update")
        if request.action.name == "aggregate":
            check_pipeline(request.pipeline, self._join_check(target, principal, data))
        check_readable(target.access.fields, request)
        handler = _HANDLERS[request.action.name]
        body = await handler(self, target, request)
        return Result(body, request.action.status)

    async def _find_one(self, target: Target, request: ActionRequest) -> Document:
        documents = await self.storage.find_many(
            target.collection,
            target.access.restrict(request.filter),
            database=target.database,
            projection=request.projection,
            sort=request.sort,
            limit=1,
            max_time_ms=self.settings.max_time_ms,
        )
        fields = target.access.fields.for_projection(request.projection)
        return {"document": fields.apply(documents[0]) if documents else None}

    async def _find(self, target: Target, request: ActionRequest) -> Document:
        documents = await self.storage.find_many(
            target.collection,
            target.access.restrict(request.filter),
            database=target.database,
            projection=request.projection,
            sort=request.sort,
            skip=request.skip,
            limit=request.limit,
            max_time_ms=self.settings.max_time_ms,
        )
        fields = target.access.fields.for_projection(request.projection)
        return {"documents": [fields.apply(document) for document in documents]}

    async def _aggregate(self, target: Target, request: ActionRequest) -> Document:
        # What the caller may not see is gone before the first stage of its own.
        first = [{"$match": dict(target.access.filter)}] if target.access.filter else []
        pipeline = [*first, *target.access.fields.stages(), *request.pipeline]
        documents = await self.storage.aggregate(
            target.collection,
            pipeline,
            database=target.database,
            max_time_ms=self.settings.max_time_ms,
            max_documents=MAX_LIMIT,
        )
        if len(documents) > MAX_LIMIT:
            raise BadRequest(
                f"the pipeline returns more than {MAX_LIMIT} documents; "
                "end it with $limit (and page with $skip)",
                code="InvalidParameter",
            )
        # Dropped by the first stages already; taken out again, at any depth, in
        # case an engine's $$ROOT still holds them (the embedded store's does).
        fields = target.access.fields
        return {"documents": [fields.apply_within(document) for document in documents]}

    async def _insert(self, target: Target, request: ActionRequest) -> Document:
        single = request.action.name == "insertOne"
        bodies = [request.document] if single else request.documents
        if target.service is not None:
            try:
                documents = await target.service.create(list(bodies), target.access)
            except UnprocessableEntity as error:
                raise _schema_failure(error) from None
        else:
            documents = [dict(document) for document in bodies if document is not None]
            if target.access.ruled:
                check_ruled_inserts(target.access, documents)
            await self.storage.insert_many(
                target.collection, documents, database=target.database, client_query=True
            )
        ids = [document["_id"] for document in documents]
        return {"insertedId": ids[0]} if single else {"insertedIds": ids}

    async def _update(self, target: Target, request: ActionRequest) -> Document:
        assert request.update is not None
        many = request.action.name == "updateMany"
        if target.service is not None:
            outcome = await self._update_resource(target, target.service, request, many=many)
        else:
            if target.access.ruled:
                check_ruled_update(target.access, request)
            outcome = await self.storage.update(
                target.collection,
                target.access.restrict(request.filter),
                request.update,
                database=target.database,
                upsert=request.upsert,
                many=many,
            )
        return _counts(outcome)

    async def _update_resource(
        self, target: Target, service: ResourceService, request: ActionRequest, *, many: bool
    ) -> UpdateOutcome:
        """Each matching document through the resource's own update: its
        operators in one atomic write where it takes them, else ``$set`` and
        ``$unset`` as a PATCH; an upsert is built from the filter's equalities,
        ``$setOnInsert`` and ``$set``, and validated before it is inserted."""
        update = dict(request.update or {})
        on_insert: Mapping[str, Any] = update.pop("$setOnInsert", {})
        bound = service.resource.settings.max_affected
        documents = await self.storage.find_many(
            target.collection,
            target.access.restrict(request.filter),
            database=target.database,
            limit=bound + 1 if many else 1,
        )
        if len(documents) > bound:
            raise Conflict(
                f"updateMany on '{target.namespace}' (a resource's collection) matches more "
                f"than its max_affected ({bound}) documents; nothing was changed: narrow "
                "the filter",
                code=TOO_MANY_MATCHES,
            )
        if not documents:
            if not request.upsert:
                return UpdateOutcome(0, 0)
            others = sorted(set(update) - {"$set"})
            if others:
                raise BadRequest(
                    f"an upsert on '{target.namespace}' (a resource's collection) takes "
                    f"$set and $setOnInsert, not {others[0]}: the new document is checked "
                    "against the resource's schema before it is written",
                    code="InvalidParameter",
                )
            new = _upserted(request.filter, {**on_insert, **update.get("$set", {})})
            return UpdateOutcome(0, 0, await self._insert_validated(target, service, new))
        if not update:
            return UpdateOutcome(len(documents), 0)
        if not service.resource.settings.atomic_updates:
            return await self._set_fields(target, service, documents, update)
        matched = modified = 0
        for current in documents:
            try:
                after = await service.update(
                    _item(service, current), dict(update), None, target.access
                )
            except NotFound:
                continue  # deleted since it was read
            except UnprocessableEntity as error:
                raise _schema_failure(error) from None
            matched += 1
            if content_of(after) != content_of(target.access.fields.apply(current)):
                modified += 1
        return UpdateOutcome(matched, modified)

    async def _set_fields(
        self,
        target: Target,
        service: ResourceService,
        documents: list[Document],
        update: Mapping[str, Any],
    ) -> UpdateOutcome:
        """``$set`` and ``$unset`` as a PATCH applies changes: each document
        merged, validated, then written if unchanged since it was read (read
        again and retried when another writer came first)."""
        others = sorted(set(update) - {"$set", "$unset"})
        if others:
            raise BadRequest(
                f"{others[0]} is not allowed on '{target.namespace}': its resource "
                f"{service.resource.name} takes $set and $unset (other update operators "
                "need atomic_updates: true)",
                code="InvalidParameter",
            )
        values: Mapping[str, Any] = update.get("$set", {})
        removed = list(update.get("$unset", {}))
        matched = modified = 0
        for current in documents:
            for attempt in range(_RACE_RETRIES):
                try:
                    changed = await service.set_fields(current, values, removed, target.access)
                except UnprocessableEntity as error:
                    raise _schema_failure(error) from None
                except PreconditionFailed:
                    if attempt == _RACE_RETRIES - 1:
                        raise
                    fresh = await self.storage.find_many(
                        target.collection,
                        target.access.restrict({"_id": current["_id"]}),
                        database=target.database,
                        limit=1,
                    )
                    if not fresh:
                        break  # deleted since it was read
                    current = fresh[0]
                    continue
                matched += 1
                modified += changed is not None
                break
        if modified:
            await service.notify_written()
        return UpdateOutcome(matched, modified)

    async def _insert_validated(
        self, target: Target, service: ResourceService, document: Document
    ) -> Any:
        if not target.access.inserts:
            raise Forbidden(
                f"an upsert on '{target.namespace}' would insert, which your role may not",
                code="NoMatchingRuleFound",
            )
        try:
            (created,) = await service.create([document], target.access)
        except UnprocessableEntity as error:
            raise _schema_failure(error) from None
        return created["_id"]

    async def _replace(self, target: Target, request: ActionRequest) -> Document:
        assert request.replacement is not None
        service = target.service
        if service is None:
            if target.access.ruled:
                refuse_ruled_upsert(request)
                if target.access.writes.hides:
                    raise Forbidden(
                        "replaceOne would replace fields your role may not write; "
                        "change the others with updateOne",
                        code="NoMatchingRuleFound",
                    )
            outcome = await self.storage.replace(
                target.collection,
                target.access.restrict(request.filter),
                request.replacement,
                database=target.database,
                upsert=request.upsert,
            )
            return _counts(outcome)
        documents = await self.storage.find_many(
            target.collection,
            target.access.restrict(request.filter),
            database=target.database,
            limit=1,
        )
        if not documents:
            if not request.upsert:
                return _counts(UpdateOutcome(0, 0))
            new = {**_equalities(request.filter), **request.replacement}
            return _counts(UpdateOutcome(0, 0, await self._insert_validated(target, service, new)))
        current = documents[0]
        try:
            await service.replace(_item(service, current), request.replacement, None, target.access)
        except UnprocessableEntity as error:
            raise _schema_failure(error) from None
        return _counts(UpdateOutcome(1, 1))

    async def _delete(self, target: Target, request: ActionRequest) -> Document:
        many = request.action.name == "deleteMany"
        if target.service is not None and many:
            # The resource's bound holds here too (409 beyond max_affected).
            try:
                _, deleted = await target.service.delete_where(dict(request.filter), target.access)
            except Conflict as error:
                raise Conflict(error.message, code=TOO_MANY_MATCHES) from None
            return {"deletedCount": deleted}
        if target.service is not None:
            # One document, through the resource's own delete: soft delete marks
            # it, versions and hooks see it, as a REST DELETE would.
            found = await self.storage.find_many(
                target.collection,
                target.access.restrict(request.filter),
                database=target.database,
                limit=1,
            )
            if not found:
                return {"deletedCount": 0}
            try:
                await target.service.delete(_item(target.service, found[0]), None, target.access)
            except NotFound:
                return {"deletedCount": 0}  # deleted since it was read
            return {"deletedCount": 1}
        deleted = await self.storage.delete(
            target.collection,
            target.access.restrict(request.filter),
            database=target.database,
            many=many,
        )
        return {"deletedCount": deleted}


def _item(service: ResourceService, document: Document) -> Any:
    """What names a stored document in the resource's service (its id field)."""
    return document.get(service.resource.ids.field)


#: The ``error_code`` of a write by filter on a resource's collection that
#: matches more than the resource's ``max_affected`` (not one of the hosted
#: service's codes: it had no such bound).
TOO_MANY_MATCHES = "TooManyMatches"


def _counts(outcome: UpdateOutcome) -> Document:
    body: Document = {"matchedCount": outcome.matched, "modifiedCount": outcome.modified}
    if outcome.upserted_id is not None:
        body["upsertedId"] = outcome.upserted_id
    return body


def _equalities(filter: Mapping[str, Any]) -> Document:
    """The fields an upsert copies from its filter: top-level equalities
    (``{"a": 1}`` or ``{"a": {"$eq": 1}}``), as MongoDB does."""
    fields: Document = {}
    for key, value in filter.items():
        if key.startswith("$") or "." in key:
            continue
        if isinstance(value, dict) and any(k.startswith("$") for k in value):
            if set(value) == {"$eq"}:
                fields[key] = value["$eq"]
            continue
        fields[key] = value
    return fields


def _upserted(filter: Mapping[str, Any], values: Mapping[str, Any]) -> Document:
    document = _equalities(filter)
    for path, value in values.items():
        *parents, leaf = path.split(".")
        target = document
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadRequest(f"upsert: {path} crosses a value that is not an object")
            target = child
        target[leaf] = value
    return document


def _schema_failure(error: UnprocessableEntity) -> BadRequest:
    """A document a resource's schema refuses: the hosted service's code for a
    write that breaks a schema, with every problem in the message."""
    issues = error.issues
    if isinstance(issues, list):
        parts = [
            f"documents[{index}]: " + "; ".join(f"{k}: {v}" for k, v in item.items())
            for index, item in enumerate(issues)
            if item
        ]
    else:
        parts = [f"{k}: {v}" for k, v in (issues or {}).items()]
    return BadRequest(
        f"{error.message} ({'; '.join(parts)})",
        code="SchemaValidationFailedWrite",
        issues=issues,
    )


_HANDLERS = {
    "findOne": DataApi._find_one,
    "find": DataApi._find,
    "aggregate": DataApi._aggregate,
    "insertOne": DataApi._insert,
    "insertMany": DataApi._insert,
    "updateOne": DataApi._update,
    "updateMany": DataApi._update,
    "replaceOne": DataApi._replace,
    "deleteOne": DataApi._delete,
    "deleteMany": DataApi._delete,
}
