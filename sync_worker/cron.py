"""Cron expressions of the settings, read once and refused with the setting's name.

Guarantees: :func:`crontab_of` (pure) turns a five-field expression (minute hour day-of-month
month day-of-week, Celery's ``crontab`` syntax) into a Celery ``crontab``, or raises
:class:`BadCron` whose message names the setting, the value and what is wrong, so a bad schedule
stops a process at start with one line instead of failing in beat later.
"""

from __future__ import annotations

from celery.schedules import crontab

FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class BadCron(ValueError):
    """A setting's value is not a five-field cron expression."""


def crontab_of(expression: str, setting: str) -> crontab:
    """The ``crontab`` of ``expression`` (the value of ``setting``), or :class:`BadCron`."""
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise BadCron(
            f"{setting}={expression!r} is not a cron expression: give 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    try:
        schedule = crontab(**dict(zip(FIELDS, parts, strict=True)))
    except ValueError as exc:
        raise BadCron(f"{setting}={expression!r} is not a cron expression: {exc}") from None
    return schedule
