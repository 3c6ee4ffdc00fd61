"""The dealer users' bulk re-sync over real processes: a worker, the receiver over HTTP, both sandboxes.

The run walks the platform's users (the sandbox's sample, ``GET /v1/users``), not Intercom's
contacts, and applies each user through the dealer users pipeline: a location shared by many
users is one company written once, and a second run with nothing changed writes nothing.
"""

from __future__ import annotations

import pytest
import redis as redis_lib
import requests

from sync_worker.devtools.sandbox.dealer_users_dataset import load_sample_users
from sync_worker.resync.runs import RunStore
from tests.fixtures.workers import ADMIN_TOKEN
from tests.integration.test_resync_pipeline import cli, finished

pytestmark = pytest.mark.integration

USERS = "dealer_users"
#: POST operations of Intercom's that only read.
READS = ("SearchContacts", "listAllCompanies")


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "SYNC_INTEGRATIONS": "clients,dealer_users"}


@pytest.fixture
def store(bulk_env):
    client = redis_lib.Redis.from_url(bulk_env["REDIS_URL"])
    yield RunStore(client, lock_ttl_seconds=300, keep_seconds=3600)
    client.close()


def writes(calls: dict[str, int]) -> dict[str, int]:
    """The calls that write (anything but a read: a GET, a search, a listing), by operation."""
    readers = ("list", "retrieve", "show", "lis")
    return {op: n for op, n in calls.items() if n and op not in READS and not op.lower().startswith(readers)}


def test_a_bulk_run_writes_each_shared_company_once_and_a_second_run_writes_nothing(
    bulk_env, workers, web_app, store, intercom_sandbox, platform_sandbox
):
    sample = load_sample_users()
    locations = {location["id"] for user in sample for location in user["locations"]}
    shared = max(locations, key=lambda lid: sum(lid in {loc["id"] for loc in u["locations"]} for u in sample))
    holders = sum(shared in {loc["id"] for loc in u["locations"]} for u in sample)
    assert holders >= 10  # the sample's shared location: the run must not write it per user
    extra = {k: v for k, v in bulk_env.items() if k not in workers.env}
    workers.start(1, concurrency=2, **extra)

    dry = cli(bulk_env, "--integration", USERS, "--dry-run")
    assert dry["status"] == "started"
    previewed = finished(store, dry["run_id"])
    assert previewed.integration == USERS and previewed.dry_run
    assert (previewed.counts["seen"], previewed.counts["written"]) == (len(sample), len(sample))
    assert intercom_sandbox.stats()["received_total"] == 0  # a dry run makes no Intercom call

    first = cli(bulk_env, "--integration", USERS)
    record = finished(store, first["run_id"])
    counts = record.counts
    assert record.integration == USERS
    assert (counts["seen"], counts["queued"], counts["failed"], counts["pages"]) == (
        len(sample),
        len(sample),
        0,
        1,
    )
    assert counts["synced"] == counts["written"] == len(sample)
    stats = intercom_sandbox.stats()
    # Each location is one company, written once whatever the number of its users.
    assert stats["succeeded_by_operation"]["createOrUpdateCompany"] == len(locations)
    assert stats["calls_by_operation"].get("ListContacts", 0) == 0  # the walk is the platform's
    assert sorted(c["company_id"] for c in intercom_sandbox.companies()) == sorted(locations)
    contacts = {c["external_id"]: c for c in intercom_sandbox.contacts() if c.get("external_id")}
    assert set(contacts) == {user["user_id"] for user in sample}
    for user in sample:
        attached = [
            c["company_id"] for c in intercom_sandbox.contact_companies(contacts[user["user_id"]]["id"])
        ]
        assert sorted(attached) == sorted(loc["id"] for loc in user["locations"]), user["user_id"]

    before = stats["calls_by_operation"]
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    second = requests.post(
        f"{web_app.url}/v1/admin/resync", json={"integration": USERS}, headers=auth, timeout=10
    )
    assert second.status_code == 202, second.text
    again = finished(store, second.json()["run_id"])
    assert (again.counts["unchanged"], again.counts["written"], again.counts["failed"]) == (len(sample), 0, 0)
    after = intercom_sandbox.stats()["calls_by_operation"]
    made = {op: n - before.get(op, 0) for op, n in after.items()}
    assert writes(made) == {}  # not one Intercom write
    assert sum(made.values()) == 0  # nor any other call: the per-user and per-company state says so
    summary = requests.get(
        f"{web_app.url}/v1/admin/resync/latest?integration={USERS}", headers=auth, timeout=10
    )
    assert summary.json()["id"] == again.id and summary.json()["integration"] == USERS
