"""enqueue_sync on a real Redis: one atomic script, the message exactly as send_task makes it, run by a real worker."""

from __future__ import annotations

import base64
import gc
import json
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_lib

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE, SYNC_TASK, create_celery
from sync_worker.config import Settings
from sync_worker.devtools.devstack import seed_intercom_contacts
from sync_worker.devtools.localredis import LocalRedis, wait_until
from sync_worker.dispatch import QueueUnavailable, SyncRequest, claim, enqueue_sync
from sync_worker.taskmessage import task_messages

pytestmark = pytest.mark.integration

EMAIL = "olivia.brandt@example.com"


@pytest.fixture
def celery_app(redis_url: str):
    return create_celery(Settings(REDIS_URL=redis_url))


def _envelope(raw: str | bytes) -> dict[str, Any]:
    return json.loads(raw)


def _kwargs(envelope: dict[str, Any]) -> dict[str, Any]:
    _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return kwargs


def test_the_built_message_is_what_send_task_pushes(redis_client: redis_lib.Redis, celery_app) -> None:
    kwargs = SyncRequest(contact_id="c1", email=EMAIL, trigger="webhook").to_kwargs()
    celery_app.send_task(
        SYNC_TASK, kwargs=kwargs, task_id="task-1", queue=REALTIME_QUEUE, argsrepr="()", kwargsrepr="{}"
    )
    [sent] = redis_client.lrange(REALTIME_QUEUE, 0, -1)
    built = task_messages(celery_app).build(SYNC_TASK, kwargs=kwargs, task_id="task-1", queue=REALTIME_QUEUE)

    assert built.list_key == REALTIME_QUEUE
    expected, ours = _envelope(sent), _envelope(built.payload)
    for envelope in (expected, ours):
        envelope["properties"].pop("delivery_tag")  # a fresh uuid per publish
        # send_task also copies these two options into the properties; the worker reads the headers.
        envelope["properties"].pop("argsrepr", None)
        envelope["properties"].pop("kwargsrepr", None)
    assert ours == expected


def test_a_message_with_an_eta_is_what_send_task_pushes_with_it(redis_client, celery_app) -> None:
    kwargs = SyncRequest(contact_id="c1", email=EMAIL, trigger="stale_refresh").to_kwargs()
    eta = datetime.now(UTC) + timedelta(seconds=30)
    celery_app.send_task(
        SYNC_TASK, kwargs=kwargs, task_id="task-2", queue=REALTIME_QUEUE, eta=eta, kwargsrepr="{}"
    )
    [sent] = redis_client.lrange(REALTIME_QUEUE, 0, -1)
    built = task_messages(celery_app).build(
        SYNC_TASK, kwargs=kwargs, task_id="task-2", queue=REALTIME_QUEUE, eta=eta
    )

    expected, ours = _envelope(sent), _envelope(built.payload)
    for envelope in (expected, ours):
        envelope["properties"].pop("delivery_tag")
        envelope["properties"].pop("argsrepr", None)
        envelope["properties"].pop("kwargsrepr", None)
    assert ours["headers"]["eta"] == eta.isoformat()
    assert ours == expected


def test_a_bulk_message_goes_on_the_bulk_list(celery_app) -> None:
    built = task_messages(celery_app).build(
        SYNC_TASK, kwargs={"contact_id": "c1"}, task_id="t", queue=BULK_QUEUE
    )
    assert built.list_key == BULK_QUEUE
    assert _envelope(built.payload)["properties"]["delivery_info"]["routing_key"] == BULK_QUEUE


def test_one_call_stores_marker_payload_and_message_together(redis_client, celery_app) -> None:
    request = SyncRequest(contact_id="c7", email=EMAIL, trigger="webhook")
    result = enqueue_sync(request, redis_client, celery_app)

    assert result.status == "queued"
    assert redis_client.get(keys.pending(request.contact_key)) == result.task_id
    assert json.loads(redis_client.get(keys.pending_payload(request.contact_key)))["email"] == EMAIL
    [raw] = redis_client.lrange(REALTIME_QUEUE, 0, -1)
    message = _envelope(raw)
    assert message["headers"]["id"] == result.task_id
    assert message["headers"]["task"] == SYNC_TASK
    assert _kwargs(message) == request.to_kwargs()
    # Celery's task events and logs show these two: no email in them.
    assert EMAIL not in message["headers"]["kwargsrepr"]
    assert "c7" in message["headers"]["kwargsrepr"]
    assert message["headers"]["argsrepr"] == "()"


def test_a_second_trigger_folds_into_the_waiting_sync_and_claim_reads_it(redis_client, celery_app) -> None:
    first = enqueue_sync(SyncRequest(contact_id="c8", trigger="webhook"), redis_client, celery_app)
    second = enqueue_sync(
        SyncRequest(contact_id="c8", email=EMAIL, trigger="manual"), redis_client, celery_app
    )
    assert (first.status, second.status) == ("queued", "folded")
    assert second.task_id == first.task_id
    assert redis_client.llen(REALTIME_QUEUE) == 1
    latest = claim(redis_client, SyncRequest(contact_id="c8", trigger="webhook"))
    assert (latest.email, latest.trigger) == (EMAIL, "manual")
    third = enqueue_sync(SyncRequest(contact_id="c8", trigger="webhook"), redis_client, celery_app)
    assert third.status == "queued"  # claimed: a trigger during the run queues one more
    assert redis_client.llen(REALTIME_QUEUE) == 2


