"""Writes that are done once, whoever does them again: the ids and ETags of a
write with an ``Idempotency-Key`` are derived from the key.

Recording a write's answer can never be atomic with the write itself (the
answer lives in Redis, the write in MongoDB), and a worker may die between
the two. So the write carries its key instead:

- a **POST** inserts each new document under an ``_id`` derived from the key
  (and its place in the list): done again, the insert meets that ``_id`` in
  MongoDB's unique index, and the stored document is the answer (on a
  versioned resource the insert runs in a transaction, and done again it is a
  409 with nothing written twice);
- a **PATCH** or **PUT** writes an ``_etag`` derived from the key and the
  ``If-Match`` it was conditional on: done again, the condition fails, and a
  document carrying exactly that ETag is the proof that this write was done
  (and nothing since), so it is the answer.

``HEADER`` is the header's name, which the idempotency policy reads and the
resource service's messages name.

The key arrives as its seed: a digest of the caller, method, path and key,
which the idempotency policy computes (``shoal.policies.idempotency``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bson import ObjectId

#: The request header that carries a write's key.
HEADER = "Idempotency-Key"


@dataclass
class WriteKey:
    """One request's Idempotency-Key, as the resource service uses it::

    key = WriteKey(seed)
    documents = await service.create(bodies, access, key=key)
    key.replayed  # True when the write had been done before
    """

    seed: str
    #: Set by the service when it found this write done already: nothing was written now.
    replayed: bool = False

    def digest(self, index: int) -> bytes:
        """What the id of the ``index``-th document a keyed POST inserts is made of."""
        return hashlib.sha256(f"{self.seed}\0id\0{index}".encode()).digest()

    def object_id(self, index: int) -> ObjectId:
        """The ``_id`` of the ``index``-th document a keyed POST inserts."""
        return ObjectId(self.digest(index)[:12])

    def etag(self, base: str | None) -> str:
        """The ETag a keyed write gives the version it makes from ``base``
        (the ETag in ``If-Match``; None for ``*``)."""
        digest = hashlib.sha256(f"{self.seed}\0etag\0{base or '*'}".encode()).hexdigest()
        return digest[:40]  # as long as the content ETags
