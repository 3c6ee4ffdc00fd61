"""Expected delay: the limiter's read-only look (``peek``/``inspect``/``inspect_with``) and the 202 body of ``/v1/sync``.

The limiter tests follow ``test_ratelimit.py``: a real Redis, windows long enough
that no test crosses a boundary by accident. The receiver tests serve the app with
an Intercom budget of 100 calls per 10 s (10 a second, 2 calls a sync: 5 syncs a
second), so the figures below are exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from sync_worker.devtools.localredis import wait_until
from sync_worker.ratelimit import RateLimiter
from sync_worker.ratelimit.limiter import Budget
from tests.fixtures.web import WebServer, serve, stop_web, web_settings
from web.delay import estimate_delay

pytestmark = pytest.mark.integration

LONG = 600.0
LIMIT = 100
WINDOW = 10


def redis_now(client: redis_lib.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


# --- the limiter's read-only look ------------------------------------------------------


def test_peek_takes_nothing(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=3, window_seconds=LONG)
    assert [limiter.peek() for _ in range(10)] == [0.0] * 10
    assert limiter.inspect().used == 0
    assert [limiter.attempt().granted for _ in range(4)] == [True, True, True, False]


def test_peek_answers_the_wait_a_token_request_would_get(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=2, window_seconds=LONG)
    limiter.attempt()
    assert limiter.peek() == 0.0
    limiter.attempt()
    budget = limiter.inspect()
    refused = limiter.attempt()
    assert not refused.granted
    assert budget.used == 2
    assert budget.wait == pytest.approx(refused.wait, abs=0.05)
    assert 0 < budget.wait <= LONG
    assert limiter.inspect().used == 2  # neither the refusal nor the look counted


def test_peek_sees_a_pause(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=50, window_seconds=10)
    limiter.pause_for(30)
    assert limiter.peek() == pytest.approx(30, abs=0.1)


def test_peek_follows_the_upstream_limit_and_remaining(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=1666, window_seconds=10)
    assert limiter.attempt().granted
    reset_at = redis_now(redis_client) + 5
    limiter.observe(500, 0, reset_at)  # Intercom says: 500 a window, none left until reset_at
    budget = limiter.inspect()
    assert budget.limit == 500
    assert budget.rate == 50.0
    assert budget.wait == pytest.approx(5 + limiter.skew_margin_seconds, abs=0.1)
    assert not limiter.attempt().granted


class CountingConnection(redis_lib.Connection):
    """A real Redis connection that counts its sends: each one is a round trip (a pipeline is one)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url: str) -> Iterator[redis_lib.Redis]:
    pool = redis_lib.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis_lib.Redis(connection_pool=pool)
    client.ping()  # connected (its hand-shake is not counted below)
    yield client
    client.close()
    pool.disconnect()


def test_inspect_with_answers_the_look_and_the_commands_in_one_round_trip(counted: redis_lib.Redis):
    limiter = RateLimiter(counted, "intercom", limit=3, window_seconds=LONG)
    limiter.attempt()
    counted.rpush("queue", "a", "b")
    alone = limiter.inspect()  # also loads the look's script
    CountingConnection.sends = 0
    budget, replies = limiter.inspect_with(lambda pipe: (pipe.llen("queue"), pipe.get("missing")))
    assert CountingConnection.sends == 1
    assert budget == alone == Budget(wait=0.0, limit=3, used=1, window_seconds=LONG)
    assert replies == [2, None]
    assert limiter.inspect().used == 1  # it took nothing


def test_inspect_with_loads_its_script_again_when_redis_lost_it(counted: redis_lib.Redis):
    limiter = RateLimiter(counted, "intercom", limit=2, window_seconds=LONG)
    limiter.attempt()
    limiter.attempt()
    counted.script_flush()  # as after a Redis restart
    budget, [queued] = limiter.inspect_with(lambda pipe: pipe.llen("queue"))
    assert (budget.used, queued) == (2, 0)
    assert 0 < budget.wait <= LONG
    CountingConnection.sends = 0
    limiter.inspect_with(lambda pipe: pipe.llen("queue"))
    assert CountingConnection.sends == 1  # loaded for the next look too


def test_estimate_is_the_wait_plus_the_queue_at_the_allowed_rate():
    assert estimate_delay(0.0, 1, 10.0) is None
    assert estimate_delay(0.5, 2, 10.0) is None  # 0.5 + 0.4
    assert estimate_delay(0.0, 30, 10.0) == 6.0
    assert estimate_delay(2.01, 0, 10.0) == 2.1  # rounded up to a tenth
    assert estimate_delay(3.0, 5, 10.0, calls_per_sync=1) == 3.5
    assert estimate_delay(0.0, 7, 10.0) == 1.4  # not 1.5: no float noise in the rounding up


# --- the 202 body ----------------------------------------------------------------------


@pytest.fixture
def receiver(redis_url: str) -> Iterator[WebServer]:
    served, server = serve(
        web_settings(redis_url, INTERCOM_CALLS_PER_WINDOW=LIMIT, INTERCOM_WINDOW_SECONDS=WINDOW)
    )
    yield server
    stop_web(served)
    server.redis.close()


def intercom_limiter(server: WebServer) -> RateLimiter:
    client = redis_lib.Redis.from_url(server.settings.redis_url)
    return RateLimiter(client, "intercom", limit=LIMIT, window_seconds=WINDOW)


def delay_of(server: WebServer, email: str) -> float | None:
    response = server.trigger({"email": email})
    assert response.status_code == 202, response.text
    return response.json()["expected_delay_seconds"]


def test_idle_has_no_delay_to_tell(receiver: WebServer):
    assert delay_of(receiver, "client@example.com") is None


def test_paused_intercom_budget_is_told(receiver: WebServer):
    intercom_limiter(receiver).pause_for(20)  # as after Intercom's 429
    delay = delay_of(receiver, "client@example.com")
    assert delay is not None
    assert 19 < delay <= 20.5  # the pause, plus this sync at 5 a second


def test_intercom_budget_spent_by_the_workers_is_told(receiver: WebServer):
    limiter = intercom_limiter(receiver)
    clock = redis_lib.Redis.from_url(receiver.settings.redis_url)
    # Start early in a window, so it cannot end between spending its budget and asking.
    wait_until(lambda: redis_now(clock) % WINDOW < WINDOW - 3, WINDOW, message="a window with 3 s left")
    while limiter.attempt().granted:  # the workers took every token of this window
        pass
    asked = time.monotonic()
    window_left = limiter.peek()
    delay = delay_of(receiver, "client@example.com")
    took = time.monotonic() - asked
    assert delay is not None
    # The receiver looked some time within `took` after the peek; + 0.2 s for this sync, rounded up to 0.1 s.
    assert window_left - took + 0.2 - 0.001 <= delay <= window_left + 0.3 + 0.001


def test_a_long_queue_is_told(receiver: WebServer):
    delays = [delay_of(receiver, f"client{n}@example.com") for n in range(30)]
    assert len(receiver.queued()) == 30
    # n syncs queued, 2 Intercom calls each, 10 calls a second: n / 5 seconds, told from 1 s on.
    assert delays == [None] * 4 + [round((n + 1) / 5, 1) for n in range(4, 30)]
    assert delays[-1] == 6.0


def test_idle_after_the_pause_ends(receiver: WebServer):
    intercom_limiter(receiver).pause_for(0.3)
    assert delay_of(receiver, "client@example.com") is None  # 0.3 s + 0.2 s: not worth telling
