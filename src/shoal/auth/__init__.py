"""Authentication and access control (see ``service.Auth``)."""

from .principal import Principal
from .service import (
    CSRF_HEADER,
    EXTENSION_KEY,
    Auth,
    CredentialHeaders,
    get_auth,
    resource_access,
    ruled_access,
)

__all__ = [
    "CSRF_HEADER",
    "EXTENSION_KEY",
    "Auth",
    "CredentialHeaders",
    "Principal",
    "get_auth",
    "resource_access",
    "ruled_access",
]
