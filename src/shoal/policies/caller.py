"""Who is calling, for the policies that count or remember callers (rate
limits, idempotency keys): the API key or user, else the client's address."""

from __future__ import annotations

from ..auth import Auth
from ..errors import ApiError
from ..http.call import Call
from ..http.net import Networks, client_address


async def caller_key(auth: Auth, call: Call, trusted_proxies: Networks) -> str:
    """The caller's key: ``apikey:<id>``, ``user:<id>`` or ``addr:<ip>``.

    Bad or unverifiable credentials count against the address; the view
    answers 401 (or 503) for them itself.
    """
    try:
        principal = await auth.current_principal(call)
    except ApiError:
        principal = None
    if principal is not None:
        return principal.rate_key
    return "addr:" + client_address(call, trusted_proxies)
