"""MongoDB: the storage layer (the only PyMongo caller) and the embedded store."""

from .mongo import EXTENSION_KEY, Document, Storage, get_storage, open_storage

__all__ = ["EXTENSION_KEY", "Document", "Storage", "get_storage", "open_storage"]
