"""The shared count buffer across a fork: a child never writes what its parent buffered."""

from __future__ import annotations

import multiprocessing

import pytest
import redis as redis_lib

from sync_worker.countbuffer import CountBuffer
from sync_worker.devtools.localredis import LocalRedis

pytestmark = pytest.mark.integration

KEY = "intercom-sync:metrics:test"


def _child_counts(buffer: CountBuffer) -> None:
    buffer.add(counts=[(KEY, "child"), (KEY, "child")])
    buffer.close()


def test_a_forked_child_writes_its_own_counts_only() -> None:
    server = LocalRedis(persistent=False).start()
    client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5)
    try:
        buffer = CountBuffer(client, flush_interval=3600)  # only the explicit writes below
        buffer.add(counts=[(KEY, "parent")], sums=[(KEY, "seconds", 0.5)])  # buffered when the pool forks

        child = multiprocessing.get_context("fork").Process(target=_child_counts, args=(buffer,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert client.hgetall(KEY) == {"child": "2"}  # the parent's count is not the child's to write

        buffer.close()
        assert client.hgetall(KEY) == {"child": "2", "parent": "1", "seconds": "0.5"}
    finally:
        client.close()
        server.cleanup()
