"""``Auth``: who is calling, and may they do this?

Credentials, in the order they are looked for: ``Authorization: Bearer <JWT>``,
``X-API-Key``, then the session cookie (browser mode, CSRF-protected). A
blueprint may name other headers for its routes (``Auth.accept_credentials``):
the Data API takes ``apiKey`` / ``api-key`` and ``email`` + ``password``, as the
hosted service did. Access rules per resource come from the config
(``public_methods``, ``allowed_*_roles``, ``auth_field``; ``resource_access``).
Revocations, sessions and each user's not-before mark live in shared state, so a
logout, or a user disabled, deleted or changed, holds on every instance at the
very next request; a bearer token or a session costs one round trip to shared
state (``AuthStore.token_refused``, ``AuthStore.session``).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from quart import Quart

from ..config import Settings
from ..config.rules import RulesSettings
from ..dates import now
from ..errors import ApiError, BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from ..http.call import Call, current_call
from ..http.methods import SAFE_METHODS
from ..http.net import client_address
from ..resources import Access, Resource
from ..resources.roles import NOTHING, Caller, choose_role
from ..resources.visibility import FieldMask
from ..state import SharedState
from ..storage import Storage
from .accounts import Accounts, User
from .principal import Principal
from .sessions import AuthStore, Grant, RefreshReused, SignedOut
from .signing import signing_secret
from .throttle import LoginThrottle
from .tokens import TokenError, TokenIssuer

EXTENSION_KEY = "shoal.auth"
CSRF_HEADER = "X-CSRF-Token"


def unauthorized(message: str, *, invalid: bool = False) -> Unauthorized:
    challenge = 'Bearer realm="shoal"'
    if invalid:
        challenge += ', error="invalid_token"'
    return Unauthorized(message, headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class CredentialHeaders:
    """Where a group of routes looks for credentials, after ``Authorization:
    Bearer``: API key headers (the first one sent is used), a name and password
    header pair checked like a login (throttled alike), and the session cookie."""

    api_key: tuple[str, ...] = ("X-API-Key",)
    login: tuple[str, str] | None = None
    cookie: bool = True


DEFAULT_CREDENTIALS = CredentialHeaders()


def resource_access(
    resource: Resource,
    method: str,
    principal: Principal | None,
    *,
    item: bool,
    data: Mapping[str, Any] | None = None,
) -> Access:
    """What ``principal`` (None: anonymous) may reach of ``resource`` with
    ``method``: the resource's public methods, roles and owner field decide
    which documents (401 or 403 when none), its ``datasource.projection``
    which of their fields (``Resource.mask``), and its ``rules`` narrow both
    (``data``: the user's ``%%user.data``)."""
    access = _access(resource, method, principal, item=item)
    if method not in ("GET", "HEAD"):
        access = _with_references(resource, access, principal, data)
    rules = resource.settings.rules
    if rules is None:
        return access
    return ruled_access(
        access,
        rules,
        method,
        principal,
        data,
        mask=resource.mask,
        etag_key=resource.etag_key,
        name=resource.name,
    )


def _with_references(
    resource: Resource, access: Access, principal: Principal | None, data: Mapping[str, Any] | None
) -> Access:
    """``access`` with the caller's read access to each resource with rules
    that the resource's references name (none at all where it may not read it)."""
    references: dict[str, Access] = {}
    for relation in resource.fields.relations.values():
        target = resource.catalog[relation.resource]
        if target.settings.rules is None or target.name in references:
            continue
        try:
            references[target.name] = resource_access(
                target, "GET", principal, item=True, data=data
            )
        except ApiError:
            references[target.name] = Access(filter=NOTHING)
    return replace(access, references=references) if references else access


def ruled_access(
    access: Access,
    rules: RulesSettings,
    method: str,
    principal: Principal | None,
    data: Mapping[str, Any] | None,
    *,
    mask: FieldMask,
    etag_key: bytes,
    name: str,
) -> Access:
    """``access`` narrowed by the role of ``rules`` that applies to
    ``principal`` for ``method`` (403 for what the role may not do): its
    filters, what it may read (besides ``mask``) and write. With ``%%root``
    conditions, the candidate roles' (``roles.choose_role``): a method is a
    403 only when no candidate may do it, and the filters reach the documents
    governed by those that may."""
    caller = None
    if principal is not None:
        caller = Caller(principal.id, principal.name, principal.roles, data or {})
    role = choose_role(rules, caller, meta=mask.meta, etag_key=etag_key, now=now())
    method = "GET" if method == "HEAD" else method
    nobody = "no role of its rules applies to you" if role.name is None else None
    if method == "GET":
        narrowing = role.read_filter
    elif method == "POST":
        if not role.may_insert:
            raise Forbidden(f"you may not insert into {name}: {nobody or 'your role may not'}")
        narrowing = {}
    else:
        allowed = role.may_delete if method == "DELETE" else role.may_write
        if not allowed:
            verb = "delete from" if method == "DELETE" else "change documents of"
            raise Forbidden(f"you may not {verb} {name}: {nobody or 'your role may not'}")
        narrowing = role.scope(method)
    return replace(
        access,
        filter=access.restrict(narrowing) if narrowing else access.filter,
        fields=mask.union(role.reads),
        writes=role.writes,
        insert_filter=role.write_filter,
        inserts=role.may_insert,
        rule=role.name or "",
        cache_key=f"{access.cache_key}|rules:{role.key}",
        cacheable=role.cacheable,
    )


def _access(resource: Resource, method: str, principal: Principal | None, *, item: bool) -> Access:
    """``resource_access`` before the resource's rules."""
    settings, name = resource.settings, resource.name
    method = "GET" if method == "HEAD" else method
    public = settings.public_item_methods if item else settings.public_methods
    if method in public and (principal is None or method == "GET"):
        # A public read is the same for everyone, owner field or not; a
        # signed-in caller's public write still carries its owner below.
        return Access(cache_key="public", fields=resource.mask)
    if principal is None:
        raise unauthorized("authentication required")
    if method not in public:
        if method == "GET":
            allowed = settings.allowed_read_roles or settings.allowed_roles
        else:
            allowed = settings.allowed_write_roles or settings.allowed_roles
        if allowed and principal.roles.isdisjoint(allowed):
            raise Forbidden(f"{method} on {name} needs one of the roles: {', '.join(allowed)}")
    if settings.auth_field:
        return Access(
            filter={settings.auth_field: principal.id},
            owner=(settings.auth_field, principal.id),
            cache_key=f"owner:{principal.id}",
            fields=resource.mask,
        )
    return Access(cache_key="all", fields=resource.mask)


class Auth:
    """The auth extension: who is calling, and may they do this?"""

    def __init__(self, settings: Settings, storage: Storage, state: SharedState) -> None:
        self.settings = settings.auth
        self.trusted_proxies = settings.trusted_proxies
        self._config = settings
        self._tokens: TokenIssuer | None = None
        self.store = AuthStore.for_settings(state, settings.auth)
        if settings.auth.revocation_cache:
            self.store.keep_verdicts()
        self.accounts = Accounts(storage, settings.auth)
        self.throttle = LoginThrottle(state, settings.auth)
        #: Blueprints that take other credential headers than Shoal's own.
        self.credential_headers: dict[str, CredentialHeaders] = {}

    def accept_credentials(self, blueprint: str, headers: CredentialHeaders) -> None:
        """Look for credentials in ``headers`` on the routes of ``blueprint``."""
        self.credential_headers[blueprint] = headers

    def init_app(self, app: Quart) -> None:
        # The accounts' indexes are created with the resources' (app.py).
        app.extensions[EXTENSION_KEY] = self
        app.before_serving(self.open)

    async def open(self) -> None:
        """Load the signing key: when the app serves, not when it is built (a
        development secret is made on first use; see signing.py)."""
        if self._tokens is None:
            self._tokens = TokenIssuer(self.settings, signing_secret(self._config))

    @property
    def tokens(self) -> TokenIssuer:
        if self._tokens is None:
            raise RuntimeError("auth is not open; it opens in before_serving")
        return self._tokens

    # -- who is calling --------------------------------------------------

    async def current_principal(self, call: Call | None = None) -> Principal | None:
        """The caller of ``call`` (the current Quart request's by default),
        resolved once per request: the policies ask before the view does, and
        a refusal is remembered too (a wrong password counts once against the
        login throttle, not twice)."""
        call = call or current_call()
        state = call.state
        if "principal_error" in state:
            raise state["principal_error"]
        if "principal" not in state:
            try:
                state["principal"] = await self._resolve(call)
            except ApiError as error:
                state["principal_error"] = error
                raise
        principal: Principal | None = state["principal"]
        return principal

    async def _resolve(self, call: Call) -> Principal | None:
        accepted = self.credential_headers.get(call.blueprint or "", DEFAULT_CREDENTIALS)
        authorization = call.headers.get("Authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise unauthorized("the Authorization header must be 'Bearer <token>'")
            return await self._from_token(credentials.strip())
        for header in accepted.api_key:
            api_key = call.headers.get(header)
            if api_key is not None:
                principal = await self.accounts.principal_for_key(api_key.strip())
                if principal is None:
                    raise unauthorized("the API key is not valid or was revoked", invalid=True)
                return principal
        if accepted.login is not None:
            principal = await self._from_login_headers(call, *accepted.login)
            if principal is not None:
                return principal
        session_id = call.cookies.get(self.settings.session_cookie) if accepted.cookie else None
        if session_id:
            return await self._from_session(call, session_id)
        return None

    async def _from_login_headers(
        self, call: Call, name_header: str, password_header: str
    ) -> Principal | None:
        name = call.headers.get(name_header)
        password = call.headers.get(password_header)
        if name is None and password is None:
            return None
        if not name or not password:
            raise BadRequest(
                f"the {name_header} and {password_header} headers go together; send both",
                code="MissingParameter",
            )
        user, epoch = await self.login(name, password, call)
        return Principal(
            id=user.id, name=user.name, roles=user.roles, kind="user", via="password", epoch=epoch
        )

    async def _from_token(self, token: str) -> Principal:
        try:
            claims = self.tokens.decode(token)
        except TokenError as error:
            raise unauthorized(str(error), invalid=True) from None
        refused = await self.store.token_refused(
            claims["sub"], claims["jti"], claims.get("fam"), claims["epoch"]
        )
        if refused is not None:
            raise unauthorized(refused, invalid=True)
        return Principal(
            id=str(claims["sub"]),
            name=str(claims.get("name", "")),
            roles=frozenset(claims.get("roles", [])),
            kind="user",
            via="bearer",
            token_id=claims["jti"],
            family=claims.get("fam"),
            epoch=claims["epoch"],
            expires=float(claims["exp"]),
        )

    async def _from_session(self, call: Call, session_id: str) -> Principal:
        grant = await self.store.session(session_id)
        if grant is None:
            raise unauthorized("the session has ended; log in again")
        if call.method not in SAFE_METHODS:
            supplied = call.headers.get(CSRF_HEADER) or ""
            if not grant.csrf_token or not hmac.compare_digest(supplied, grant.csrf_token):
                raise Forbidden(f"a cookie session needs the {CSRF_HEADER} header on writes")
        return Principal(
            id=grant.subject,
            name=grant.name,
            roles=grant.roles,
            kind="user",
            via="session",
            session_key=session_id,
            csrf_token=grant.csrf_token,
        )

    async def still_valid(self, principal: Principal) -> bool:
        """Whether credentials accepted earlier would still be accepted now (for
        what lasts, like an event stream): not expired, revoked or signed out,
        nor an API key revoked since. Raises StateUnavailable if Redis is down."""
        if principal.via == "bearer" and principal.token_id is not None:
            if principal.expires is not None and time.time() >= principal.expires:
                return False
            refused = await self.store.token_refused(
                principal.id, principal.token_id, principal.family, principal.epoch
            )
            return refused is None
        if principal.via == "session" and principal.session_key is not None:
            return await self.store.session(principal.session_key) is not None
        if principal.via == "password":
            # Checked at the start; a change to the user since moves the mark.
            return await self.store.epoch(principal.id) <= principal.epoch
        return await self.accounts.api_key_active(principal.id)

    async def require_principal(self, call: Call | None = None) -> Principal:
        principal = await self.current_principal(call)
        if principal is None:
            raise unauthorized("authentication required")
        return principal

    # -- may they? -------------------------------------------------------

    async def authorize(self, call: Call, resource: Resource, method: str, *, item: bool) -> Access:
        """The caller's access to ``resource`` for ``method``; 401/403 otherwise.

        Decided once per request: the response cache asks before the view does.
        """
        decided: dict[tuple[str, str, bool], Access] = call.state.setdefault("access", {})
        key = (resource.name, method, item)
        if key not in decided:
            principal = await self.current_principal(call)
            data = await self._user_data(call, resource, principal)
            decided[key] = resource_access(resource, method, principal, item=item, data=data)
        return decided[key]

    async def _user_data(
        self, call: Call, resource: Resource, principal: Principal | None
    ) -> Mapping[str, Any] | None:
        """The caller's ``%%user.data``, read once per request, where the
        resource's rules use it (an API key has none)."""
        if principal is None or principal.kind != "user" or not _uses_user_data(resource):
            return None
        if "user_data" not in call.state:
            call.state["user_data"] = await self.accounts.user_data(principal.id)
        data: Mapping[str, Any] = call.state["user_data"]
        return data

    # -- logging in and out ----------------------------------------------

    def client_address(self, call: Call | None = None) -> str:
        return client_address(call or current_call(), self.trusted_proxies)

    async def login(self, name: str, password: str, call: Call | None = None) -> tuple[User, int]:
        """The user, and the not-before mark their credentials are to carry."""
        address = self.client_address(call)
        # Counted before the password is checked: see throttle.py.
        await self.throttle.attempt(name, address)
        try:
            checked = await self.accounts.authenticate(name, password)
            if checked is None:
                raise unauthorized("wrong user name or password")
            found, password_hash = checked
            # The mark first, then the document again: a change to the user that
            # this read misses stamps a newer mark, which refuses what we issue.
            epoch = await self.store.epoch(found.id)
            user = await self.accounts.user(found.id, password_hash=password_hash)
        except ServiceUnavailable:
            await self.throttle.withdraw(name, address)  # no verdict: not a failure
            raise
        if user is None:
            raise unauthorized("wrong user name or password")
        await self.throttle.succeeded(name, address)
        return user, epoch

    async def issue_tokens(
        self, user: User, epoch: int = 0, family: str | None = None
    ) -> dict[str, Any]:
        family = family or secrets.token_urlsafe(12)
        access = self.tokens.issue(
            subject=user.id, name=user.name, roles=user.roles, family=family, epoch=epoch
        )
        refresh = await self.store.new_refresh_token(
            Grant(subject=user.id, name=user.name, roles=user.roles, family=family, epoch=epoch)
        )
        return {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "refresh_token": refresh,
            "refresh_expires_in": self.settings.refresh_token_ttl,
        }

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        try:
            rotation = await self.store.rotate(refresh_token)
        except RefreshReused:
            raise unauthorized(
                "this refresh token was already used; its session is revoked, log in again",
                invalid=True,
            ) from None
        except SignedOut:
            raise unauthorized(
                "the account changed since this login (disabled, deleted, new roles or "
                "password); log in again",
                invalid=True,
            ) from None
        if rotation is None:
            raise unauthorized("the refresh token is not valid or has expired", invalid=True)
        grant = rotation.grant
        # The mark was read by rotate(), before this read of the user: see login().
        user = await self.accounts.user(grant.subject)
        if user is None:
            await self.store.revoke_family(grant.subject, grant.family)
            raise unauthorized("the account no longer exists or is disabled", invalid=True)
        return await self.issue_tokens(user, rotation.epoch, grant.family)

    async def start_session(self, user: User, epoch: int = 0) -> tuple[str, str]:
        """A browser session: (session id for the cookie, CSRF token)."""
        csrf = secrets.token_urlsafe(24)
        grant = Grant(
            subject=user.id,
            name=user.name,
            roles=user.roles,
            family=secrets.token_urlsafe(12),
            csrf_token=csrf,
            epoch=epoch,
        )
        return await self.store.new_session(grant), csrf

    async def logout(self, principal: Principal, refresh_token: str | None = None) -> None:
        """End what the caller holds: the token and its family, or the session."""
        if principal.via == "bearer" and principal.token_id is not None:
            await self.store.revoke_token(
                principal.id, principal.token_id, self.settings.access_token_ttl
            )
            if principal.family is not None:
                await self.store.revoke_family(principal.id, principal.family)
        elif principal.via == "session" and principal.session_key is not None:
            await self.store.end_session(principal.session_key)
        # Only the caller's own refresh token is consumed and revoked.
        if refresh_token and self.store.refresh_subject(refresh_token) == principal.id:
            with contextlib.suppress(RefreshReused, SignedOut):
                rotation = await self.store.rotate(refresh_token)
                if rotation is not None:
                    await self.store.revoke_family(principal.id, rotation.grant.family)


def _uses_user_data(resource: Resource) -> bool:
    """Whether the rules of ``resource``, or of a resource it references, use
    ``%%user.data``."""
    names = [resource.name, *(relation.resource for relation in resource.fields.relations.values())]
    return any(
        (rules := resource.catalog[name].settings.rules) is not None and rules.uses_user_data
        for name in names
    )


def get_auth(app: Quart) -> Auth:
    auth: Auth = app.extensions[EXTENSION_KEY]
    return auth
