"""`shoal from-eve SETTINGS.py`: an Eve settings file as a Shoal config.

Eve's settings are a Python module (``DOMAIN`` and upper-case globals); its
schemas are Cerberus rules. This turns them into ``shoal.yaml``: each resource's
keys under Eve's own lowercase names, its schema as JSON Schema 2020-12, the
global defaults (``RESOURCE_METHODS``, ``PAGINATION_LIMIT``...) copied onto each
resource. What has no Shoal equivalent is listed in the output's header (and
returned as notes), never dropped silently.

The settings file is run as Python, as Eve runs it: translate only your own.
"""

from __future__ import annotations

import copy
import re
import runpy
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config import EVE_REGEX_URL

Document = dict[str, Any]

#: Eve's defaults where they differ from Shoal's (docs/config.rst, 2.3.1).
EVE_DEFAULTS: Document = {
    "RESOURCE_METHODS": ["GET"],
    "ITEM_METHODS": ["GET"],
    "PAGINATION_LIMIT": 50,
    "PAGINATION_DEFAULT": 25,
}
#: Global settings copied onto each resource (Eve's global → resource key).
_PER_RESOURCE = {
    "RESOURCE_METHODS": "resource_methods",
    "ITEM_METHODS": "item_methods",
    "PUBLIC_METHODS": "public_methods",
    "PUBLIC_ITEM_METHODS": "public_item_methods",
    "ALLOWED_ROLES": "allowed_roles",
    "ALLOWED_READ_ROLES": "allowed_read_roles",
    "ALLOWED_WRITE_ROLES": "allowed_write_roles",
    "PAGINATION_LIMIT": "pagination_limit",
    "PAGINATION_DEFAULT": "default_max_results",
    "PAGINATION": "pagination",
    "SORTING": "sorting",
    "EMBEDDING": "embedding",
    "SOFT_DELETE": "soft_delete",
    "VERSIONING": "versioning",
    "ALLOWED_FILTERS": "allowed_filters",
    "AUTH_FIELD": "auth_field",
    "ID_FIELD": "id_field",
}
#: Resource keys Shoal takes as Eve writes them.
_SAME = (
    "resource_methods",
    "item_methods",
    "public_methods",
    "public_item_methods",
    "allowed_roles",
    "allowed_read_roles",
    "allowed_write_roles",
    "pagination_limit",
    "pagination",
    "sorting",
    "embedding",
    "embedded_fields",
    "soft_delete",
    "versioning",
    "allowed_filters",
    "auth_field",
    "id_field",
    "allow_unknown",
)
#: Resource keys with no Shoal equivalent, and why.
_DROPPED = {
    "cache_control": "Shoal sends validators (ETag, Last-Modified); see cache_ttl",
    "cache_expires": "Shoal sends validators (ETag, Last-Modified); see cache_ttl",
    "item_title": "Shoal titles items after the resource's name",
    "resource_title": "Shoal titles lists after the resource's name",
    "item_lookup_field": "items are named by id_field",
    "item_lookup": "items are routed where item_methods lists methods",
    "hateoas": "Shoal always sends _links",
    "query_objectid_as_string": "where casts by schema type (format: objectid) only",
    "mongo_write_concern": "the connection string sets the write concern",
    "bandwidth_saver": "writes answer with meta fields; Prefer: return=representation "
    "returns the document",
    "authentication": "auth is Shoal's own (tokens, sessions, API keys)",
    "allowed_item_roles": "use allowed_read_roles and allowed_write_roles",
    "allowed_item_read_roles": "use allowed_read_roles",
    "allowed_item_write_roles": "use allowed_write_roles",
    "merge_nested_documents": "PATCH always merges nested objects",
    "normalize_dotted_fields": "PATCH always takes dotted fields",
    "mongo_prefix": "one MongoDB per config",
}
_CERBERUS_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "objectid": {"type": "string", "format": "objectid"},
    # A file in GridFS (docs/how-to/media.md); top-level fields only.
    "media": {"type": "string", "format": "binary"},
    "dict": {"type": "object"},
    "list": {"type": "array"},
}
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_PLACEHOLDER = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*$")


class Translation:
    """A Shoal config from Eve settings, and notes on what did not carry over."""

    def __init__(self) -> None:
        self.config: Document = {}
        self.notes: list[str] = []

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")

    def yaml(self) -> str:
        """The config as YAML, the notes as a comment at its top."""
        head = ["# Translated from Eve settings by `shoal from-eve`."]
        if self.notes:
            head.append("# Not carried over, or to check:")
            head += [f"#   - {note}" for note in self.notes]
        text = yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, width=100)
        return "\n".join(head) + "\n" + text


