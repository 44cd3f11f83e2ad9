"""The key that signs tokens: in development with no secret_key, a generated one
kept under .shoal/ beside the config; never the placeholder; never a key PyJWT
would warn about."""

from __future__ import annotations

import stat
import threading
import time
import uuid
import warnings
from pathlib import Path

import jwt
import pytest
from quart import Quart

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.auth.signing import development_secret
from shoal.auth.tokens import TokenIssuer
from shoal.config import SECRET_KEY_PLACEHOLDER, load_settings
from tests.utils.settings import write_config

PASSWORD = "correct horse battery staple"


@pytest.fixture
def development_config(tmp_path: Path, mongodb_uri: str) -> Path:
    """A development config as a newcomer writes it: no secret_key at all."""
    (tmp_path / "project").mkdir()
    database = f"signing_{uuid.uuid4().hex[:10]}"
    config = write_config(tmp_path / "project", mongodb={"uri": mongodb_uri, "database": database})
    raw = config.read_text().replace("environment: test", "environment: development")
    raw = "\n".join(line for line in raw.splitlines() if not line.startswith("secret_key"))
    config.write_text(raw + "\n")
    return config


async def _login_token(app: Quart) -> str:
    client = app.test_client()
    response = await client.post("/auth/login", json={"username": "editor1", "password": PASSWORD})
    assert response.status_code == 200
    token: str = (await response.get_json())["access_token"]
    return token


async def test_development_signs_with_a_generated_secret_that_survives_restarts(
    development_config: Path,
) -> None:
    secret_file = development_config.parent / ".shoal" / "secret_key"
    first = create_app(development_config)
    assert not secret_file.exists()  # building an app writes nothing (`shoal openapi`)
    async with first.test_app():
        await get_auth(first).accounts.create_user("editor1", PASSWORD, ["editor"])
        token = await _login_token(first)

    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 64
    jwt.decode(token, secret, algorithms=["HS256"], audience="shoal-api")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT rightly warns about this key
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, SECRET_KEY_PLACEHOLDER, algorithms=["HS256"], audience="shoal-api")

    # A restart: a new app on the same config accepts the token.
    second = create_app(development_config)
    async with second.test_app():
        headers = {"Authorization": f"Bearer {token}"}
        me = await second.test_client().get("/auth/me", headers=headers)
        assert me.status_code == 200
    assert secret_file.read_text().strip() == secret


async def test_a_token_forged_with_the_placeholder_is_refused(development_config: Path) -> None:
    app = create_app(development_config)
    async with app.test_app():
        now = int(time.time())
        claims = {
            "iss": "shoal", "aud": "shoal-api", "iat": now, "exp": now + 300,
            "jti": "forged", "sub": "a" * 24, "roles": ["editor"],
        }  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT rightly warns about this key
            token = jwt.encode(claims, SECRET_KEY_PLACEHOLDER, algorithm="HS256")
        response = await app.test_client().post(
            "/books", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert "signature" in (await response.get_json())["_error"]["message"]


def test_workers_starting_at_once_share_one_secret(tmp_path: Path) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(development_secret(tmp_path / ".shoal" / "secret_key"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8
    assert len(set(results)) == 1
    assert sorted(path.name for path in (tmp_path / ".shoal").iterdir()) == ["secret_key"]


def test_an_unusable_secret_file_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(RuntimeError, match="secret_key holds no usable secret"):
        development_secret(tmp_path / "secret_key")


@pytest.mark.parametrize(("algorithm", "length"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_no_key_the_config_accepts_makes_pyjwt_warn(algorithm: str, length: int) -> None:
    settings = load_settings(
        {"environment": "production", "secret_key": "k" * length, "auth": {"algorithm": algorithm}},
        env={},
    )
    issuer = TokenIssuer(settings.auth, settings.secret_key.get_secret_value())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, InsecureKeyLengthWarning included, fails
        token = issuer.issue(subject="a" * 24, name="x", roles=frozenset(), family=None).token
        assert issuer.decode(token)["sub"] == "a" * 24
