"""Access tokens found not revoked, kept in a worker's memory
(``auth.revocation_cache: true``).

Without it, every request with a bearer token asks Redis whether the token, its
login's family or its user's not-before mark refuse it (one ``MGET``). With it,
a worker keeps each "not refused" verdict and answers from memory until Redis
pushes a change of any of that user's auth keys (the worker's ``KeyWatch``,
subscribed to ``auth:``): a revocation, a sign-out everywhere, a new login. It
trusts a verdict only if no such push arrived while it was reading the keys,
forgets the user's verdicts at once when it revokes something itself, and
forgets all of them whenever the watch loses Redis.

What it gives up: a revocation through another instance takes effect here when
its push arrives (on one machine, a fraction of a millisecond) rather than on
the next request. Refusals are never kept: a refused token asks Redis again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ..state import hash_tag

if TYPE_CHECKING:  # the watch comes with the Redis store, loaded only with a Redis URL
    from ..state.tracking import KeyWatch

#: Users whose verdicts a worker keeps at most (the least recently used go first).
KEPT_USERS = 10_000

#: One access token as its verdict depends on it: jti, family, not-before mark.
Token = tuple[str, str | None, int]


class KeptVerdicts:
    def __init__(self, watch: KeyWatch, size: int = KEPT_USERS) -> None:
        self.watch = watch
        self.size = size
        self._users: OrderedDict[str, set[Token]] = OrderedDict()
        watch.subscribe(["auth:"], on_change=self._changed, on_reset=self._users.clear)

    def accepted(self, user_id: str, token: Token) -> bool:
        """Whether the token was found not refused, and nothing of its user changed since."""
        tokens = self._users.get(user_id)
        if tokens is None or token not in tokens or not self.watch.live:
            return False
        self._users.move_to_end(user_id)
        return True

    def version(self, user_id: str) -> tuple[int, int]:
        """Taken before reading the user's keys from Redis."""
        return self.watch.version(user_id)

    def accept(self, user_id: str, token: Token, version: tuple[int, int]) -> None:
        """Keep a verdict read from Redis, unless the user's keys changed since ``version``."""
        if not self.watch.unchanged_since(user_id, version):
            return
        self._users.setdefault(user_id, set()).add(token)
        self._users.move_to_end(user_id)
        while len(self._users) > self.size:
            self._users.popitem(last=False)

    def forget(self, user_id: str) -> None:
        """This worker changes the user's auth keys: trust nothing read before."""
        self.watch.changed(user_id)
        self._users.pop(user_id, None)

    def _changed(self, key: str) -> None:
        self._users.pop(hash_tag(key), None)
