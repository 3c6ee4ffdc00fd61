"""Progress of a run as numbers and as a line of text (pure functions, no I/O).

Guarantees: :func:`summarize` turns a :class:`~sync_worker.resync.runs.RunRecord` and a
clock reading into the JSON the CLI and the admin API show: the counters, contacts
done (written + unchanged + failed, plus skipped), a rate over the run's elapsed time,
and an ETA when a total is known (Intercom's ``total_count``, else the previous run's);
the fraction never exceeds 1 and the ETA is None rather than a guess when the rate is 0.
:func:`progress_line` renders one summary as a fixed-width bar and figures.
"""

from __future__ import annotations

from typing import Any

from sync_worker.resync.runs import RUNNING, RunRecord


def done_count(counts: dict[str, int]) -> int:
    """Contacts the run has finished with (written, unchanged, deferred to a refresh, failed, gone or skipped)."""
    return (
        counts["written"]
        + counts["unchanged"]
        + counts["deferred"]
        + counts["failed"]
        + counts["gone"]
        + counts["skipped"]
    )


def summarize(record: RunRecord, now: float) -> dict[str, Any]:
    end = record.finished_at if record.finished_at is not None else now
    elapsed = max(0.0, end - record.started_at)
    done = done_count(record.counts)
    processed = done - record.counts["skipped"]
    total = record.total_estimate
    if record.status != RUNNING and record.walk_done:
        total = record.counts["seen"]
    if total is not None:
        total = max(total, record.counts["seen"])
    rate = processed / elapsed if elapsed > 0 else 0.0
    fraction = min(1.0, done / total) if total else (1.0 if record.status != RUNNING else None)
    eta = None
    if record.status == RUNNING and total is not None and rate > 0:
        eta = max(0.0, (total - done) / rate)
    return {
        "id": record.id,
        "status": record.status,
        "trigger": record.trigger,
        "integration": record.integration,
        "dry_run": record.dry_run,
        "only_changed": record.only_changed,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "updated_at": record.updated_at,
        "elapsed_seconds": round(elapsed, 3),
        "counts": dict(record.counts),
        "done": done,
        "total_estimate": total,
        "fraction": None if fraction is None else round(fraction, 4),
        "rate_per_second": round(rate, 2),
        "eta_seconds": None if eta is None else round(eta, 1),
        "in_flight_chunks": record.in_flight,
        "walk_done": record.walk_done,
        "resumed": record.resumed,
        "error": record.error,
    }


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(summary: dict[str, Any], width: int = 24) -> str:
    """``[#######.....]  52%  10,400/20,000  written 312  unchanged 10,010 ...  410/s  ETA 0:23``."""
    fraction = summary["fraction"]
    filled = round((fraction or 0.0) * width)
    bar = "[" + "#" * filled + "." * (width - filled) + "]"
    percent = f"{fraction * 100:3.0f}%" if fraction is not None else "  ?%"
    total = summary["total_estimate"]
    of = f"{summary['done']:,}/{total:,}" if total is not None else f"{summary['done']:,}"
    counts = summary["counts"]
    written = "would write" if summary["dry_run"] else "written"
    figures = (
        f"{written} {counts['written']:,}  unchanged {counts['unchanged']:,}  "
        f"no_account {counts['no_account']:,}  deferred {counts['deferred']:,}  skipped {counts['skipped']:,}  "
        f"failed {counts['failed']:,}"
    )
    tail = f"{summary['rate_per_second']:,.0f}/s"
    if summary["status"] == RUNNING:
        tail += f"  ETA {_clock(summary['eta_seconds'])}"
    else:
        tail += f"  {summary['status']} in {_clock(summary['elapsed_seconds'])}"
    return f"{bar} {percent}  {of}  {figures}  {tail}"
