"""A real `shoal serve` on the example config, for tests that need an actual
server (a browser, an HTTP fuzzer): the test MongoDB and Redis come in through
SHOAL_MONGODB_URI / SHOAL_REDIS_URL, as an operator would pass them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId

from shoal.auth.tokens import TokenIssuer
from shoal.config import Settings, load_settings
from shoal.system import free_port
from tests.utils.processes import ServeProcess, run_shoal
from tests.utils.settings import write_config


@dataclass(frozen=True)
class LiveServer:
    """A running server and the settings it runs with."""

    process: ServeProcess
    settings: Settings
    config: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    def create_user(self, name: str, password: str, *roles: str) -> None:
        """A real user, made with `shoal users create` on the server's config."""
        args = ["users", "create", name, "--password-stdin", "--config", str(self.config)]
        for role in roles:
            args += ["--role", role]
        result = run_shoal(args, cwd=self.config.parent, env=self.env, input=password + "\n")
        assert result.returncode == 0, result.stderr

    def login(self, name: str, password: str) -> dict[str, Any]:
        """A real login over HTTP: the token pair the server answers."""
        tokens = self._post("/auth/login", {"username": name, "password": password})
        assert tokens is not None, f"{name} could not log in"
        return tokens

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """A new token pair for a refresh token; None when it is refused (401)."""
        return self._post("/auth/refresh", {"refresh_token": refresh_token})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 401:
                return None
            raise
        return answer

    def token(self, *roles: str, name: str = "tester") -> str:
        """A real access token for a user with ``roles``, signed as the server signs."""
        issuer = TokenIssuer(self.settings.auth, self.settings.secret_key.get_secret_value())
        subject = str(ObjectId())
        return issuer.issue(subject=subject, name=name, roles=frozenset(roles), family=None).token


@contextmanager
def live_example(
    workdir: Path,
    mongodb_uri: str,
    redis_url: str,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Iterator[LiveServer]:
    """`shoal serve` on the example resources (a fresh database and key prefix),
    with ``env`` added to its environment and ``overrides`` to its config, ready
    when this yields, killed with everything it started afterwards."""
    unique = uuid.uuid4().hex[:12]
    config = write_config(
        workdir,
        mongodb={"database": f"test_{unique}"},
        redis={"key_prefix": f"test:{unique}:"},
        **overrides,
    )
    env = {"SHOAL_MONGODB_URI": mongodb_uri, "SHOAL_REDIS_URL": redis_url, **(env or {})}
    settings = load_settings(config, env=env)
    process = ServeProcess(workdir, config=str(config), bind=f"127.0.0.1:{free_port()}", env=env)
    try:
        process.start()
        process.wait_ready()
        yield LiveServer(process, settings, config, env)
    finally:
        process.cleanup()
