"""A Redis that answers but refuses to store: the run hands its message back, never acks it as failed.

Out of memory (``maxmemory`` with ``noeviction``), a read-only replica, failing persistence
(``MISCONF``), too few replicas (``NOREPLICAS``): every write is refused while reads, and under
out-of-memory even deletes, still work. A run failing there used to fail the task, fail to park
the contact, and be acknowledged (under out-of-memory the ack, two deletes, goes through): the
contact was lost. These tests make a real redis-server refuse writes in each of those ways.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator

import pytest
import redis as redis_lib

from sync_worker import keys
from sync_worker.delivery.poison import MAX_DELIVERIES
from sync_worker.delivery.redisloss import redis_unavailable
from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until
from tests.fixtures.resilience import (
    FAST_REDELIVERY,
    FAST_VISIBILITY_SECONDS,
    assert_synced,
    dead_letters,
    is_live,
    log_events,
    platform_reads,
    trigger,
    wait_for_attributes,
)

pytestmark = pytest.mark.integration
HANDED_BACK = "sync_requeued_redis_unavailable"


# --- which replies of a real Redis count as "cannot store now" -----------------------------------


@pytest.fixture
def lone_redis() -> Iterator[LocalRedis]:
    server = LocalRedis(persistent=False).start()
    yield server
    server.cleanup()


def _out_of_memory(client: redis_lib.Redis, server: LocalRedis) -> None:
    client.config_set("maxmemory", "1")  # the default policy, noeviction, refuses what would grow


def _read_only(client: redis_lib.Redis, server: LocalRedis) -> None:
    client.replicaof("127.0.0.1", str(free_port()))  # a replica of a master that is not there


def _persistence_failing(client: redis_lib.Redis, server: LocalRedis) -> None:
    client.config_set("save", "3600 1")  # stop-writes-on-bgsave-error (default yes) needs a save point
    shutil.rmtree(server.directory)  # where the snapshot goes
    client.bgsave()
    wait_until(
        lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", 10, message="BGSAVE to fail"
    )


def _too_few_replicas(client: redis_lib.Redis, server: LocalRedis) -> None:
    client.config_set("min-replicas-to-write", "1")  # and none is connected


def _attempts(client: redis_lib.Redis) -> dict[str, Callable[[], object]]:
    """Writes as the task makes them: a command, a script, a pipeline (the delivery count)."""

    def pipeline() -> object:
        pipe = client.pipeline()
        pipe.sadd("s", "run")
        pipe.expire("s", 60)
        return pipe.execute()

    return {
        "command": lambda: client.set("k", "v"),
        "script": lambda: client.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "v"),
        "pipeline": pipeline,
    }


@pytest.mark.parametrize(
    "refuse", [_out_of_memory, _read_only, _persistence_failing, _too_few_replicas], ids=lambda f: f.__name__
)
def test_every_refused_write_is_redis_unavailable(lone_redis, refuse):
    client = redis_lib.Redis.from_url(lone_redis.url)
    client.set("k", "before")
    refuse(client, lone_redis)
    for how, write in _attempts(client).items():
        with pytest.raises(redis_lib.ResponseError) as refused:
            write()
        assert redis_unavailable(refused.value) is refused.value, (how, refused.value)
    assert client.get("k") == b"before"  # reads still work: Redis is up, and refusing


def test_an_error_in_a_script_or_a_wrong_key_type_is_not(lone_redis):
    """Those would fail the same way on every delivery: handing them back would loop for ever."""
    client = redis_lib.Redis.from_url(lone_redis.url)
    client.set("k", "a string")
    failures = {
        "unknown command": lambda: client.eval("return redis.call('NOPE')", 0),
        "syntax": lambda: client.eval("return 1 +", 0),
        "wrong type": lambda: client.eval("return redis.call('LPUSH', KEYS[1], 'x')", 1, "k"),
        "script error reply": lambda: client.eval("return redis.error_reply('bad input')", 0),
        "wrong type in a pipeline": lambda: client.pipeline().lpush("k", "x").execute(),
    }
    for what, fail in failures.items():
        with pytest.raises(redis_lib.ResponseError) as error:
            fail()
        assert redis_unavailable(error.value) is None, (what, error.value)


# --- a run that finds Redis out of memory, with real workers ---------------------------------------


def test_a_run_refused_by_redis_out_of_memory_is_handed_back_and_not_counted_as_a_worker_death(
    private_stack, intercom_sandbox, platform_sandbox, olivia, olivia_records
):
    """Redis runs out of memory mid-run, MAX_DELIVERIES times in a row: each time the message stays
    unacknowledged (the old code acked it: lost), comes back once Redis has room again, and none of
    those runs counts as a worker death (the old count parked the next delivery as ``worker_lost``)."""
    client = redis_lib.Redis.from_url(private_stack.redis.url)
    env = {**FAST_REDELIVERY, "PLATFORM_TIMEOUT_SECONDS": "6"}
    [worker] = private_stack.workers.start(1, **env)
    platform_sandbox.config(latency_ms=4_000)  # holds each run at the platform read (time to fill Redis)
    trigger(private_stack.web_url, olivia)

    for delivery in range(1, MAX_DELIVERIES + 1):
        wait_until(
            lambda d=delivery: platform_reads(platform_sandbox) >= d,
            FAST_VISIBILITY_SECONDS + 60,
            message=f"delivery {delivery} to reach the platform",
        )
        client.config_set("maxmemory", "1")  # the run's next write (the circuit's script) is refused
        wait_until(
            lambda d=delivery: len(log_events(private_stack.workers, HANDED_BACK)) >= d,
            60,
            message=f"delivery {delivery} to hand its message back",
        )
        # Returning it to the queue (a MULTI with an LPUSH) is refused too, and Celery stops the
        # worker over that: the message stays in the transport's unacked set, as for a dead worker.
        wait_until(lambda w=worker: not w.alive(), 60, message="the worker to stop")
        [raw] = client.hvals("unacked")  # not acknowledged
        task_id = json.loads(raw)[0]["headers"]["id"]  # kombu's entry: [message, exchange, routing key]
        # The run took its delivery back (SREM still works out of memory): nothing counts as a death.
        assert client.scard(keys.delivery_runs(task_id, 0)) == 0
        client.config_set("maxmemory", "0")
        [worker] = private_stack.workers.start(1, **env)  # it puts the message back after the timeout

    assert [line["error_type"] for line in log_events(private_stack.workers, HANDED_BACK)] == [
        "OutOfMemoryError"
    ] * MAX_DELIVERIES
    assert all(line["contact_id"] == olivia["id"] for line in log_events(private_stack.workers, HANDED_BACK))
    platform_sandbox.config(latency_ms=0)
    wait_for_attributes(
        intercom_sandbox, olivia["id"], is_live, FAST_VISIBILITY_SECONDS + 60, "the sync once Redis has room"
    )
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert dead_letters(private_stack.redis.url).count() == 0
    assert platform_reads(platform_sandbox) == MAX_DELIVERIES + 1
    assert len(intercom_sandbox.writes(olivia["id"])) == 1
