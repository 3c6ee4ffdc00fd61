"""Cron expressions of the beat schedule (``SYNC_RESYNC_CRON``, ``USERS_RESYNC_CRON``, ...).

Guarantees (pure): :func:`parse_cron` turns the five fields ``minute hour day-of-month
month-of-year day-of-week`` into Celery's ``crontab``, or raises ``ValueError`` saying what is
wrong (how many fields there are, or the field Celery refused and why), so a setting holding a
bad cron stops the process that reads it at start with that message
(:class:`sync_worker.config.Settings` checks each cron it holds), never a beat that fires at
the wrong time or not at all.
"""

from __future__ import annotations

from celery.schedules import crontab

FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_cron(expression: str) -> crontab:
    """``"0 3 * * *"`` as a ``crontab``; ``ValueError`` naming the problem otherwise."""
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise ValueError(
            f"{expression!r} is not a cron: it needs 5 fields (minute hour day-of-month month "
            f"day-of-week), it has {len(parts)}"
        )
    try:
        return crontab(**dict(zip(FIELDS, parts, strict=True)))
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a valid cron: {error}") from None
