"""When s3-batch is unhealthy, and its backlog metrics (docs/operations.md).

Unhealthy: a destination's last upload attempt failed (credentials, permission, bucket missing,
endpoint unreachable — each attempt already holds botocore's own retries), or its oldest unsent
object is older than --max-backlog-age-secs (a paused destination included: its data is not
flowing either). `s3-batch status` applies the same age rule to the spool files and exits 75.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harmony_pipes._core.metrics import Gauge

DEFAULT_MAX_BACKLOG_AGE_SECS = 900.0
STUCK_EXIT_CODE = 75  # EX_TEMPFAIL: a scheduler or probe should look again, nothing is lost


def stuck_reason(destination: str, oldest_age_secs: float | None, max_age_secs: float, paused: bool) -> str | None:
    """Why this destination's backlog counts as stuck, or None."""
    if oldest_age_secs is None or oldest_age_secs <= max_age_secs:
        return None
    return (
        f"destination {destination}{' (paused)' if paused else ''}: oldest unsent object is "
        f"{oldest_age_secs:.0f} s old (more than --max-backlog-age-secs {max_age_secs:g})"
    )


def stuck_rows(rows: Iterable[dict[str, Any]], max_age_secs: float) -> list[str]:
    """`s3-batch status` rows (control.scan_backlog) whose backlog is stuck, as reasons."""
    reasons = []
    for row in rows:
        reason = stuck_reason(row["destination"], row["oldest_age_secs"], max_age_secs, row["paused"])
        if reason:
            reasons.append(reason)
    return reasons


def watch(sink: Any, max_age_secs: float) -> None:
    """Register the sink's (run.S3Sink's: it passes itself in, so this module need not import it)
    health check and backlog gauges (read at scrape time, not per record)."""
    runtime = sink.runtime
    health = runtime.health
    health.success_on_progress = False  # success is a delivered object, not a read batch

    def backlog() -> list[tuple[str, int, int, float | None, bool]]:
        spool = sink.spool
        if spool is None:
            return []
        now_ms = sink.wall_ms()
        rows = []
        for worker in sink.deliverers:
            objects, size, oldest_ms = spool.backlog(worker.dest.name)
            age = None if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
            rows.append((worker.dest.name, objects, size, age, worker.paused))
        return rows

    def check() -> str | None:
        for worker in sink.deliverers:
            if worker.attempt and worker.last_error:
                return (
                    f"destination {worker.dest.name}: {worker.attempt} upload attempts failed in a row: "
                    f"{worker.last_error.removeprefix('Error: ')}"
                )
            refusal = sink.refused.get(worker.dest.name)
            if refusal is not None and not worker.delivered:
                return f"destination {worker.dest.name} refused at start: {refusal.one_line().removeprefix('Error: ')}"
        for name, _objects, _size, age, paused in backlog():
            reason = stuck_reason(name, age, max_age_secs, paused)
            if reason:
                return reason
        return None

    health.checks.append(check)
    per_dest = ("destination",)
    runtime.gauges.extend(
        [
            Gauge(
                "s3_backlog_objects",
                "Sealed objects not yet confirmed by the destination.",
                lambda: [((name,), objects) for name, objects, _, _, _ in backlog()],
                per_dest,
            ),
            Gauge(
                "s3_backlog_bytes",
                "Stored bytes of the objects not yet confirmed.",
                lambda: [((name,), size) for name, _, size, _, _ in backlog()],
                per_dest,
            ),
            Gauge(
                "s3_oldest_unsent_age_seconds",
                "Age of the oldest sealed object not yet confirmed (0 when none).",
                lambda: [((name,), age or 0.0) for name, _, _, age, _ in backlog()],
                per_dest,
            ),
            Gauge(
                "s3_destination_failing",
                "1 while the destination's last upload attempt failed, else 0.",
                lambda: [((w.dest.name,), 1.0 if w.attempt else 0.0) for w in sink.deliverers],
                per_dest,
            ),
            Gauge(
                "s3_destination_paused",
                "1 while the destination is paused (s3-batch pause), else 0.",
                lambda: [((w.dest.name,), 1.0 if w.paused else 0.0) for w in sink.deliverers],
                per_dest,
            ),
        ]
    )
