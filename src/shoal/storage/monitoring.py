"""MongoDB command timings for the metrics, from PyMongo's command monitoring
(its own extension point: the driver times each command and tells listeners)."""

from __future__ import annotations

from pymongo import monitoring

from ..metrics import mongodb_command


class CommandTimer(monitoring.CommandListener):
    """Observe every command's duration in ``shoal_mongodb_command_duration_seconds``."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        mongodb_command(event.command_name).observe(event.duration_micros / 1_000_000)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        mongodb_command(event.command_name).observe(event.duration_micros / 1_000_000)
