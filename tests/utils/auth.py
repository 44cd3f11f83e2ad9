"""Credentials for tests: real tokens and keys, issued by the app's own auth."""

from __future__ import annotations

from typing import Any, cast

from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.auth import get_auth
from shoal.auth.accounts import User


async def token_for(
    app: Quart, *roles: str, name: str = "tester", user_id: str | None = None
) -> str:
    """A real access token for a user with ``roles`` (no stored user needed)."""
    user = User(id=user_id or str(ObjectId()), name=name, roles=frozenset(roles))
    tokens = await get_auth(app).issue_tokens(user)
    token: str = tokens["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _HeaderClient:
    """A test client that adds fixed headers (credentials) to every request."""

    def __init__(self, client: Client, headers: dict[str, str]) -> None:
        self._client = client
        self._headers = headers

    @property
    def app(self) -> Any:
        """The app the client sends to."""
        return self._client.app

    def _merged(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        headers = {**self._headers, **(kwargs.pop("headers", None) or {})}
        return {**kwargs, "headers": headers}

    async def open(self, path: str, **kwargs: Any) -> Any:
        return await self._client.open(path, **self._merged(kwargs))

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self._client.get(path, **self._merged(kwargs))

    async def head(self, path: str, **kwargs: Any) -> Any:
        return await self._client.head(path, **self._merged(kwargs))

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self._client.post(path, **self._merged(kwargs))

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self._client.put(path, **self._merged(kwargs))

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self._client.patch(path, **self._merged(kwargs))

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self._client.delete(path, **self._merged(kwargs))

    async def options(self, path: str, **kwargs: Any) -> Any:
        return await self._client.options(path, **self._merged(kwargs))

    def request(self, path: str, **kwargs: Any) -> Any:
        """A raw connection (streamed request and response bodies)."""
        return self._client.request(path, **self._merged(kwargs))


def client_with(app: Quart, headers: dict[str, str]) -> Client:
    return cast(Client, _HeaderClient(app.test_client(), headers))


async def editor_client(app: Quart, **kwargs: Any) -> Client:
    """A client authenticated as an editor (the example's writing role)."""
    return client_with(app, bearer(await token_for(app, "editor", **kwargs)))
