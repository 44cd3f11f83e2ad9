"""The OpenAPI document of media fields: multipart request bodies (a file
part for each media field) and each file's own URL, a binary answer."""

from __future__ import annotations

import copy
from typing import Any

from ..resources import Resource
from .components import ERROR_STATUSES, Security, header_ref, ref

Schema = dict[str, Any]

FORM_DATA = "multipart/form-data"


def multipart_body(resource: Resource, *, partial: bool) -> Schema:
    """A write as ``multipart/form-data``: each field a part (text, or JSON
    for a field that is no string), each media field a file part."""
    properties: dict[str, Schema] = {}
    for name, rule in resource.schema.properties.items():
        if name.startswith("_") or name == resource.settings.auth_field:
            continue
        if name in resource.media:
            properties[name] = {
                "type": "string",
                "format": "binary",
                "contentMediaType": "application/octet-stream",
            }
        else:
            properties[name] = copy.deepcopy(rule) if isinstance(rule, dict) else {}
    schema: Schema = {
        "type": "object",
        "description": "The document's fields as parts (text; JSON for a field that is "
        "not a string), and a file part for each media field. A media field left out "
        + ("keeps its file." if partial else "has no file."),
        "properties": properties,
    }
    required = [
        name for name in resource.settings.json_schema.get("required", []) if name in properties
    ]
    if required and not partial:
        schema["required"] = required
    encoding = {
        name: {"contentType": ", ".join(media.content_types)}
        for name, media in resource.media.items()
        if media.content_types
    }
    body: Schema = {"schema": schema}
    if encoding:
        body["encoding"] = encoding
    return body


def media_download(resource: Resource, name: str, security: Security) -> Schema:
    """``GET /<resource>/<id>/<field>``: the file, whole or a range of it."""
    media = resource.media[name]
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = dict.fromkeys(media.content_types or ("application/octet-stream",), binary)
    headers = {
        "ETag": header_ref("ETag"),
        "Last-Modified": header_ref("Last-Modified"),
    }
    responses: dict[str, Schema] = {
        "200": {"description": "The file.", "headers": headers, "content": content},
        "206": {
            "description": "The bytes the `Range` asks for (one range; `Content-Range` says "
            "which).",
            "headers": headers,
            "content": content,
        },
        "304": ref(ERROR_STATUSES[304], "responses"),
        "416": {
            "description": "The range is outside the file (`Content-Range: bytes */<length>`).",
            "content": {"application/json": {"schema": ref("Error")}},
        },
    }
    for status in (401, 403, 404, 503):
        responses[str(status)] = ref(ERROR_STATUSES[status], "responses")
    return {
        "tags": [resource.name],
        "summary": f"Read the {name} file of one {resource.singular}",
        "description": "Streamed from GridFS with the document's access rules: 404 when "
        "the caller cannot read the document or this field, or it holds no file.",
        "operationId": f"read_{resource.name}_{name}",
        "security": security,
        "parameters": [
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "One byte range, e.g. `bytes=0-1023`.",
            },
            ref("If-None-Match", "parameters"),
        ],
        "responses": responses,
    }