def load_eve_settings(path: Path) -> Document:
    """The upper-case globals of an Eve settings module (it is run as Python)."""
    namespace = runpy.run_path(str(path))
    return {name: value for name, value in namespace.items() if name.isupper()}


def _without_password(uri: str) -> str:
    """A MongoDB URI fit to print: a password it holds is replaced by ``…``."""
    return re.sub(r"^(mongodb(?:\+srv)?://[^:@/]+):[^@/]*@", r"\1:…@", uri)


def _uri_database(uri: str) -> str | None:
    """The database a MongoDB URI names (``mongodb://host/<database>?…``), if any."""
    path = urllib.parse.urlsplit(uri).path.lstrip("/")
    return urllib.parse.unquote(path) or None


def translate(settings: Mapping[str, Any]) -> Translation:
    """Eve's settings (the module's upper-case names) as a Shoal config."""
    result = Translation()
    config = result.config
    config["environment"] = "development"
    mongodb: Document = {}
    uri = None
    if settings.get("MONGO_URI"):
        uri = str(settings["MONGO_URI"])
    elif settings.get("MONGO_HOST"):
        uri = f"mongodb://{settings['MONGO_HOST']}:{settings.get('MONGO_PORT', 27017)}"
    if uri is not None:
        # A development config serves from the embedded store; Eve's MongoDB
        # (often its default, localhost:27017) is named in a note, not the file.
        result.note(
            "MONGO_URI" if settings.get("MONGO_URI") else "MONGO_HOST/MONGO_PORT",
            "this development config uses the embedded store; to serve Eve's MongoDB, "
            f"set SHOAL_MONGODB_URI={_without_password(uri)} (or mongodb.uri)",
        )
    database = settings.get("MONGO_DBNAME") or (_uri_database(uri) if uri else None)
    if database:
        mongodb["database"] = str(database)
    if mongodb:
        config["mongodb"] = mongodb
    if settings.get("X_DOMAINS"):
        origins = settings["X_DOMAINS"]
        config["cors"] = {"allow_origins": [origins] if isinstance(origins, str) else list(origins)}
    if settings.get("DATE_FORMAT", "%a, %d %b %Y %H:%M:%S GMT") != "%a, %d %b %Y %H:%M:%S GMT":
        result.note("DATE_FORMAT", "Shoal renders RFC 1123 dates and reads RFC 1123 or RFC 3339")
    if settings.get("MEDIA_ENDPOINT", "media") != "media" or settings.get("EXTENDED_MEDIA_INFO"):
        result.note(
            "MEDIA_ENDPOINT/EXTENDED_MEDIA_INFO",
            "Shoal serves a file at /<resource>/<id>/<field>, with no extended info",
        )
    if settings.get("URL_PREFIX") or settings.get("API_VERSION"):
        result.note("URL_PREFIX/API_VERSION", "serve Shoal under a prefix at the proxy instead")
    defaults = {**EVE_DEFAULTS, **{k: v for k, v in settings.items() if k in EVE_DEFAULTS}}
    globals_: Document = {}
    for name, key in _PER_RESOURCE.items():
        if name in defaults or name in settings:
            globals_[key] = _plain(settings.get(name, defaults.get(name)))
    regex_allowed = "$regex" not in settings.get("MONGO_QUERY_BLACKLIST", ["$where", "$regex"])
    resources: Document = {}
    # Eve's default gives files inline, in base64; RETURN_MEDIA_AS_URL, their URL.
    as_base64 = bool(settings.get("RETURN_MEDIA_AS_BASE64_STRING", True)) and not settings.get(
        "RETURN_MEDIA_AS_URL", False
    )
    for name, definition in dict(settings.get("DOMAIN", {})).items():
        resources[name] = _resource(name, dict(definition), globals_, regex_allowed, result)
        if as_base64 and _has_media(dict(definition).get("schema", {})):
            resources[name]["media"] = {"base64": True}
    config["resources"] = resources
    if not any("PUBLIC_METHODS" in key for key in settings):
        result.note(
            "auth",
            "an Eve app without an auth class serves everyone; Shoal asks for credentials "
            "on every method a resource's public_methods and public_item_methods do not list",
        )
    return result


