"""The role of a resource's rules that applies to a caller (``choose_role``),
in the shape of Atlas App Services: the first role whose ``apply_when``
matches. Its field permissions become the caller's ``FieldMask`` (and the mask
of what it may write), its document filters row filters that ``Access`` adds
to every query. A rules mask that hides something re-tags each document it
shows: its ``_etag`` is an HMAC of what the caller sees (``FieldMask.retag``).

With ``%%root.<field>`` conditions (top-level keys of ``apply_when``), a role
applies per document. Its ``apply_when`` splits in two: the caller's part,
matched here as any other, and the document's part, a filter on the document
with its expansions filled in. The candidates for a request are the roles
whose caller's part matches, in order, up to the first without a document's
part; candidate *i* governs the documents its part matches and no earlier
candidate's does (``$nor``). The caller's filters are then the ``$or`` over
the candidates of what each may do with the documents it governs, and its
masks ``DocumentMask``s: each document is shown as the candidate governing it
shows it, and names are checked against the strictest union of the
candidates' masks. Where the document shown may not be whole (a client's
projection, an aggregation's output, an old version's diff), the service
asks for that strictest mask instead (``FieldMask.strictest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import reduce
from typing import Any

from mongoquery import Query

from ..config.rules import ROOT, RuleFieldSettings, RuleRoleSettings, RulesSettings
from .access import conjoin
from .visibility import FieldMask, filter_fields, matches

Document = dict[str, Any]

#: A filter no document matches: what a role that reads nothing sees, and a
#: document filter whose expansion has no value for the caller (fails closed).
NOTHING: Document = {"_id": {"$in": []}}


@dataclass(frozen=True)
class Caller:
    """What the expansions see of a signed-in caller: ``%%user.id``,
    ``%%user.name``, ``%%user.roles`` and ``%%user.data.<field>``."""

    id: str
    name: str
    roles: frozenset[str]
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Role:
    """What the role that applied lets a caller do (``name`` None: no role
    matched, and nothing is allowed); with ``%%root``, what the candidate
    roles let it do, each on the documents it governs (``governed``)."""

    name: str | None
    read_filter: Document
    write_filter: Document
    reads: FieldMask
    writes: FieldMask
    may_read: bool
    may_write: bool
    may_insert: bool
    may_delete: bool
    #: The expansions' values the role's filters used (the response cache
    #: keys on them); ``cacheable`` False when they hold ``%%now``.
    key: str
    cacheable: bool
    #: With ``%%root`` conditions: each candidate role, in order, with the
    #: documents it governs (a filter). Then ``read_filter`` is the documents
    #: some candidate may read of those it governs, ``write_filter`` those a
    #: new document may be (governed by a candidate that may insert, inside
    #: its write filter), the ``may_`` flags whether any candidate may, and the
    #: masks ``DocumentMask``s.
    governed: tuple[tuple[Document, Role], ...] = ()

    def scope(self, method: str) -> Document:
        """The documents a ``PATCH``, ``PUT`` or ``DELETE`` (``method``) may
        reach: inside both filters of the role that governs each, where that
        role may write (or delete)."""
        if not self.governed:
            return conjoin(self.read_filter, self.write_filter)
        return _any(
            conjoin(governs, role.read_filter, role.write_filter)
            for governs, role in self.governed
            if (role.may_delete if method == "DELETE" else role.may_write)
        )


def _context(caller: Caller | None, now: datetime) -> Document:
    context: Document = {"%%now": now}
    if caller is not None:
        context["%%user"] = {
            "id": caller.id,
            "name": caller.name,
            "roles": sorted(caller.roles),
            "data": dict(caller.data),
        }
    return context


_MISSING = object()


def _expansion(text: str, context: Document) -> Any:
    """The value of an expansion (``_MISSING`` when the caller has none)."""
    if text == "%%now":
        return context["%%now"]
    value: Any = context
    parts = ["%%user", *text.removeprefix("%%user.").split(".")]
    for part in parts:
        if not isinstance(value, dict) or part not in value:  # the context's are dicts
            return _MISSING
        value = value[part]
    return value


def _expanded(value: Any, context: Document, used: list[str]) -> Any:
    """``value`` with each expansion replaced (``_MISSING`` anywhere: the
    whole is ``_MISSING``); what was used is added to ``used``."""
    if isinstance(value, str):
        if value.startswith("%%"):
            used.append(value)
            return _expansion(value, context)
        return value
    if isinstance(value, dict):  # a config's filters are dicts
        out: Document = {}
        for key, item in value.items():
            expanded = _expanded(item, context, used)
            if expanded is _MISSING:
                return _MISSING
            out[key] = expanded
        return out
    if isinstance(value, list):
        items = [_expanded(item, context, used) for item in value]
        return _MISSING if any(item is _MISSING for item in items) else items
    return value


def _applies(apply_when: Mapping[str, Any], context: Document) -> bool:
    """Whether ``apply_when`` matches the caller: every expansion it names
    has a value (an anonymous caller has no ``%%user``: failing closed), and
    the query, on the expansions' values, matches."""
    if not apply_when:
        return True
    if _plain(apply_when):
        # {"%%user.roles": "clerk"}: each named expansion equals the value or,
        # an array, holds it (what the query would say, without building one).
        for name, wanted in apply_when.items():
            value = _expansion(name, context)
            if value is _MISSING:
                return False
            if value != wanted and not (isinstance(value, list) and wanted in value):
                return False
        return True
    used: list[str] = []
    names = [name for name in filter_fields(apply_when) if name.startswith("%%")]
    for name in names:
        if _expansion(name, context) is _MISSING:
            return False
    expanded = _expanded(dict(apply_when), context, used)
    if expanded is _MISSING:
        return False
    try:
        return bool(Query(expanded).match(context))
    except Exception:  # an operator mongoquery cannot match: the role does not apply
        return False


