"""The web metrics buffer: counts written in the background, none lost while Redis is away."""

from __future__ import annotations

import threading

import pytest
import redis as redis_lib

from sync_worker.devtools.localredis import LocalRedis, wait_until
from web.metrics import RedisMetrics

pytestmark = pytest.mark.integration

QUEUED = "intercom-sync:web-metrics:queued"


def test_counts_reach_redis_by_themselves_and_survive_an_outage() -> None:
    server = LocalRedis(persistent=False).start()
    client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5)
    try:
        metrics = RedisMetrics(client, flush_interval=0.05)
        metrics.record([("queued", '{"source":"webhook"}')], route="/webhooks/intercom", seconds=0.004)
        wait_until(lambda: client.hgetall(QUEUED) == {'{"source":"webhook"}': "1"}, 5, message="first flush")

        server.stop()
        for _ in range(3):  # answered while Redis is away: buffered, the request never waits on it
            metrics.record([("queued", '{"source":"webhook"}')], route="/webhooks/intercom", seconds=0.002)
        assert metrics.flush() is False
        server.start()  # empty again (no persistence): what it holds now is what the buffer kept

        wait_until(
            lambda: client.hgetall(QUEUED) == {'{"source":"webhook"}': "3"}, 10, message="the kept counts"
        )
        snapshot = metrics.snapshot()
        assert snapshot.counts == {'{"route":"/webhooks/intercom"}': 3.0}
        assert snapshot.sums['{"route":"/webhooks/intercom"}'] == pytest.approx(0.006)
        assert snapshot.buckets == {'{"le":"0.005","route":"/webhooks/intercom"}': 3.0}
        metrics.close()
    finally:
        client.close()
        server.cleanup()


def test_close_stops_the_flusher_and_writes_what_the_buffer_holds() -> None:
    server = LocalRedis(persistent=False).start()
    client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5)
    try:
        metrics = RedisMetrics(client, flush_interval=3600)  # the flusher would not write in this test
        before = set(threading.enumerate())
        metrics.record([("queued", '{"source":"manual"}')], route="/v1/sync", seconds=0.003)
        [flusher] = [
            thread for thread in set(threading.enumerate()) - before if thread.name == "metrics-flusher"
        ]

        metrics.close()

        assert not flusher.is_alive()
        assert client.hgetall(QUEUED) == {'{"source":"manual"}': "1"}
    finally:
        client.close()
        server.cleanup()
