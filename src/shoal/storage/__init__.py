"""MongoDB: the storage layer (the only PyMongo caller) and the embedded store."""

from .changes import ChangeStream, ChangeStreamsUnsupported
from .errors import ResumeFailed
from .mongo import (
    EXTENSION_KEY,
    Document,
    Session,
    Storage,
    UpdateOutcome,
    get_storage,
    open_storage,
)

__all__ = [
    "EXTENSION_KEY",
    "ChangeStream",
    "ChangeStreamsUnsupported",
    "Document",
    "ResumeFailed",
    "Session",
    "Storage",
    "UpdateOutcome",
    "get_storage",
    "open_storage",
]
