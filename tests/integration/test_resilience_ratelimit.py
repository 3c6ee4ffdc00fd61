"""Issue 3: four worker processes share one Intercom budget and never go over it.

The Intercom sandbox counts, per 10-second window, every API request it receives: those
counts, not ours, show that no window received more than its limit (so none was refused
with a 429), while every contact still ends with exactly what one clean sync writes.
"""

from __future__ import annotations

import pytest

from sync_worker.localredis import wait_until
from sync_worker.sandbox.dataset import synthetic
from tests.fixtures.resilience import assert_synced, dead_letters, is_live, trigger

pytestmark = pytest.mark.integration

INTERCOM_LIMIT = 40  # calls per 10-second window, for the whole app
CONTACTS = 150


def test_four_workers_stay_within_intercom_window_limit_and_every_contact_ends_correct(
    intercom_sandbox, platform_sandbox, workers, web_app, redis_url
):
    records = list(synthetic(CONTACTS))
    platform_sandbox.add_clients(*records)
    contacts = intercom_sandbox.seed(*({"email": record["email"]} for record in records))
    intercom_sandbox.config(rate_limit=INTERCOM_LIMIT)
    workers.start(4)  # each starts from the configured budget (1666) and learns the real one from Intercom
    for contact in contacts:
        trigger(web_app.url, contact)

    def all_live() -> bool:
        return all(is_live(contact["custom_attributes"]) for contact in intercom_sandbox.contacts())

    wait_until(all_live, 180, interval=0.5, message=f"all {CONTACTS} contacts to be synced")

    stats = intercom_sandbox.stats()
    windows = [window for window in stats["windows"] if window["received"]]
    assert all(window["received"] <= INTERCOM_LIMIT for window in windows), windows  # not one call over
    assert all(window["admitted"] <= window["limit"] for window in windows), windows
    assert stats["rate_limited"] == 0
    assert stats["received_total"] > 3 * INTERCOM_LIMIT  # the limit did bind: several windows' worth
    assert stats["validation_failures"] == 0
    for contact, record in zip(contacts, records, strict=True):
        assert_synced(intercom_sandbox, contact, [record])
        assert len(intercom_sandbox.writes(contact["id"])) == 1  # each written once: nothing redone
    assert dead_letters(redis_url).count() == 0
