"""Redis unreachable: nothing is acknowledged that was not stored, and the app recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from sync_worker.devtools.localredis import LocalRedis
from tests.fixtures.web import notification, serve, web_settings

pytestmark = pytest.mark.integration

#: Intercom drops a webhook delivery after 5 s; the 503 must come well before, or the caller sees a
#: timeout instead of a refusal (and a sync gunicorn worker is tied up meanwhile). A correctness
#: bound, not a speed target.
REFUSAL_BOUND_SECONDS = 2.0


def _timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    server = LocalRedis(persistent=False).start()
    yield server
    server.cleanup()


def test_redis_down_is_503_then_healthy_again(own_redis: LocalRedis) -> None:
    served, web = serve(web_settings(own_redis.url))
    try:
        payload = notification(notification_id="notif_outage", contact_id="6650cc")
        own_redis.stop()

        # The app has not built a task message yet: the first trigger opens the broker channel.
        hook, took = _timed(lambda: web.post_webhook(payload))
        assert hook.status_code == 503
        assert took < REFUSAL_BOUND_SECONDS
        assert hook.json()["error"]["code"] == "queue_unavailable"
        assert "nothing was stored" in hook.json()["error"]["message"]
        assert int(hook.headers["Retry-After"]) > 0

        trigger, took = _timed(lambda: web.trigger({"email": "client@example.com"}))
        assert trigger.status_code == 503
        assert took < REFUSAL_BOUND_SECONDS
        assert trigger.json()["error"]["code"] == "queue_unavailable"

        admin = web.admin("GET")
        assert admin.status_code == 503
        assert admin.json()["error"]["code"] == "redis_unavailable"

        assert web.get("/healthz").status_code == 200  # the process itself is fine
        ready = web.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "redis_unavailable"
        assert web.get("/metrics").status_code == 503

        own_redis.start()

        retried = web.post_webhook(payload)  # Intercom's retry: not a duplicate, it was never stored
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "queued"
        again = web.trigger({"email": "client@example.com"})
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "queued"
        messages = web.queued()
        assert [m["kwargs"]["contact_id"] for m in messages] == ["6650cc", None]
        assert messages[1]["kwargs"]["email"] == "client@example.com"
        assert requests.get(f"{web.url}/metrics", timeout=5).status_code == 200
    finally:
        served.stop()
        web.redis.close()
