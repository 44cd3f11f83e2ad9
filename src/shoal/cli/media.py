"""``shoal media gc``: remove the files of media fields that no document holds.

A write that replaces a file removes the old one after the document is
written; a crash in between leaves the old file behind, held by no document
(an orphan), and so does an upload whose document write never came. This
command finds the files uploaded more than ``--grace`` seconds ago that no
document of the config's resources names, and removes them (``--dry-run``:
counts them only). The grace period spares uploads whose write is still under
way: keep it longer than any request may last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import ConfigError, MongoDBSettings, load_settings
from ..errors import ApiError
from ..resources import build_resources
from ..resources.media import orphans
from ..storage import open_storage
from ..storage.embedded import EmbeddedStoreError, mongodb_for_command
from ..storage.files import Files


class MediaError(Exception):
    """The command cannot run; ``status`` is its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Collected:
    """What one run found and did."""

    looked_at: int
    orphans: int
    removed: int


def collect(config: str | None, grace_seconds: float, *, dry_run: bool = False) -> Collected:
    """Remove (or, ``dry_run``, count) the orphaned files older than the grace period."""
    try:
        settings = load_settings(config)
    except ConfigError as error:
        raise MediaError(str(error), status=2) from error
    resources = build_resources(settings).values()
    before = datetime.now(UTC) - timedelta(seconds=grace_seconds)

    async def run(mongodb: MongoDBSettings) -> Collected:
        async with open_storage(mongodb) as storage:
            found, looked_at = await orphans(storage, resources, before)
            if not dry_run:
                await Files(storage).delete(found)
            return Collected(looked_at, len(found), 0 if dry_run else len(found))

    try:
        with mongodb_for_command(settings) as mongodb:
            return asyncio.run(run(mongodb))
    except EmbeddedStoreError as error:
        raise MediaError(str(error), status=2) from error
    except ApiError as error:
        raise MediaError(error.message) from error
