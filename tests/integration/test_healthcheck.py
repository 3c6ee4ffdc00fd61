"""The container health checks (``python -m sync_worker.healthcheck``), run as Docker runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sync_worker import heartbeat, keys
from sync_worker.devtools.localredis import free_port
from sync_worker.healthcheck import MAX_HEARTBEAT_AGE_SECONDS
from tests.fixtures.deployed import deployed_web

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


_SKEWED_CLOCK = """
import time

_real_time = time.time
time.time = lambda: _real_time() + 600
"""


def check(
    *args: str, redis_url: str | None = None, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"REDIS_URL": redis_url} if redis_url else {})}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "sync_worker.healthcheck", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_web_check_passes_only_while_the_receiver_answers(redis_url: str, tmp_path: Path) -> None:
    with deployed_web({"REDIS_URL": redis_url}, tmp_path) as url:
        assert check("web", "--url", f"{url}/healthz").returncode == 0
    down = check("web", "--url", f"http://127.0.0.1:{free_port()}/healthz")
    assert down.returncode == 1 and down.stderr.startswith("unhealthy: "), down.stderr


def test_worker_check_passes_only_with_a_fresh_heartbeat_of_that_worker(redis_url: str, redis_client) -> None:
    name = "celery@healthcheck-test"
    assert check("worker", "--hostname", name, redis_url=redis_url).returncode == 1  # none yet
    heartbeat.beat(redis_client, name)
    assert check("worker", "--hostname", name, redis_url=redis_url).returncode == 0
    assert check("worker", "--hostname", "celery@another", redis_url=redis_url).returncode == 1
    seconds, micros = redis_client.time()
    old = seconds + micros / 1e6 - MAX_HEARTBEAT_AGE_SECONDS - 5
    redis_client.hset(keys.worker_heartbeats(), name, str(old))
    stale = check("worker", "--hostname", name, redis_url=redis_url)
    assert stale.returncode == 1 and "old" in stale.stderr, stale.stderr


def test_worker_check_judges_the_heartbeat_on_redis_time_not_the_container_clock(
    redis_url: str, redis_client, tmp_path: Path
) -> None:
    """The check's own clock ten minutes ahead (a ``sitecustomize``): a fresh beat is still fresh."""
    skewed = tmp_path / "skewed-clock"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(_SKEWED_CLOCK)
    name = "celery@skewed-host"
    heartbeat.beat(redis_client, name)
    fresh = check("worker", "--hostname", name, redis_url=redis_url, pythonpath=skewed)
    assert fresh.returncode == 0, fresh.stderr
