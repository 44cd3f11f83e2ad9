"""HTTP methods by what they may do."""

from __future__ import annotations

#: Methods that change nothing (RFC 9110 "safe"): reads, rate-limited as reads.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Methods that read a representation (HEAD is a GET without the body).
READ_METHODS = frozenset({"GET", "HEAD"})
