"""A real `shoal serve` on the example config, for tests that need an actual
server (a browser, an HTTP fuzzer): the test MongoDB and Redis come in through
SHOAL_MONGODB_URI / SHOAL_REDIS_URL, as an operator would pass them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import ObjectId

from shoal.auth.tokens import TokenIssuer
from shoal.config import Settings, load_settings
from shoal.system import free_port
from tests.utils.processes import ServeProcess
from tests.utils.settings import write_config


@dataclass(frozen=True)
class LiveServer:
    """A running server and the settings it runs with."""

    process: ServeProcess
    settings: Settings

    @property
    def url(self) -> str:
        return self.process.url

    def token(self, *roles: str, name: str = "tester") -> str:
        """A real access token for a user with ``roles``, signed as the server signs."""
        issuer = TokenIssuer(self.settings.auth, self.settings.secret_key.get_secret_value())
        subject = str(ObjectId())
        return issuer.issue(subject=subject, name=name, roles=frozenset(roles), family=None).token


@contextmanager
def live_example(
    workdir: Path, mongodb_uri: str, redis_url: str, **overrides: Any
) -> Iterator[LiveServer]:
    """`shoal serve` on the example resources (a fresh database and key prefix),
    ready when this yields, killed with everything it started afterwards."""
    unique = uuid.uuid4().hex[:12]
    config = write_config(
        workdir,
        mongodb={"database": f"test_{unique}"},
        redis={"key_prefix": f"test:{unique}:"},
        **overrides,
    )
    env = {"SHOAL_MONGODB_URI": mongodb_uri, "SHOAL_REDIS_URL": redis_url}
    settings = load_settings(config, env=env)
    process = ServeProcess(workdir, config=str(config), bind=f"127.0.0.1:{free_port()}", env=env)
    try:
        process.start()
        process.wait_ready()
        yield LiveServer(process, settings)
    finally:
        process.cleanup()