def test_an_idempotency_key_is_set_only_with_the_stored_trigger(redis_client, celery_app) -> None:
    key = "intercom-sync:test-once:n1"
    request = SyncRequest(contact_id="c9", trigger="webhook")
    first = enqueue_sync(request, redis_client, celery_app, idempotency_key=key, idempotency_ttl=60)
    payload = redis_client.get(keys.pending_payload(request.contact_key))
    again = enqueue_sync(
        SyncRequest(contact_id="c9", email=EMAIL, trigger="webhook"),
        redis_client,
        celery_app,
        idempotency_key=key,
        idempotency_ttl=60,
    )
    assert first.status == "queued"
    assert (again.status, again.task_id) == ("duplicate", None)
    assert redis_client.get(keys.pending_payload(request.contact_key)) == payload  # nothing written
    assert 0 < redis_client.ttl(key) <= 60
    assert redis_client.llen(REALTIME_QUEUE) == 1


def test_a_failed_push_stores_nothing_so_a_retry_is_queued(redis_client, celery_app) -> None:
    redis_client.set(REALTIME_QUEUE, "not a list")  # LPUSH will fail inside the script
    request = SyncRequest(contact_id="c10", trigger="webhook")
    with pytest.raises(QueueUnavailable):
        enqueue_sync(request, redis_client, celery_app, idempotency_key="intercom-sync:test-once:n2")
    assert (
        redis_client.exists(keys.pending(request.contact_key), keys.pending_payload(request.contact_key)) == 0
    )
    assert redis_client.exists("intercom-sync:test-once:n2") == 0

    redis_client.delete(REALTIME_QUEUE)
    retried = enqueue_sync(request, redis_client, celery_app, idempotency_key="intercom-sync:test-once:n2")
    assert retried.status == "queued"  # not folded into a marker without a message
    assert redis_client.llen(REALTIME_QUEUE) == 1


def test_concurrent_triggers_leave_exactly_one_message_per_marker(redis_client, celery_app) -> None:
    contacts = [f"cc{i}" for i in range(5)]
    results: list[Any] = []

    def send(offset: int) -> None:
        for n in range(40):
            request = SyncRequest(contact_id=contacts[(n + offset) % len(contacts)], trigger="webhook")
            results.append(enqueue_sync(request, redis_client, celery_app))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    messages = {
        _envelope(raw)["headers"]["id"]: _kwargs(_envelope(raw))["contact_id"]
        for raw in redis_client.lrange(REALTIME_QUEUE, 0, -1)
    }
    assert sorted(messages.values()) == sorted(contacts)
    for contact in contacts:
        assert messages[redis_client.get(keys.pending(keys.contact_key(contact, None)))] == contact
    assert all(r.task_id in messages for r in results)
    assert sum(r.status == "queued" for r in results) == len(contacts)


#: Intercom drops a webhook delivery after 5 s, and the receiver must answer 503 before that so the
#: delivery is retried: a refusal has to come well within it. A correctness bound, not a speed target.
REFUSAL_BOUND_SECONDS = 2.0


def test_redis_unreachable_is_queue_unavailable() -> None:
    server = LocalRedis(persistent=False).start()
    try:
        app = create_celery(Settings(REDIS_URL=server.url))
        client = redis_lib.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        server.stop()
        for _ in range(2):  # the first trigger after start, and every one after it while Redis is down
            started = time.monotonic()
            with pytest.raises(QueueUnavailable):
                enqueue_sync(SyncRequest(contact_id="c11"), client, app)
            assert time.monotonic() - started < REFUSAL_BOUND_SECONDS
    finally:
        server.cleanup()


def _clients_named(redis_client: redis_lib.Redis, name: str) -> int:
    return sum(entry.get("name") == name for entry in redis_client.client_list())


def test_a_builder_and_its_connection_go_with_their_app(redis_url: str, redis_client) -> None:
    app = create_celery(Settings(REDIS_URL=redis_url))
    name = "taskmessage-gc-test"
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "client_name": name}
    builder = weakref.ref(task_messages(app))
    builder().build(SYNC_TASK, kwargs={"contact_id": "c1"}, task_id="t", queue=REALTIME_QUEUE)
    assert _clients_named(redis_client, name) == 1  # the builder's channel

    create_celery(Settings(REDIS_URL=redis_url)).set_current()  # Celery holds the current app strongly
    del app
    gc.collect()

    assert builder() is None
    wait_until(
        lambda: _clients_named(redis_client, name) == 0, 5, message="the builder's connection to close"
    )


def test_a_worker_runs_the_pushed_message_with_the_folded_details(
    intercom_sandbox, platform_sandbox, service_env, workers
) -> None:
    contact_id = next(c["id"] for c in seed_intercom_contacts(intercom_sandbox.url) if c["email"] == EMAIL)
    client = redis_lib.Redis.from_url(service_env["REDIS_URL"], decode_responses=True)
    app = create_celery(Settings(**service_env))
    try:
        first = enqueue_sync(SyncRequest(contact_id=contact_id, trigger="webhook"), client, app)
        folded = enqueue_sync(SyncRequest(contact_id=contact_id, email=EMAIL, trigger="manual"), client, app)
        assert (first.status, folded.status) == ("queued", "folded")
        workers.start(1)

        def done() -> dict[str, Any] | None:
            raw = client.get(keys.last_result(keys.contact_key(contact_id, None)))
            return json.loads(raw) if raw else None

        wait_until(done, 30, message="the worker to run the pushed message")
        assert done()["outcomes"][0]["trigger"] == "manual"  # the folded trigger's details ran
        attributes = intercom_sandbox.contact(contact_id)["custom_attributes"]
        assert attributes["Client ID"] == "131451"
        assert attributes["Data Status"] == "Live"
        assert client.llen(REALTIME_QUEUE) == 0
        assert not client.exists(keys.pending(keys.contact_key(contact_id, None)))
    finally:
        client.close()
