"""Redis keys the receiver writes, beside :mod:`sync_worker.keys`.

Guarantees: every key starts with the service's ``intercom-sync:`` prefix, so one
pattern finds everything the service keeps; metric hashes share one sub-prefix.
"""

from __future__ import annotations

from sync_worker.keys import PREFIX

#: How long a webhook notification id is remembered (Intercom retries once, a minute later).
WEBHOOK_SEEN_TTL_SECONDS = 24 * 3600


def webhook_seen(notification_id: str) -> str:
    """Set once a notification's sync is stored (or it was skipped): later deliveries are duplicates."""
    return f"{PREFIX}:webhook-seen:{notification_id}"


def metric(name: str) -> str:
    """Hash of one metric of the web process: field = its labels as JSON, value = the count."""
    return f"{PREFIX}:web-metrics:{name}"


def readiness_probe() -> str:
    """Written by every ``/readyz`` (a short expiry): Redis takes writes, so triggers can be stored."""
    return f"{PREFIX}:readiness-probe"