def _has_media(cerberus: Any) -> bool:
    return isinstance(cerberus, Mapping) and any(
        isinstance(rule, Mapping) and rule.get("type") == "media" for rule in cerberus.values()
    )


def _plain(value: Any) -> Any:
    """Python values of a settings module as YAML can hold them (SON and
    tuples as mappings and lists)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _resource(
    name: str,
    definition: Document,
    globals_: Document,
    regex_allowed: bool,
    result: Translation,
) -> Document:
    where = f"resources.{name}"
    resource: Document = {}
    cerberus = definition.pop("schema", {})
    unique: list[str] = []
    readonly: list[str] = []
    schema = _schema(cerberus, f"{where}.schema", result, unique, readonly, top=True)
    resource["schema"] = schema
    datasource = _plain(definition.pop("datasource", {}) or {})
    aggregation = datasource.get("aggregation")
    for key, value in globals_.items():
        resource[key] = copy.deepcopy(value)
    if aggregation:
        resource["resource_methods"] = ["GET"]
        resource["item_methods"] = []
        resource.pop("public_item_methods", None)
        for key in ("soft_delete", "versioning"):
            resource.pop(key, None)
    for key in _SAME:
        if key in definition:
            resource[key] = _plain(definition.pop(key))
    if "PAGINATION_DEFAULT" in definition:
        resource["default_max_results"] = definition.pop("PAGINATION_DEFAULT")
    if regex_allowed:
        resource["allow_regex"] = True
    if unique:
        resource["unique"] = unique
    if readonly:
        resource["readonly"] = readonly
    if datasource:
        resource["datasource"] = _datasource(datasource, f"{where}.datasource", result)
    if "url" in definition:
        url = _CONVERTER.sub(r"<\1>", str(definition.pop("url")))
        if url != name:
            resource["url"] = url
    if "additional_lookup" in definition:
        lookup = dict(definition.pop("additional_lookup"))
        resource["additional_lookup"] = {
            key: lookup[key] for key in ("field", "url") if key in lookup
        }
    if "item_url" in definition:
        _item_url(str(definition.pop("item_url")), schema, where, result)
    if "mongo_indexes" in definition:
        indexes = {}
        for index, spec in dict(definition.pop("mongo_indexes")).items():
            keys = spec[0] if isinstance(spec, tuple) and isinstance(spec[0], list) else spec
            indexes[index] = [[str(field), int(way)] for field, way in keys]
            if isinstance(spec, tuple) and len(spec) > 1 and spec[1]:
                result.note(f"{where}.mongo_indexes.{index}", "index options are not carried over")
        resource["mongo_indexes"] = indexes
    for key in list(definition):
        if key in _DROPPED:
            result.note(f"{where}.{key}", _DROPPED[key])
        else:
            result.note(f"{where}.{key}", "no Shoal equivalent; left out")
    if resource.get("item_methods") == [] and "public_item_methods" in resource:
        resource.pop("public_item_methods")
    return resource


def _item_url(item_url: str, schema: Document, where: str, result: Translation) -> None:
    """Eve's ``item_url`` says what ids look like: the ``_id`` rule's."""
    rule = schema.setdefault("properties", {}).get("_id")
    if item_url.strip() == "int":
        schema["properties"]["_id"] = {"type": "integer"}
        return
    match = EVE_REGEX_URL.match(item_url.strip())
    if match is None:
        result.note(f"{where}.item_url", f"{item_url!r} is not carried over")
        return
    pattern = match.group(2)
    if pattern in ("[a-f0-9]{24}", "[a-fA-F0-9]{24}"):
        return  # ObjectIds, Shoal's default
    rule = dict(rule or {"type": "string"})
    rule.setdefault("type", "string")
    rule["pattern"] = f"^{pattern}$"
    schema["properties"]["_id"] = rule


def _datasource(datasource: Document, where: str, result: Translation) -> Document:
    translated: Document = {}
    for key in ("source", "filter", "projection"):
        if datasource.get(key):
            translated[key] = datasource[key]
    if datasource.get("default_sort"):
        translated["default_sort"] = [[field, way] for field, way in datasource["default_sort"]]
    aggregation = datasource.get("aggregation")
    if aggregation:
        pipeline = aggregation["pipeline"]
        options = {
            key: value
            for key, value in (aggregation.get("options") or {}).items()
            if key in ("allowDiskUse", "maxTimeMS", "batchSize", "collation", "comment")
        }
        block: Document = {"pipeline": pipeline}
        if options:
            block["options"] = options
        variables = _variables(pipeline)
        if variables:
            block["variables"] = {name: {} for name in variables}
            result.note(
                f"{where}.aggregation.variables",
                f"{', '.join(variables)} taken as client variables (found in $match); "
                "give each a JSON Schema",
            )
        translated["aggregation"] = block
    return translated


def _variables(pipeline: list[Any]) -> list[str]:
    """``$names`` that stand as values in ``$match`` stages: there a field path
    would mean nothing, so they are Eve's placeholders for ``?aggregate=``."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str) and _PLACEHOLDER.match(node) and node not in found:
            found.append(node)

    for stage in pipeline:
        if isinstance(stage, Mapping) and "$match" in stage:
            walk(stage["$match"])
    return found


