"""`shoal serve`'s part of the metrics: before the workers start, a clean
multiprocess directory for them, and the exporter on ``metrics.bind``."""

from __future__ import annotations

from ..config import Settings, split_bind
from ..metrics import prepare_multiprocess_dir, start_exporter


def start_metrics(settings: Settings) -> None:
    """Prepare the workers' metric files and, with ``metrics.bind``, serve them
    from this process; nothing when metrics are off.

    A ``metrics.bind`` that cannot be bound stops `shoal serve` with status 1
    and the reason, as a taken API address does.
    """
    if not settings.metrics.enabled:
        return
    prepare_multiprocess_dir()
    if settings.metrics.bind is None:
        return
    host, port = split_bind(settings.metrics.bind)
    try:
        start_exporter(host, port)
    except OSError as error:
        raise SystemExit(
            f"shoal serve: cannot listen for metrics on {settings.metrics.bind}: "
            f"{error.strerror or error}"
        ) from None
    print(f"Shoal serves its metrics on http://{settings.metrics.bind}/metrics", flush=True)
