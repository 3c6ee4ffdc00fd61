"""Cron expressions of the settings, read once and refused with the setting's name.

Guarantees (pure): :func:`parse_cron` turns the five fields ``minute hour day-of-month
month-of-year day-of-week`` (Celery's ``crontab`` syntax) into a Celery ``crontab``, or raises
``ValueError`` saying what is wrong (how many fields there are, or the field Celery refused and
why); :func:`crontab_of` does the same and raises :class:`BadCron` naming the setting too, so a
setting holding a bad cron (``SYNC_RESYNC_CRON``, ``USERS_RESYNC_CRON``, ``REFERRAL_POLL_CRON``,
...) stops the process that reads it at start with one line, never a beat that fires at the
wrong time or not at all.
"""

from __future__ import annotations

from celery.schedules import crontab

FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class BadCron(ValueError):
    """A setting's value is not a five-field cron expression."""


def parse_cron(expression: str) -> crontab:
    """``"0 3 * * *"`` as a ``crontab``; ``ValueError`` naming the problem otherwise."""
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise ValueError(
            f"{expression!r} is not a cron expression: give 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    try:
        return crontab(**dict(zip(FIELDS, parts, strict=True)))
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a cron expression: {error}") from None


def crontab_of(expression: str, setting: str) -> crontab:
    """The ``crontab`` of ``expression`` (the value of ``setting``), or :class:`BadCron` naming it."""
    try:
        return parse_cron(expression)
    except ValueError as error:
        raise BadCron(f"{setting}={error}") from None