def _plain(apply_when: Mapping[str, Any]) -> bool:
    """Whether ``apply_when`` is expansions equal to plain strings (no
    operator, no expansion among the values)."""
    return all(
        isinstance(name, str)
        and name.startswith("%%")
        and isinstance(value, str)
        and not value.startswith("%")
        for name, value in apply_when.items()
    )


def _permission(role: RuleRoleSettings, rule: RuleFieldSettings | None, write: bool) -> bool:
    if rule is None:
        rule = role.additional_fields
    if rule is None:
        return role.write if write else role.read or role.write
    return rule.write if write else rule.read or rule.write


def _mask(role: RuleRoleSettings, meta: frozenset[str], *, write: bool) -> FieldMask:
    """The fields ``role`` lets a caller read (or write): those ``fields``
    names, the others as ``additional_fields`` (or the role's own ``read``
    and ``write``) say."""
    others = _permission(role, None, write)
    allowed = {name for name, rule in role.fields.items() if _permission(role, rule, write)}
    if others:
        return FieldMask(hidden=frozenset(set(role.fields) - allowed), meta=meta)
    return FieldMask(only=frozenset(allowed), meta=meta)


#: The masks of each role, made once: (role, meta, key) → (role, reads, writes).
#: The role is kept in the value so that its id is not reused while the entry
#: stands.
_MASKS: dict[tuple[int, frozenset[str], bytes], tuple[RuleRoleSettings, FieldMask, FieldMask]] = {}


def _masks(
    role: RuleRoleSettings, meta: frozenset[str], etag_key: bytes
) -> tuple[FieldMask, FieldMask]:
    """What ``role`` lets a caller read (re-tagging what it hides) and write."""
    key = (id(role), meta, etag_key)
    made = _MASKS.get(key)
    if made is None or made[0] is not role:
        reads = replace(_mask(role, meta, write=False), retag=etag_key)
        made = _MASKS[key] = (role, reads, _mask(role, meta, write=True))
    return made[1], made[2]


