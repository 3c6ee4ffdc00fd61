"""A Redis that may evict keys is refused at start (issue 12 item 7), unless allowed explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until
from sync_worker.devtools.processes import Child, web_argv, worker_argv
from sync_worker.redis_policy import eviction_problem
from tests.fixtures.deployed import ROOT, deployed_web

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting_redis() -> Iterator[LocalRedis]:
    """A private Redis of the dev and test kind, then switched to an evicting policy."""
    server = LocalRedis(persistent=False).start()
    client = server_client(server)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}  # as started
    assert int(client.config_get("maxmemory")["maxmemory"]) == 1024**3
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    yield server
    server.cleanup()


def server_client(server: LocalRedis) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(server.url, decode_responses=True)


@pytest.mark.parametrize(
    ("policy", "allow", "refused"),
    [
        ("noeviction", False, False),
        ("allkeys-lru", False, True),
        ("volatile-lru", True, False),
        (None, False, True),
    ],
)
def test_only_noeviction_or_an_explicit_override_is_accepted(
    policy: str | None, allow: bool, refused: bool
) -> None:
    problem = eviction_problem(policy, allow=allow)
    assert (problem is not None) == refused
    if problem:
        assert "maxmemory-policy" in problem and "SYNC_ALLOW_EVICTION=true" in problem


def _exit_of(child: Child) -> int | None:
    assert child.process is not None
    wait_until(lambda: not child.alive(), 90, message=f"{child.name} to exit (log: {child.log_path})")
    return child.process.returncode


def test_the_receiver_refuses_an_evicting_redis_and_starts_when_allowed(
    evicting_redis: LocalRedis, tmp_path: Path
) -> None:
    env = {"REDIS_URL": evicting_redis.url}
    web = Child(
        "web", web_argv(port=free_port()), env=env, log_path=tmp_path / "refused.log", cwd=ROOT
    ).start()
    try:
        assert _exit_of(web) == 2
    finally:
        web.stop()
    assert "maxmemory-policy is allkeys-lru" in web.log_text() and "SYNC_ALLOW_EVICTION" in web.log_text()
    with deployed_web({**env, "SYNC_ALLOW_EVICTION": "true"}, tmp_path):
        pass  # answered /healthz


def test_a_worker_refuses_an_evicting_redis_before_taking_work(
    evicting_redis: LocalRedis, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": evicting_redis.url,
        "INTERCOM_ACCESS_TOKEN": "token",
        "PLATFORM_API_URL": "http://127.0.0.1:1",
        "PLATFORM_API_TOKEN": "token",
    }
    worker = Child("worker", worker_argv(concurrency=1), env=env, log_path=tmp_path / "worker.log", cwd=ROOT)
    worker.start()
    try:
        assert _exit_of(worker) == 2, worker.log_text()[-2000:]
    finally:
        worker.stop()
    assert "maxmemory-policy is allkeys-lru" in worker.log_text(), worker.log_text()[-2000:]
