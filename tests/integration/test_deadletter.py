"""The dead-letter store on a real Redis: parking, re-parking, listing, removing, replaying."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis as redis_lib

from sync_worker.deadletter import MAX_MESSAGE_CHARS, DeadLetterStore
from sync_worker.replayruns import FINISHED, ReplayRuns, run_step

pytestmark = pytest.mark.integration


@pytest.fixture(params=["text", "bytes"])
def store(request, redis_url) -> DeadLetterStore:
    """The store over a client that decodes responses (tests) and one that does not (the worker's)."""
    client = redis_lib.Redis.from_url(redis_url, decode_responses=request.param == "text")
    yield DeadLetterStore(client)
    client.close()


def park(
    store: DeadLetterStore, contact_id: str | None = "c1", email: str | None = "Ann@Example.com", **extra
):
    fields = {
        "error_code": "platform_unavailable",
        "error_message": "the platform stayed unavailable",
        "trigger": "webhook",
        "kwargs": {"contact_id": contact_id, "email": email, "trigger": "webhook"},
    }
    fields.update(extra)
    return store.park(contact_id=contact_id, email=email, **fields)


def redis_now(client: redis_lib.Redis) -> datetime:
    seconds, micros = client.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def test_key_is_the_contact_id_else_the_normalised_email():
    assert DeadLetterStore.key_for("6650a1", "ann@example.com") == "id:6650a1"
    assert DeadLetterStore.key_for(None, "  Ann@Example.COM ") == "email:ann@example.com"
    with pytest.raises(ValueError):
        DeadLetterStore.key_for(None, None)


def test_park_stores_everything_a_replay_needs(store, redis_client):
    before = redis_now(redis_client)
    entry = park(store)
    after = redis_now(redis_client)
    assert entry.id == "id:c1"
    assert (entry.contact_id, entry.email, entry.attempts, entry.trigger) == (
        "c1",
        "Ann@Example.com",
        1,
        "webhook",
    )
    assert (entry.error_code, entry.error_message) == (
        "platform_unavailable",
        "the platform stayed unavailable",
    )
    assert before <= entry.first_failed_at == entry.last_failed_at <= after
    assert entry.kwargs == {"contact_id": "c1", "email": "Ann@Example.com", "trigger": "webhook"}
    assert store.get("id:c1") == entry
    document = json.loads(json.dumps(entry.to_dict()))
    assert document["first_failed_at"] == entry.first_failed_at.isoformat()
    assert document["kwargs"]["email"] == "Ann@Example.com"
    assert store.get("id:nobody") is None


def test_parking_the_same_contact_again_updates_its_one_entry(store):
    first = park(store, error_code="contact_not_found", error_message="not yet", trigger="manual")
    second = park(store, error_code="invalid_attribute", error_message="bad name", trigger="replay")
    assert store.count() == 1
    assert second.id == first.id
    assert second.attempts == 2
    assert second.first_failed_at == first.first_failed_at
    assert second.last_failed_at > first.last_failed_at
    assert (second.error_code, second.error_message, second.trigger) == (
        "invalid_attribute",
        "bad name",
        "replay",
    )
    assert store.get(first.id) == second


def test_attempts_add_up_the_failed_attempts_of_every_park(store):
    assert park(store, attempts=4).attempts == 4  # a first try and three retries
    assert park(store, attempts=2).attempts == 6  # a replay that failed once more, then its retry
    assert park(store, attempts=0).attempts == 7  # a park always counts at least the one attempt


def test_an_email_only_contact_is_one_entry_whatever_the_case(store):
    park(store, contact_id=None, email="Bob@Example.com")
    entry = park(store, contact_id=None, email=" bob@example.COM")
    assert entry.id == "email:bob@example.com"
    assert entry.contact_id is None
    assert entry.attempts == 2
    assert store.count() == 1


def test_a_long_error_message_is_cut(store):
    entry = park(store, error_message="x" * 5000)
    assert len(entry.error_message) == MAX_MESSAGE_CHARS


def test_list_is_newest_first_with_paging(store):
    for n in range(5):
        park(store, contact_id=f"c{n}")
    park(store, contact_id="c1")  # failing again makes it the newest
    assert store.count() == 5
    assert [e.contact_id for e in store.list()] == ["c1", "c4", "c3", "c2", "c0"]
    assert [e.contact_id for e in store.list(offset=1, limit=2)] == ["c4", "c3"]
    assert store.list(offset=5) == []
    assert store.list(limit=0) == []


def test_remove_and_purge(store):
    for n in range(3):
        park(store, contact_id=f"c{n}")
    assert store.remove("id:c1") is True
    assert store.remove("id:c1") is False
    assert store.get("id:c1") is None
    assert [e.contact_id for e in store.list()] == ["c2", "c0"]
    assert store.purge() == 2
    assert store.count() == 0
    assert store.list() == []
    assert store.purge() == 0


def test_replay_enqueues_the_stored_kwargs_then_removes_the_entry(store):
    park(store, contact_id="c1")
    enqueued: list[dict] = []
    assert store.replay("id:c1", enqueued.append) is True
    assert enqueued == [{"contact_id": "c1", "email": "Ann@Example.com", "trigger": "webhook"}]
    assert store.get("id:c1") is None
    assert store.count() == 0
    assert store.replay("id:c1", enqueued.append) is False
    assert len(enqueued) == 1


def test_a_replay_whose_enqueue_fails_leaves_the_entry(store):
    parked = park(store, contact_id="c1")

    def broken(kwargs: dict) -> None:
        raise ConnectionError("queue unavailable")

    with pytest.raises(ConnectionError):
        store.replay("id:c1", broken)
    assert store.get("id:c1") == parked
    assert store.count() == 1


def test_a_contact_parked_again_during_its_replay_stays_parked(store):
    park(store, contact_id="c1")

    def enqueue_and_fail_at_once(kwargs: dict) -> None:
        park(store, contact_id="c1", error_code="still_failing")  # the replayed run failed already

    assert store.replay("id:c1", enqueue_and_fail_at_once) is True
    entry = store.get("id:c1")
    assert entry is not None
    assert (entry.attempts, entry.error_code) == (2, "still_failing")


def test_a_replay_run_goes_in_steps_oldest_first_keeps_the_failures_and_ends(store):
    for n in range(5):
        park(store, contact_id=f"c{n}")
    runs = ReplayRuns(store._redis)
    run = runs.create(store, "test")
    park(store, contact_id="later")  # parked after the run began: not the run's
    enqueued: list[str] = []

    def enqueue(kwargs: dict) -> None:
        if kwargs["contact_id"] == "c1":
            raise ConnectionError("queue unavailable")
        enqueued.append(kwargs["contact_id"])
        if kwargs["contact_id"] == "c3":
            park(store, contact_id="c3")  # its replay failed at once: parked again, after the cutoff

    steps = []
    while True:
        after = run_step(runs, store, enqueue, run.id, len(steps), batch=2)
        assert after is not None
        steps.append((after.replayed, after.failed, after.status))
        if after.status == FINISHED:
            break
    assert steps == [(1, 1, "running"), (3, 1, "running"), (4, 1, "finished")]
    assert enqueued == ["c0", "c2", "c3", "c4"]
    assert sorted(e.contact_id for e in store.list()) == ["c1", "c3", "later"]
    assert run_step(runs, store, enqueue, run.id, 1, batch=2) is None  # a step delivered twice: no-op
    assert runs.load(run.id).total == 5 and runs.latest().id == run.id


def test_prefix_separates_stores(redis_client):
    ours = DeadLetterStore(redis_client)
    theirs = DeadLetterStore(redis_client, prefix="other-app")
    park(ours, contact_id="c1")
    assert theirs.count() == 0
    assert theirs.get("id:c1") is None
    assert all(key.startswith("intercom-sync:") for key in redis_client.keys("*"))
