"""Names every resource route shares: the blueprint that serves them, and the
last segment of a change stream's path. The routes themselves are the route
table's (``routes.py``)."""

from __future__ import annotations

#: The blueprint that serves every resource (api/resources.py).
BLUEPRINT = "resources"

#: The last segment of a stream's path: ``/<name>/_stream``, ``/<name>/<id>/_stream``.
STREAM_SEGMENT = "_stream"
