"""What beat runs for the referral program's intake, and when (pure: no Celery app, no Redis).

Guarantees: :func:`beat_entries` answers the reconciliation walk on ``REFERRAL_POLL_CRON`` and the
qualification backstop on ``REFERRAL_QUALIFY_POLL_CRON`` (both on ``sync.bulk``, so a burst of
webhooks is never behind them), only when ``SYNC_INTEGRATIONS`` runs ``referral_leads``; a bad
cron raises :class:`~sync_worker.cron.BadCron` naming the setting (the settings refuse one at
start already).
"""

from __future__ import annotations

from typing import Any

from sync_worker import integrations
from sync_worker.config import Settings
from sync_worker.cron import crontab_of

INTEGRATION = "referral_leads"
WALK_START_TASK = "sync_worker.referral_intake.tasks.start_walk"
WALK_STEP_TASK = "sync_worker.referral_intake.tasks.walk_step"
BACKSTOP_TASK = "sync_worker.referral_intake.tasks.qualify_backstop"


def runs(settings: Settings) -> bool:
    """Does this deployment run the referral leads integration?"""
    return INTEGRATION in integrations.parse(settings.integrations)


def beat_entries(settings: Settings, *, queue: str) -> dict[str, dict[str, Any]]:
    if not runs(settings):
        return {}
    return {
        "referral-walk": {
            "task": WALK_START_TASK,
            "schedule": crontab_of(settings.referral_poll_cron, "REFERRAL_POLL_CRON"),
            "options": {"queue": queue},
        },
        "referral-qualify-backstop": {
            "task": BACKSTOP_TASK,
            "schedule": crontab_of(settings.referral_qualify_poll_cron, "REFERRAL_QUALIFY_POLL_CRON"),
            "options": {"queue": queue},
        },
    }
