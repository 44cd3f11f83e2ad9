"""What a caller may not read or write of a collection the Data API serves
(a resource's ``datasource.projection`` and ``rules``, or a ``data_api``
collection's own ``rules``): the checks on a request's filter, sort,
projection and update, and on writes to a collection with rules and no
resource (a resource's own writes check themselves, ``resources/service.py``)."""

from __future__ import annotations

from ..errors import BadRequest
from ..resources import Access
from ..resources.documents import Document
from ..resources.visibility import FieldMask, matches
from .requests import ActionRequest


def check_readable(fields: FieldMask, request: ActionRequest) -> None:
    """400 for a filter, sort or update that names a field the caller may not
    read: its answer (which documents match, how many changed) would tell the
    field's values."""
    if not fields.hides:
        return
    fields.check_filter(request.filter, "filter")
    fields.check_names(request.sort or {}, "sort")
    for name, value in (request.projection or {}).items():
        # An expression ({"x": "$salary"}) would copy a field the caller may
        # not read under another name: only inclusions and exclusions here.
        if isinstance(value, bool) or value in (0, 1):
            continue
        raise BadRequest(
            f"projection: {name!r} is an expression; where some fields are not readable, "
            "a projection only includes (1) or excludes (0) fields",
            code="InvalidParameter",
        )
    for operator, changes in (request.update or {}).items():
        named = list(changes)
        if operator == "$rename":
            named += [value for value in changes.values() if isinstance(value, str)]
        fields.check_names(named, "update")


def check_ruled_inserts(access: Access, documents: list[Document]) -> None:
    """Inserts into a collection with rules (and no resource): 403 for a field
    the role may not write, 400 for a document outside its write filter."""
    for index, document in enumerate(documents):
        writes = access.writes.governing(document)  # the role of the new document
        writes.check_writable(name for name in document if name != "_id")
        if access.insert_filter and not matches(access.insert_filter, document):
            raise BadRequest(
                f"documents[{index}] is outside the documents your role may write",
                code="SchemaValidationFailedWrite",
            )


def refuse_ruled_upsert(request: ActionRequest) -> None:
    if request.upsert:
        raise BadRequest(
            "upsert is not supported on a collection with rules and no resource: "
            "insert the document with insertOne",
            code="InvalidParameter",
        )


def check_ruled_update(access: Access, request: ActionRequest) -> None:
    """An update of a collection with rules (and no resource): no upsert, and
    403 for a field its operators (or a ``$rename``'s target) would write that
    the role may not."""
    refuse_ruled_upsert(request)
    update = request.update or {}
    renamed = update.get("$rename", {}).values()
    named = [path for fields in update.values() for path in fields]
    access.writes.check_writable([*named, *(name for name in renamed if isinstance(name, str))])
