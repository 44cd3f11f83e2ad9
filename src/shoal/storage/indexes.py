"""Creating a collection's indexes, on databases that refuse some kinds."""

from __future__ import annotations

import logging
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

logger = logging.getLogger("shoal.storage")

#: MongoDB's error code for a feature the server does not have.
NOT_IMPLEMENTED = 238


async def create_indexes(
    target: AsyncCollection[dict[str, Any]], indexes: list[IndexModel]
) -> None:
    """Create the indexes. On a database that refuses partial indexes
    (FerretDB v1 answers NotImplemented), a partial unique index is made
    sparse instead: documents without the field still do not collide, but the
    rest of its filter (a soft-deleted document's exclusion) is lost."""
    try:
        await target.create_indexes(indexes)
    except OperationFailure as error:
        if error.code != NOT_IMPLEMENTED or not any(map(_partial, indexes)):
            raise
        logger.warning(
            "the database refuses partial indexes: the unique indexes of %s are "
            "sparse instead (a soft-deleted document keeps its unique values)",
            target.name,
        )
        await target.create_indexes([_sparse(model) for model in indexes])


def _partial(model: IndexModel) -> bool:
    return "partialFilterExpression" in model.document


def _sparse(model: IndexModel) -> IndexModel:
    """``model`` with its partial filter replaced by ``sparse``."""
    if not _partial(model):
        return model
    options = {
        name: value
        for name, value in model.document.items()
        if name not in ("key", "partialFilterExpression")
    }
    return IndexModel(list(model.document["key"].items()), sparse=True, **options)