def choose_role(
    rules: RulesSettings,
    caller: Caller | None,
    *,
    meta: Iterable[str],
    etag_key: bytes,
    now: datetime,
) -> Role:
    """The first role of ``rules`` whose ``apply_when`` matches ``caller``
    (None: anonymous), with its filters' expansions filled in; with
    ``%%root`` conditions, the candidates that may apply, each to the
    documents it governs (the module's docstring)."""
    context = _context(caller, now)
    meta = frozenset(meta)
    candidates: list[tuple[Document, Role]] = []
    used: list[str] = []
    for role in rules.roles:
        apply_when, document = _split(role.apply_when)
        if not _applies(apply_when, context):
            continue
        if document:
            document = _expanded(document, context, used)
            if document is _MISSING:  # fails closed, as a caller's part does
                continue
        chosen = _role(role, context, meta, etag_key)
        if not document and not candidates:
            return chosen
        candidates.append((document, chosen))
        if not document:
            break
    if not candidates:
        return _no_role(meta, etag_key)
    return _per_document(candidates, used)


def _split(apply_when: Mapping[str, Any]) -> tuple[Mapping[str, Any], Document]:
    """``apply_when``'s caller's part and its document's part (the
    ``%%root.<field>`` conditions, as a filter on the document)."""
    if not any(key.startswith(ROOT) for key in apply_when):
        return apply_when, {}
    caller = {key: value for key, value in apply_when.items() if not key.startswith(ROOT)}
    document = {
        key.removeprefix(ROOT): value for key, value in apply_when.items() if key.startswith(ROOT)
    }
    return caller, document


def _role(role: RuleRoleSettings, context: Document, meta: frozenset[str], etag_key: bytes) -> Role:
    """What ``role`` lets the caller of ``context`` do; made once for a role
    whose document filters name no expansion (the same for every caller)."""
    if not role.static_filters:
        return _filled(role, context, meta, etag_key)
    key = (id(role), meta, etag_key)
    made = _STATIC.get(key)
    if made is None or made[0] is not role:
        made = _STATIC[key] = (role, _filled(role, context, meta, etag_key))
    return made[1]


#: The roles whose filters name no expansion, made once: (role, meta, key) →
#: (role, its Role), the role kept so that its id is not reused meanwhile.
_STATIC: dict[tuple[int, frozenset[str], bytes], tuple[RuleRoleSettings, Role]] = {}


def _filled(
    role: RuleRoleSettings, context: Document, meta: frozenset[str], etag_key: bytes
) -> Role:
    """What ``role`` lets the caller of ``context`` do, its filters'
    expansions filled in."""
    reads, writes = _masks(role, meta, etag_key)
    may_read = bool(reads.only) if reads.only is not None else True
    used: list[str] = []
    filters = role.document_filters
    read_filter = _expanded(filters.read or {}, context, used)
    write_filter = _expanded(filters.write or {}, context, used)
    read_filter = NOTHING if read_filter is _MISSING or not may_read else read_filter
    write_filter = NOTHING if write_filter is _MISSING else write_filter
    digest = hashlib.sha256(repr((read_filter, sorted(set(used)))).encode()).hexdigest()
    return Role(
        name=role.name,
        read_filter=read_filter,
        write_filter=write_filter,
        reads=reads,
        writes=writes,
        may_read=may_read,
        may_write=bool(writes.only) if writes.only is not None else True,
        may_insert=role.insert,
        may_delete=role.delete,
        key=f"{role.name}:{digest[:32]}",
        cacheable="%%now" not in used,
    )


def _no_role(meta: frozenset[str], etag_key: bytes) -> Role:
    return Role(
        name=None,
        read_filter=NOTHING,
        write_filter=NOTHING,
        reads=FieldMask(only=frozenset(), meta=meta, retag=etag_key),
        writes=FieldMask(only=frozenset(), meta=meta),
        may_read=False,
        may_write=False,
        may_insert=False,
        may_delete=False,
        key="none",
        cacheable=True,
    )


