"""``sync-worker dead-letters`` as an operator runs it: a real process against the test Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

from sync_worker.celery_app import REALTIME_QUEUE
from sync_worker.deadletter import DeadLetterStore
from tests.fixtures.web import decode_message
from tests.fixtures.workers import bulk_worker

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "sync-worker"


def run(redis_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [str(SCRIPT), "dead-letters", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def park(store: DeadLetterStore, contact_id: str, email: str, code: str = "platform_data_invalid") -> None:
    store.park(
        contact_id=contact_id,
        email=email,
        error_code=code,
        error_message="platform record could not be read: KeyError: 'status'",
        trigger="webhook",
        kwargs={"contact_id": contact_id, "email": email, "trigger": "webhook"},
    )


@pytest.fixture
def store(redis_url: str) -> DeadLetterStore:
    return DeadLetterStore(redis_lib.Redis.from_url(redis_url))


def queued(redis_url: str) -> list[dict]:
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return [decode_message(raw) for raw in reversed(client.lrange(REALTIME_QUEUE, 0, -1))]
    finally:
        client.close()


def test_list_and_show_name_the_error_without_listing_emails(redis_url, store):
    park(store, "c-1", "first.person@example.com")
    park(store, "c-2", "second.person@example.com", code="invalid_attribute")
    park(store, "c-2", "second.person@example.com", code="invalid_attribute")

    listed = run(redis_url, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1].split()[:2] == ["id:c-2", "2"]  # newest failure first, two attempts
    assert lines[1].split()[-1] == "invalid_attribute"
    assert lines[2].split()[:2] == ["id:c-1", "1"]
    assert "2 shown of 2" in listed.stdout
    assert "example.com" not in listed.stdout

    as_json = [json.loads(line) for line in run(redis_url, "list", "--json").stdout.splitlines()]
    assert [entry["id"] for entry in as_json] == ["id:c-2", "id:c-1"]

    shown = run(redis_url, "show", "id:c-1")
    assert shown.returncode == 0, shown.stderr
    assert "first.person@example.com" in shown.stdout  # show is for the operator: what a replay uses
    assert "KeyError: 'status'" in shown.stdout

    unknown = run(redis_url, "show", "id:nobody")
    assert unknown.returncode == 1
    assert "no dead letter id:nobody" in unknown.stderr


def test_retry_one_queues_a_replay_and_removes_the_entry(redis_url, store):
    park(store, "c-1", "first.person@example.com")
    park(store, "c-2", "second.person@example.com")

    retried = run(redis_url, "retry", "id:c-1")
    assert retried.returncode == 0, retried.stderr
    [message] = queued(redis_url)
    assert message["kwargs"]["contact_id"] == "c-1"
    assert message["kwargs"]["trigger"] == "replay"
    assert [entry.id for entry in store.list()] == ["id:c-2"]

    assert run(redis_url, "retry").returncode == 2  # neither an id nor --all: a usage error
    assert run(redis_url, "retry", "id:gone").returncode == 1


def test_retry_all_starts_a_replay_run_that_replays_shows_and_a_worker_carries_out(
    redis_url, store, tmp_path
):
    for n in range(3):
        park(store, f"c-{n}", f"person{n}@example.com")
    started = run(redis_url, "retry", "--all")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("replay run ") and started.stdout.endswith(" queued: 3 parked\n")
    run_id = started.stdout.split()[2]
    assert queued(redis_url) == [] and store.count() == 3  # nothing replayed by the command itself
    status = run(redis_url, "replays", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["id"], report["status"], report["total"], report["done"]) == (run_id, "queued", 3, 0)
    assert run(redis_url, "replays", "nope").returncode == 1

    worker = bulk_worker(redis_url, tmp_path / "bulk.log")
    try:
        park(store, "c-3", "person3@example.com")
        waited = run(redis_url, "retry", "--all", "--wait")  # the first run's step runs first
    finally:
        worker.stop()
    assert waited.returncode == 0, waited.stderr
    assert "finished: replayed 1 of 1, 0 failed" in waited.stdout
    assert sorted(m["kwargs"]["contact_id"] for m in queued(redis_url)) == ["c-0", "c-1", "c-2", "c-3"]
    assert store.count() == 0
    shown = run(redis_url, "replays", run_id)
    assert f"replay run {run_id} finished: replayed 3 of 3, 0 failed" in shown.stdout


def test_purge_asks_first(redis_url, store):
    park(store, "c-1", "first.person@example.com")
    refused = run(redis_url, "purge", stdin="n\n")
    assert refused.returncode == 1
    assert store.count() == 1
    purged = run(redis_url, "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1" in purged.stdout
    assert store.count() == 0
    assert queued(redis_url) == []  # purged entries are not replayed


def test_an_unreachable_redis_is_one_line_not_a_hang(redis_url):
    unreachable = run("redis://127.0.0.1:1/0", "list")
    assert unreachable.returncode != 0
    assert "Traceback" not in unreachable.stderr, unreachable.stderr
    assert "Redis (REDIS_URL) cannot be reached" in unreachable.stderr
