"""The OpenAPI 3.1 document (``/openapi.json``) and the docs page (``/docs``).

quart-schema serves the document; ``ShoalOpenAPIProvider`` adds the resources of
the config to what quart-schema's decorators describe, and builds it once per
process. ``ApiDocs`` serves Swagger UI from Shoal's own files. In the factory::

    QuartSchema(app, **quart_schema_options(settings))
    ApiDocs(settings.docs).init_app(app)

``shoal openapi`` prints ``openapi_document(app)``.
"""

from .docs import ApiDocs
from .document import DEFAULT_DESCRIPTION, OPENAPI_PATH, openapi_document, quart_schema_options
from .provider import (
    POLICY_ERRORS,
    ShoalOpenAPIProvider,
    document_errors,
    document_no_content,
    optional_body,
)

__all__ = [
    "DEFAULT_DESCRIPTION",
    "OPENAPI_PATH",
    "POLICY_ERRORS",
    "ApiDocs",
    "ShoalOpenAPIProvider",
    "document_errors",
    "document_no_content",
    "openapi_document",
    "optional_body",
    "quart_schema_options",
]
