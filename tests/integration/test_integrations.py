"""Integrations on the real parts: a message queued before requests named their integration still
syncs; two integrations on one contact never fold into each other or share state; dead letters are
filtered by it (a worker refusing an unknown name: ``test_worker_startup.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests

from sync_worker.cache import LastKnownValues
from sync_worker.celery_app import REALTIME_QUEUE, SYNC_TASK, create_celery
from sync_worker.config import Settings
from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.devstack import seed_intercom_contacts
from sync_worker.devtools.localredis import wait_until
from sync_worker.dispatch import SyncRequest, claim, enqueue_sync
from sync_worker.resync.progress import summarize
from sync_worker.resync.runs import RunOptions, RunStore
from sync_worker.taskmessage import task_messages
from tests.fixtures.workers import ADMIN_TOKEN

pytestmark = pytest.mark.integration

OLIVIA = "olivia.brandt@example.com"


@pytest.fixture
def celery_app(redis_url: str):
    return create_celery(Settings(REDIS_URL=redis_url))


def test_a_message_queued_before_integrations_had_names_still_syncs(
    intercom_sandbox, platform_sandbox, workers, redis_client, celery_app
):
    """What an earlier version stored (the marker, the payload, the message: no ``integration`` in
    any) is claimed under its legacy keys and synced as the clients integration."""
    contact_id = next(c["id"] for c in seed_intercom_contacts(intercom_sandbox.url) if c["email"] == OLIVIA)
    kwargs = SyncRequest(contact_id=contact_id, email=OLIVIA, trigger="webhook").to_kwargs()
    del kwargs["integration"]
    message = task_messages(celery_app).build(SYNC_TASK, kwargs=kwargs, task_id="old-1", queue=REALTIME_QUEUE)
    redis_client.set(f"intercom-sync:pending:id:{contact_id}", "old-1")
    redis_client.set(f"intercom-sync:pending-payload:id:{contact_id}", json.dumps(kwargs))
    redis_client.lpush(message.list_key, message.payload)

    workers.start(1)

    def synced() -> dict | None:
        raw = redis_client.get(f"intercom-sync:last-result:id:{contact_id}")
        return json.loads(raw) if raw else None

    wait_until(synced, 30, message="the old-shaped message to be synced")
    result = synced()
    assert result["status"] == "synced", result
    attributes = intercom_sandbox.contact(contact_id)["custom_attributes"]
    assert attributes["Platform Account Exists"] == "Yes" and attributes["Data Status"] == "Live"
    assert not redis_client.exists(f"intercom-sync:pending:id:{contact_id}")  # claimed under the old name
    assert redis_client.get(f"intercom-sync:shown:id:{contact_id}")  # its fingerprint under the old name


def test_two_integrations_on_one_contact_queue_apart_and_claim_their_own(redis_client, celery_app):
    clients = SyncRequest(contact_id="c1", email=OLIVIA, trigger="webhook")
    other = SyncRequest(
        contact_id="c1", email="other@example.com", trigger="manual", integration="dealer_users"
    )
    first = enqueue_sync(clients, redis_client, celery_app)
    second = enqueue_sync(other, redis_client, celery_app)
    assert (first.status, second.status) == ("queued", "queued")  # not folded into each other
    assert first.task_id != second.task_id and redis_client.llen(REALTIME_QUEUE) == 2
    assert claim(redis_client, SyncRequest(contact_id="c1", trigger="webhook")).email == OLIVIA
    mine = claim(redis_client, SyncRequest(contact_id="c1", trigger="webhook", integration="dealer_users"))
    assert (mine.email, mine.integration) == ("other@example.com", "dealer_users")


def test_last_known_values_and_fingerprints_are_kept_per_integration(redis_client):
    clients, other = LastKnownValues(redis_client), LastKnownValues(redis_client, integration="dealer_users")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    clients.store("c1", {"a": "clients"}, now, email=OLIVIA)
    clients.mark_shown("c1", "fp-clients")
    other.store("c1", {"a": "other"}, now, email=OLIVIA)
    other.mark_shown("c1", "fp-other")
    assert (clients.load("c1").values, other.load("c1").values) == ({"a": "clients"}, {"a": "other"})
    assert (clients.shown("c1"), other.shown("c1")) == ("fp-clients", "fp-other")
    assert clients.load_by_email(OLIVIA)[1].values == {"a": "clients"}
    assert redis_client.get("intercom-sync:shown:id:c1") == "fp-clients"  # the legacy name


def _park(store: DeadLetterStore, integration: str) -> None:
    request = SyncRequest(contact_id="c1", email=OLIVIA, integration=integration)
    store.park(
        contact_id="c1",
        email=OLIVIA,
        error_code="boom",
        error_message="boom",
        trigger="manual",
        kwargs=request.to_kwargs(),
        integration=integration,
    )


def test_dead_letters_are_one_per_contact_and_integration_and_filtered_by_it(redis_client, web_app):
    store = DeadLetterStore(redis_client)
    _park(store, "clients")
    _park(store, "dealer_users")
    assert store.count() == 2
    assert [entry.id for entry in store.list(integration="clients")] == ["id:c1"]
    [other] = store.list(integration="dealer_users")
    assert (other.id, other.integration, other.to_dict()["integration"]) == (
        "dealer_users:id:c1",
        "dealer_users",
        "dealer_users",
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = requests.get(
        f"{web_app.url}/v1/admin/dead-letters?integration=clients", headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["count"], [i["integration"] for i in answer.json()["items"]]) == (1, ["clients"])
    refused = requests.get(
        f"{web_app.url}/v1/admin/dead-letters?integration=nope", headers=headers, timeout=10
    )
    assert refused.status_code == 400 and "clients" in refused.json()["error"]["message"], refused.text


def test_a_run_records_its_integration_and_runs_are_filtered_by_it(redis_client):
    store = RunStore(redis_client, lock_ttl_seconds=60, keep_seconds=60)
    store.create("run-clients", RunOptions())
    store.create("run-other", RunOptions(integration="dealer_users"))
    redis_client.hdel("intercom-sync:resync:run:run-clients", "integration")  # recorded before runs had one
    assert store.load("run-clients").integration == "clients"
    assert [r.id for r in store.recent(integration="clients")] == ["run-clients"]
    assert [r.id for r in store.recent(integration="dealer_users")] == ["run-other"]
    assert {r.id for r in store.recent()} == {"run-clients", "run-other"}
    assert summarize(store.load("run-other"), 0.0)["integration"] == "dealer_users"
