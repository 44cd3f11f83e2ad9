"""Models for documenting static routes with quart-schema's decorators.

``ErrorResponse`` documents an error answer with the same schema as every
resource's error responses (``components/schemas/Error``)::

    @health.get("/readyz")
    @document_response(Readiness)
    @document_response(NotReady, 503)
    async def readyz() -> ...: ...

A response with no body (a 204) has no model; document it with
``shoal.openapi.document_no_content``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .components import error_schema

__all__ = ["ErrorResponse", "Health", "NotReady", "Readiness"]


class ErrorResponse(RootModel[dict[str, Any]]):
    """An error."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # Self-contained (no $ref): pydantic cannot follow references it did not make.
        return error_schema()


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Ready: MongoDB and shared state answered."""

    status: Literal["ready"]
    checks: dict[str, str] = Field(description='Each dependency and its state ("ok").')


class NotReady(ErrorResponse):
    """Not ready: a dependency is unreachable (`_error.checks` says which); retry
    after `Retry-After` seconds."""
