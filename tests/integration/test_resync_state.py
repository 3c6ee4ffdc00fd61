"""The re-sync's state in a real Redis: lock, run record, chunks in flight, starter, progress; one lock
and one active run per integration (the clients' keys keep their names)."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib

from sync_worker.celery_app import BULK_QUEUE, create_celery
from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from sync_worker.resync import keys
from sync_worker.resync.lock import RunLock
from sync_worker.resync.messages import CHUNK_TASK, WALK_TASK
from sync_worker.resync.progress import progress_line, summarize
from sync_worker.resync.runs import CANCELLED, FINISHED, RUNNING, Chunk, RunOptions, RunStore, split_evenly
from sync_worker.resync.settings import ResyncSettings
from sync_worker.resync.starter import resume_if_stalled, start
from sync_worker.resync.walk import plan_page

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url):
    connection = redis_lib.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def store(client) -> RunStore:
    return RunStore(client, lock_ttl_seconds=30, keep_seconds=3600, keep_runs=5)


@pytest.fixture
def celery_app(redis_url):
    return create_celery(Settings(REDIS_URL=redis_url))


def queued(client: redis_lib.Redis) -> list[dict]:
    """Messages on the bulk queue, oldest first: ``{"task", "kwargs"}``."""
    out = []
    for raw in reversed(client.lrange(BULK_QUEUE, 0, -1)):
        envelope = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        out.append({"task": envelope["headers"]["task"], "kwargs": kwargs})
    return out


def chunk_of(n: int, start: int = 0) -> Chunk:
    return Chunk(tuple((f"c{i}", f"client{i}@example.com") for i in range(start, start + n)))


# --- lock ---------------------------------------------------------------------------------------


def test_only_one_of_many_concurrent_callers_gets_the_lock(client):
    lock = RunLock(client, keys.lock(), ttl_seconds=30)
    with ThreadPoolExecutor(16) as pool:
        won = list(pool.map(lambda n: lock.acquire(f"owner-{n}"), range(64)))
    assert won.count(True) == 1
    assert lock.holder() == f"owner-{won.index(True)}"


def test_only_the_owner_refreshes_hands_over_or_releases(client):
    lock = RunLock(client, keys.lock(), ttl_seconds=30)
    assert lock.acquire("a")
    assert not lock.refresh("b") and not lock.release("b") and not lock.hand_over("b", "c")
    assert lock.hand_over("a", "run-1") and lock.holder() == "run-1"
    assert lock.refresh("run-1")
    assert lock.release("run-1") and lock.holder() is None


def test_the_lock_expires_and_a_refresh_retakes_a_free_lock(client):
    lock = RunLock(client, keys.lock(), ttl_seconds=0.2)
    assert lock.acquire("a") and not lock.acquire("b")
    wait_until(lambda: lock.holder() is None, 5, message="lock expiry")
    assert lock.refresh("a") and lock.holder() == "a"
    assert 0 < client.pttl(keys.lock()) <= 200


# --- run record -----------------------------------------------------------------------------------


def test_commit_page_advances_once_and_ignores_duplicates_and_old_generations(store):
    store.create("r1", RunOptions())
    chunks = [("0.0", chunk_of(75)), ("0.1", chunk_of(75, 75))]
    counts = {"seen": 151, "skipped": 1, "no_email": 1, "queued": 150, "pages": 1}
    assert store.commit_page("r1", gen=0, page=0, next_cursor="c1", counts=counts, chunks=chunks) == (
        True,
        False,
    )
    assert store.commit_page("r1", gen=0, page=0, next_cursor="c1", counts=counts, chunks=chunks) == (
        False,
        False,
    )
    assert store.commit_page("r1", gen=1, page=1, next_cursor="c2", counts=counts, chunks=[]) == (
        False,
        False,
    )
    record = store.load("r1")
    assert (record.page, record.cursor, record.walk_done, record.in_flight) == (1, "c1", False, 2)
    assert record.counts["seen"] == 151 and record.counts["queued"] == 150 and record.counts["pages"] == 1


def test_record_chunk_counts_each_version_once_and_finishes_the_run(store, client):
    store.create("r1", RunOptions())
    RunLock(client, keys.lock(), ttl_seconds=30).acquire("r1")
    whole = chunk_of(10)
    store.commit_page("r1", gen=0, page=0, next_cursor=None, counts={"queued": 10}, chunks=[("0.0", whole)])
    rest = whole.rest(4)
    assert store.record_chunk("r1", "0.0", 0, {"written": 4}, rest) == (True, False)
    assert store.record_chunk("r1", "0.0", 0, {"written": 4}, rest) == (False, False)  # same version again
    assert store.chunk("r1", "0.0") == rest and rest.version == 1 and len(rest.contacts) == 6
    assert store.record_chunk("r1", "0.0", 1, {"unchanged": 6}, None) == (True, True)
    record = store.load("r1")
    assert record.status == FINISHED and record.finished_at is not None and record.in_flight == 0
    assert (record.counts["written"], record.counts["unchanged"]) == (4, 6)
    assert client.get(keys.lock()) is None and client.get(keys.active()) is None
    assert 0 < client.ttl(keys.run("r1")) <= 3600
    assert store.record_chunk("r1", "0.0", 1, {"unchanged": 6}, None) == (False, False)


def test_a_last_page_with_nothing_to_queue_finishes_the_run(store):
    store.create("r1", RunOptions())
    committed, finished = store.commit_page(
        "r1", gen=0, page=0, next_cursor=None, counts={"seen": 3, "skipped": 3}, chunks=[]
    )
    assert committed and finished and store.load("r1").status == FINISHED


def test_resume_bumps_the_generation_and_returns_the_checkpoint_and_pending_chunks(store):
    store.create("r1", RunOptions())
    store.commit_page("r1", gen=0, page=0, next_cursor="cur-1", counts={}, chunks=[("0.0", chunk_of(3))])
    store.record_chunk("r1", "0.0", 0, {"written": 1}, chunk_of(3).rest(1))
    resumed = store.resume("r1")
    assert (resumed.gen, resumed.page, resumed.cursor, resumed.walk_done) == (1, 1, "cur-1", False)
    assert resumed.pending == {"0.0": 1}
    assert store.commit_page("r1", gen=0, page=1, next_cursor=None, counts={}, chunks=[]) == (False, False)
    assert store.load("r1").resumed == 1


def test_ending_a_run_drops_its_chunks_and_later_chunk_work_counts_nothing(store):
    store.create("r1", RunOptions())
    store.commit_page("r1", gen=0, page=0, next_cursor="c", counts={}, chunks=[("0.0", chunk_of(3))])
    assert store.end("r1", CANCELLED, "by operator")
    assert store.record_chunk("r1", "0.0", 0, {"written": 3}, None) == (False, False)
    record = store.load("r1")
    assert record.status == CANCELLED and record.counts["written"] == 0 and record.in_flight == 0
    assert not store.end("r1", CANCELLED)


def test_only_the_most_recent_runs_are_kept(store):
    for n in range(8):
        store.create(f"r{n}", RunOptions())
        store.end(f"r{n}", CANCELLED)
    assert [r.id for r in store.recent(20)] == ["r7", "r6", "r5", "r4", "r3"]


# --- pure pieces ----------------------------------------------------------------------------------


def test_split_evenly_makes_the_fewest_groups_of_near_equal_size():
    assert [len(g) for g in split_evenly(list(range(150)), 100)] == [75, 75]
    assert [len(g) for g in split_evenly(list(range(101)), 100)] == [51, 50]
    assert split_evenly([], 100) == []
    assert [x for group in split_evenly(list(range(250)), 100) for x in group] == list(range(250))


def test_plan_page_skips_contacts_without_email_and_screened_addresses():
    contacts = [
        {"id": "1", "email": "a@example.com"},
        {"id": "2", "email": None},
        {"id": "3"},
        {"id": "4", "email": "Support@Example.com"},
        {"id": "5", "email": "not an email"},
        {"id": "6", "email": " b@example.com "},
    ]
    pairs, counts = plan_page(contacts, ["support@example.com"])
    assert pairs == [("1", "a@example.com"), ("6", "b@example.com")]
    assert counts == {"seen": 6, "skipped": 4, "no_email": 2, "queued": 2}


def test_summary_rate_eta_and_line(store):
    store.create("r1", RunOptions(dry_run=True), total_estimate=1000)
    store.commit_page("r1", gen=0, page=0, next_cursor="c", counts={"seen": 150, "queued": 150}, chunks=[])
    record = store.load("r1")
    record.counts.update(written=20, unchanged=180, skipped=0)  # as if chunks had been recorded
    summary = summarize(record, now=record.started_at + 10)
    assert summary["done"] == 200 and summary["rate_per_second"] == 20.0
    assert summary["eta_seconds"] == 40.0 and summary["fraction"] == 0.2
    line = progress_line(summary)
    assert line.startswith("[#####") and " 20%" in line and "would write 20" in line and "ETA 0:40" in line
    unknown = summarize(
        record.__class__(**{**record.__dict__, "total_estimate": None}), now=record.started_at
    )
    assert unknown["eta_seconds"] is None and unknown["fraction"] is None


# --- starter --------------------------------------------------------------------------------------


def settings(**overrides) -> ResyncSettings:
    return ResyncSettings(**{"SYNC_RESYNC_LOCK_TTL_SECONDS": 30, **overrides})


def test_start_creates_one_run_and_publishes_its_first_walk(client, celery_app, store):
    result = start(client, celery_app, RunOptions(trigger="manual"), settings())
    assert result.status == "started"
    assert client.get(keys.lock()).decode() == result.run_id == store.active_id()
    assert queued(client) == [
        {"task": WALK_TASK, "kwargs": {"run_id": result.run_id, "gen": 0, "page": 0, "attempt": 0}}
    ]
    again = start(client, celery_app, RunOptions(trigger="manual"), settings())
    assert (again.status, again.run_id) == ("already_running", result.run_id)
    assert len(queued(client)) == 1


def test_concurrent_starters_start_exactly_one_run(client, celery_app, store):
    with ThreadPoolExecutor(12) as pool:
        results = list(
            pool.map(
                lambda _: start(client, celery_app, RunOptions(trigger="schedule"), settings()), range(24)
            )
        )
    started = [r for r in results if r.status == "started"]
    assert len(started) == 1
    assert {r.run_id for r in results} == {started[0].run_id}
    assert len(store.recent(50)) == 1 and len(queued(client)) == 1


def test_a_scheduled_start_soon_after_another_run_is_skipped_but_a_manual_one_is_not(
    client, celery_app, store
):
    first = start(client, celery_app, RunOptions(trigger="schedule"), settings())
    store.end(first.run_id, CANCELLED)
    skipped = start(client, celery_app, RunOptions(trigger="schedule"), settings())
    assert skipped.status == "skipped" and client.get(keys.lock()) is None
    manual = start(client, celery_app, RunOptions(trigger="manual"), settings())
    assert manual.status == "started" and manual.run_id != first.run_id


def test_an_unfinished_run_whose_lock_expired_is_resumed_not_replaced(client, celery_app, store):
    first = start(
        client, celery_app, RunOptions(trigger="manual"), settings(SYNC_RESYNC_LOCK_TTL_SECONDS=0.2)
    )
    store.commit_page(
        first.run_id, gen=0, page=0, next_cursor="cur-1", counts={"queued": 5}, chunks=[("0.0", chunk_of(5))]
    )
    client.delete(BULK_QUEUE)
    assert resume_if_stalled(client, celery_app, settings()) is None  # lock still alive
    client.pexpire(keys.lock(), 100)  # the commit refreshed it for the store's ttl: let it run out now
    wait_until(lambda: client.get(keys.lock()) is None, 5, message="lock expiry")
    result = start(client, celery_app, RunOptions(trigger="manual"), settings())
    assert (result.status, result.run_id) == ("resumed", first.run_id)
    assert client.get(keys.lock()).decode() == first.run_id
    assert queued(client) == [
        {"task": WALK_TASK, "kwargs": {"run_id": first.run_id, "gen": 1, "page": 1, "attempt": 0}},
        {"task": CHUNK_TASK, "kwargs": {"run_id": first.run_id, "chunk_id": "0.0", "version": 0}},
    ]
    assert store.load(first.run_id).status == RUNNING and len(store.recent(50)) == 1


def test_the_watchdog_resumes_only_a_stalled_run(client, celery_app, store):
    first = start(
        client, celery_app, RunOptions(trigger="manual"), settings(SYNC_RESYNC_LOCK_TTL_SECONDS=0.2)
    )
    client.delete(BULK_QUEUE)
    wait_until(lambda: client.get(keys.lock()) is None, 5, message="lock expiry")
    resumed = resume_if_stalled(client, celery_app, settings())
    assert resumed is not None and resumed.run_id == first.run_id
    assert [m["kwargs"]["gen"] for m in queued(client)] == [1]
    assert resume_if_stalled(client, celery_app, settings()) is None  # the lock is held again


# --- per integration: one lock and one active run each ------------------------------------------

USERS = "dealer_users"


def test_the_clients_keys_keep_their_names_and_another_integration_has_its_own():
    assert keys.lock() == keys.lock("clients") == "intercom-sync:resync:lock"
    assert keys.active() == keys.active("clients") == "intercom-sync:resync:active"
    assert keys.lock(USERS) == "intercom-sync:resync:lock:dealer_users"
    assert keys.active(USERS) == "intercom-sync:resync:active:dealer_users"


def test_runs_of_two_integrations_start_side_by_side_each_one_at_a_time(client, celery_app, store):
    clients = start(client, celery_app, RunOptions(), settings())
    users = start(client, celery_app, RunOptions(integration=USERS), settings())
    assert clients.status == users.status == "started" and clients.run_id != users.run_id
    assert client.get(keys.lock()).decode() == clients.run_id == store.active_id()
    assert client.get(keys.lock(USERS)).decode() == users.run_id == store.active_id(USERS)
    again = start(client, celery_app, RunOptions(integration=USERS), settings())
    assert (again.status, again.run_id) == ("already_running", users.run_id)
    assert USERS in again.reason
    assert start(client, celery_app, RunOptions(), settings()).run_id == clients.run_id
    assert store.load(users.run_id).integration == USERS
    walks = [m["kwargs"]["run_id"] for m in queued(client) if m["task"] == WALK_TASK]
    assert walks == [clients.run_id, users.run_id]  # one first walk each


def test_a_run_ending_releases_only_its_own_integrations_lock(client, celery_app, store):
    clients = start(client, celery_app, RunOptions(), settings()).run_id
    users = start(client, celery_app, RunOptions(integration=USERS), settings()).run_id
    records = [{"user_id": "u1", "email": "a@example.com"}, {"user_id": "u2", "email": None}]
    assert store.commit_page(
        users, gen=0, page=0, next_cursor=None, counts={"queued": 2}, chunks=[("0.0", Chunk(tuple(records)))]
    ) == (True, False)
    assert store.chunk(users, "0.0").contacts == tuple(records)  # whole records round-trip
    assert store.record_chunk(users, "0.0", 0, {"unchanged": 2}, None) == (True, True)
    assert store.load(users).status == FINISHED
    assert client.get(keys.lock(USERS)) is None and client.get(keys.active(USERS)) is None
    assert client.get(keys.lock()).decode() == clients == store.active_id()
    assert store.load(clients).status == RUNNING
    assert start(client, celery_app, RunOptions(integration=USERS), settings()).status == "started"


def test_a_scheduled_start_is_skipped_only_after_a_recent_run_of_the_same_integration(
    client, celery_app, store
):
    first = start(client, celery_app, RunOptions(trigger="schedule"), settings()).run_id
    store.end(first, "cancelled")
    assert start(client, celery_app, RunOptions(trigger="schedule"), settings()).status == "skipped"
    users = start(client, celery_app, RunOptions(trigger="schedule", integration=USERS), settings())
    assert users.status == "started"


def test_the_watchdog_resumes_each_integrations_stalled_run_on_its_own(client, celery_app, store):
    clients = start(client, celery_app, RunOptions(), settings()).run_id
    users = start(client, celery_app, RunOptions(integration=USERS), settings()).run_id
    client.pexpire(keys.lock(USERS), 50)
    wait_until(lambda: client.get(keys.lock(USERS)) is None, 5, message="the users' lock to expire")
    assert resume_if_stalled(client, celery_app, settings()) is None  # the clients' run is alive
    resumed = resume_if_stalled(client, celery_app, settings(), USERS)
    assert resumed is not None and resumed.run_id == users
    assert client.get(keys.lock(USERS)).decode() == users and store.load(users).gen == 1
    assert store.load(clients).gen == 0


def test_trimming_old_runs_never_drops_a_running_one(client, celery_app, store):
    users = start(client, celery_app, RunOptions(integration=USERS), settings()).run_id
    for n in range(6):  # keep_runs is 5: the users' run is the oldest
        store.create(f"c{n}", RunOptions())
        store.end(f"c{n}", "cancelled")
    assert store.load(users) is not None and store.load(users).status == RUNNING
    assert store.latest(USERS).id == users and store.latest().id == "c5"
    assert [r.id for r in store.recent(10, integration=USERS)] == [users]