def _schema(
    cerberus: Mapping[str, Any],
    where: str,
    result: Translation,
    unique: list[str],
    readonly: list[str],
    *,
    top: bool,
    allow_unknown: bool = False,
) -> Document:
    """Cerberus rules of a mapping's fields as a JSON Schema object."""
    properties: Document = {}
    required: list[str] = []
    for field, rules in cerberus.items():
        rule = dict(rules)
        if rule.pop("required", False):
            required.append(field)
        if rule.pop("unique", False):
            if top:
                unique.append(field)
            else:
                result.note(f"{where}.{field}.unique", "unique only on top-level fields")
        if rule.pop("readonly", False):
            if top:
                readonly.append(field)
            else:
                result.note(f"{where}.{field}.readonly", "read-only only on top-level fields")
        properties[field] = _rule(rule, f"{where}.{field}", result, unique, readonly, top=top)
    schema: Document = {"type": "object"}
    if required:
        schema["required"] = required
    schema["properties"] = properties
    if not top and not allow_unknown:
        schema["additionalProperties"] = False
    return schema


def _rule(
    rule: Document,
    where: str,
    result: Translation,
    unique: list[str],
    readonly: list[str],
    *,
    top: bool = False,
) -> Document:
    kind = rule.pop("type", None)
    if isinstance(kind, list):
        result.note(where, f"several types {kind}: the first is kept")
        kind = kind[0]
    if kind == "media" and not top:
        result.note(where, "a media field inside an object or a list is not served; kept a string")
        kind = "string"
    json: Document = dict(_CERBERUS_TYPES.get(kind, {})) if kind else {}
    if kind and kind not in _CERBERUS_TYPES:
        result.note(where, f"type {kind} has no JSON Schema equivalent; left untyped")
    nested = rule.pop("schema", None)
    if kind == "dict" and isinstance(nested, Mapping):
        json.update(
            _schema(
                nested,
                where,
                result,
                unique,
                readonly,
                top=False,
                allow_unknown=bool(rule.pop("allow_unknown", False)),
            )
        )
    elif kind == "list" and isinstance(nested, Mapping):
        json["items"] = _rule(dict(nested), f"{where}.[]", result, unique, readonly)
    text = kind in (None, "string")
    for cerberus, schema_key in (("minlength", "minLength"), ("maxlength", "maxLength")):
        if cerberus in rule:
            key = schema_key if text else schema_key.replace("Length", "Items")
            json[key] = rule.pop(cerberus)
    if "min" in rule:
        json["minimum"] = rule.pop("min")
    if "max" in rule:
        json["maximum"] = rule.pop("max")
    if "allowed" in rule:
        allowed = list(rule.pop("allowed"))
        if kind == "list":
            json.setdefault("items", {})["enum"] = allowed
        else:
            json["enum"] = allowed
    if "regex" in rule:
        json["pattern"] = f"^(?:{rule.pop('regex')})$"
    if "default" in rule:
        json["default"] = _plain(rule.pop("default"))
    if rule.pop("empty", True) is False and text:
        json.setdefault("minLength", 1)
    if rule.pop("nullable", False):
        json_type = json.get("type")
        if json_type is not None:
            json["type"] = [json_type, "null"]
        if "enum" in json:
            json["enum"] = [*json["enum"], None]
    if "data_relation" in rule:
        relation = dict(rule.pop("data_relation"))
        if relation.pop("version", False):
            result.note(f"{where}.data_relation.version", "versioned relations are not supported")
        json["data_relation"] = relation
    for leftover in sorted(rule):
        result.note(f"{where}.{leftover}", "Cerberus rule with no JSON Schema equivalent; left out")
    return json
