"""Authentication and access control (see ``service.Auth``)."""

from .principal import Principal
from .service import CSRF_HEADER, EXTENSION_KEY, Auth, get_auth

__all__ = ["CSRF_HEADER", "EXTENSION_KEY", "Auth", "Principal", "get_auth"]