def _per_document(candidates: list[tuple[Document, Role]], used: list[str]) -> Role:
    """The role of a caller that several candidates (each with the filter
    its ``%%root`` conditions make, ``{}`` for the last without) may apply
    to, each to the documents it governs."""
    governed: list[tuple[Document, Role]] = []
    earlier: list[Document] = []
    for document, role in candidates:
        governs = conjoin(document, {"$nor": list(earlier)}) if earlier else dict(document)
        governed.append((governs, role))
        earlier.append(document)
    roles = [role for _, role in governed]
    read_filter = _any(
        conjoin(governs, role.read_filter) for governs, role in governed if role.may_read
    )
    insert_filter = _any(
        conjoin(governs, role.write_filter) for governs, role in governed if role.may_insert
    )
    keys = [role.key for role in roles]
    digest = hashlib.sha256(repr((read_filter, insert_filter, keys)).encode()).hexdigest()
    return Role(
        name="+".join(str(role.name) for role in roles),
        read_filter=read_filter,
        write_filter=insert_filter,
        reads=DocumentMask.of([(governs, role.reads) for governs, role in governed]),
        writes=DocumentMask.of([(governs, role.writes) for governs, role in governed]),
        may_read=any(role.may_read for role in roles),
        may_write=any(role.may_write for role in roles),
        may_insert=any(role.may_insert for role in roles),
        may_delete=any(role.may_delete for role in roles),
        key=f"{'+'.join(str(role.name) for role in roles)}:{digest[:32]}",
        cacheable="%%now" not in used and all(role.cacheable for role in roles),
        governed=tuple(governed),
    )


def _any(filters: Iterable[Document]) -> Document:
    """A filter that one of ``filters`` at least holds for (none: nothing)."""
    parts = list(filters)
    if not parts:
        return NOTHING
    return parts[0] if len(parts) == 1 else {"$or": parts}


@dataclass(frozen=True, eq=False)
class DocumentMask(FieldMask):
    """A mask per document: the mask of the candidate role that governs it
    (``governed``, in order: the documents each governs and its mask). Its own
    ``hidden`` and ``only`` are the strictest union of the candidates' masks,
    so every check of names (``readable``, ``check_names``, ``check_filter``,
    ``check_writable``) and ``stages`` use that union; ``apply`` picks the
    governing candidate's mask by matching the document, which must be the
    stored document whole (``strictest`` where it may not be). Equal only to
    itself (a message rendered for one subscriber's view is not another's)."""

    governed: tuple[tuple[Document, FieldMask], ...] = ()
    #: The fields the governing filters name: a document without them is not
    #: whole enough to choose its role by.
    roots: frozenset[str] = frozenset()

    @classmethod
    def of(cls, governed: list[tuple[Document, FieldMask]]) -> DocumentMask:
        strictest = reduce(FieldMask.union, [mask for _, mask in governed])
        return cls(
            strictest.hidden,
            strictest.only,
            strictest.meta,
            strictest.retag,
            governed=tuple(governed),
            roots=frozenset(name for governs, _ in governed for name in filter_fields(governs)),
        )

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    @property
    def per_document(self) -> bool:
        return True

    def governing(self, document: Document) -> FieldMask:
        for governs, mask in self.governed:
            if matches(governs, document):
                return mask
        return self.strictest()

    def strictest(self) -> FieldMask:
        return FieldMask(self.hidden, self.only, self.meta, self.retag)

    def for_projection(self, projection: Mapping[str, Any] | None) -> FieldMask:
        if not projection or all(_kept(projection, name) for name in self.roots):
            return self
        return self.strictest()

    def apply(self, document: Document) -> Document:
        return self.governing(document).apply(document)

    def apply_within(self, document: Document) -> Document:
        return self.strictest().apply_within(document)

    def union(self, other: FieldMask) -> FieldMask:
        return DocumentMask.of([(governs, mask.union(other)) for governs, mask in self.governed])


def _kept(projection: Mapping[str, Any], name: str) -> bool:
    """Whether a MongoDB ``projection`` fetches the field ``name`` whole, as
    stored (a computed value under its name is not it)."""
    parts = name.split(".")
    flags = [
        projection[prefix]
        for end in range(len(parts))
        if (prefix := ".".join(parts[: end + 1])) in projection
    ]
    if any(other.startswith(name + ".") for other in projection):
        return False
    inclusive = any(
        not (flag is False or (type(flag) is int and flag == 0))
        for key, flag in projection.items()
        if key != "_id"
    )
    if inclusive:
        return any(flag is True or (type(flag) is int and flag == 1) for flag in flags)
    return not flags
