"""Issue 3: a poison contact is parked (one entry, its error, its attempts) and a replay
after the fix re-reads the platform and syncs it, through the admin API, the CLI or beat's
periodic replay."""

from __future__ import annotations

import json

import pytest
import redis as redis_lib
import requests

from sync_worker.celery_app import REALTIME_QUEUE, REPLAY_DEAD_LETTERS_TASK, create_celery
from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from tests.fixtures.resilience import (
    assert_synced,
    attributes,
    dead_letters,
    is_live,
    run_cli,
    trigger,
    wait_for_attributes,
)
from tests.fixtures.workers import ADMIN_TOKEN

pytestmark = pytest.mark.integration


def test_a_contact_failing_past_its_retries_is_dead_lettered_and_a_replay_syncs_it(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    workers.start(1)
    # Every write of the contact fails with a 5xx: retried in the call, then as Celery retries.
    intercom_sandbox.config(fail_next={"count": 10_000, "status": 503, "operation": "UpdateContact"})
    trigger(web_app.url, olivia)
    store = dead_letters(redis_url)
    entry_id = f"id:{olivia['id']}"
    wait_until(lambda: store.get(entry_id) is not None, 90, message="the contact to be dead-lettered")

    entry = store.get(entry_id)
    assert store.count() == 1
    assert entry.error_code == "intercom_unavailable"
    assert "503" in entry.error_message
    assert entry.attempts == 1 + int(workers.env["SYNC_TASK_MAX_RETRIES"])  # the first try and each retry
    assert entry.trigger == "manual"
    assert attributes(intercom_sandbox, olivia["id"]) == {}

    # The cause is fixed, and the platform changed meanwhile: the replay must read it again.
    intercom_sandbox.config(fail_next=None)
    changed = [{**olivia_records[0], "phone": "+1 416 555 0000"}]
    platform_sandbox.add_clients(*changed)
    response = requests.post(
        f"{web_app.url}/v1/admin/dead-letters/{entry_id}/retry",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert store.get(entry_id) is None

    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the replayed sync")
    assert_synced(intercom_sandbox, olivia, changed)
    assert attributes(intercom_sandbox, olivia["id"])["Phone Number"] == "+1 416 555 0000"
    assert store.count() == 0


def test_a_platform_record_breaking_the_contract_is_dead_lettered_then_replayed_after_the_fix(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, service_env, redis_url
):
    workers.start(1)
    broken = {key: value for key, value in olivia_records[0].items() if key != "organization"}
    platform_sandbox.add_clients(broken, check=False)
    trigger(web_app.url, olivia)
    store = dead_letters(redis_url)
    entry_id = f"id:{olivia['id']}"
    wait_until(lambda: store.get(entry_id) is not None, 60, message="the contact to be dead-lettered")
    entry = store.get(entry_id)
    assert (entry.error_code, entry.attempts) == ("platform_data_invalid", 1)  # permanent: not retried
    assert "organization" in entry.error_message
    assert attributes(intercom_sandbox, olivia["id"]) == {}

    platform_sandbox.add_clients(*olivia_records)  # the platform fixed the record
    result = run_cli(service_env, "dead-letters", "retry", entry_id)
    assert result.returncode == 0, result.stderr
    assert store.get(entry_id) is None
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the replayed sync")
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert store.count() == 0


def test_the_periodic_replay_task_replays_every_parked_contact(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    """What beat runs on SYNC_DEAD_LETTER_REPLAY_CRON, sent to a real worker as beat sends it."""
    store = dead_letters(redis_url)
    store.park(
        contact_id=olivia["id"],
        email=olivia["email"],
        error_code="intercom_unavailable",
        error_message="Intercom answered 503",
        trigger="webhook",
        kwargs={"contact_id": olivia["id"], "email": olivia["email"], "trigger": "webhook"},
    )
    workers.start(1)
    app = create_celery(Settings(REDIS_URL=redis_url))
    app.send_task(REPLAY_DEAD_LETTERS_TASK, queue=REALTIME_QUEUE)
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the replayed sync")
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert store.count() == 0


def test_retried_messages_show_celery_no_email(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, redis_url
):
    """A retry waits in the broker as a message whose ``kwargsrepr`` (what task events and monitors
    show) names the trigger and contact id only; the email stays inside the task's arguments."""
    workers.start(1, SYNC_RETRY_BACKOFF_BASE_SECONDS="3", SYNC_RETRY_BACKOFF_MAX_SECONDS="6")
    intercom_sandbox.config(fail_next={"count": 10_000, "status": 503, "operation": "UpdateContact"})
    trigger(web_app.url, olivia)
    client = redis_lib.Redis.from_url(redis_url)
    seen: list[dict] = []

    def a_retry_is_waiting() -> bool:
        for raw in client.hvals("unacked"):  # kombu's Redis transport: [message, exchange, routing key]
            headers = json.loads(raw)[0]["headers"]
            if headers.get("retries", 0) >= 1:
                seen.append(headers)
        return bool(seen)

    wait_until(a_retry_is_waiting, 60, interval=0.05, message="a retry waiting for its countdown")
    headers = seen[0]
    assert olivia["id"] in headers["kwargsrepr"]
    assert "@" not in headers["kwargsrepr"] and "@" not in headers["argsrepr"], headers
    intercom_sandbox.config(fail_next=None)
