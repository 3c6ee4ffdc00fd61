"""Worker health is judged on Redis's clock, with a real worker process whose clock is off.

The worker runs with ``time.time()`` ten minutes behind (a ``sitecustomize`` on its
``PYTHONPATH``: the process's own clock, as a host with a skewed clock would give it). Its
heartbeat is still "now" for ``/healthz/workers``, and ``/readyz`` never depended on it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests

from sync_worker.devtools.localredis import wait_until

pytestmark = pytest.mark.integration

SKEW_SECONDS = 600

_SKEWED_CLOCK = f"""
import time

_real_time = time.time
time.time = lambda: _real_time() - {SKEW_SECONDS}
"""


def test_a_heartbeat_written_with_a_skewed_host_clock_is_judged_on_redis_time(workers, web_app, tmp_path):
    skewed = tmp_path / "skewed-clock"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(_SKEWED_CLOCK)
    workers.start(1, PYTHONPATH=str(skewed), timeout=30)
    [child] = workers.children
    [first] = [json.loads(line) for line in child.log_text().splitlines() if line.startswith("{")][:1]
    logged_at = datetime.strptime(first["ts"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert time.time() - logged_at.timestamp() > SKEW_SECONDS - 60  # the worker's clock is behind

    def health() -> dict:
        response = requests.get(f"{web_app.url}/healthz/workers", timeout=5)
        assert response.status_code in (200, 503), response.text
        return response.json()

    wait_until(lambda: health().get("status") == "ok", 15, message="the skewed worker to count as up")
    workers_seen = health()["workers"]
    assert workers_seen["fresh_workers"] == 1
    assert workers_seen["latest_heartbeat_age_seconds"] < 30  # not 600: Redis's clock, not the worker's
    ready = requests.get(f"{web_app.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["workers"]["healthy"] is True
