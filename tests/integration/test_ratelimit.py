"""The shared rate limiter on a real Redis: budgets, windows, following the upstream, pauses, processes."""

from __future__ import annotations

import pickle
import time
from collections import Counter

import pytest
import redis as redis_lib

from sync_worker.devtools.localredis import wait_until
from sync_worker.errors import TransientError
from sync_worker.ratelimit import (
    RateLimiter,
    RateLimitHooks,
    RateLimitWait,
    parse_intercom_window,
    parse_retry_after,
)
from tests.fixtures.spawned import run_together

pytestmark = pytest.mark.integration

# A window long enough that no test crosses its end by accident: windows are aligned on Redis's
# clock, and every test starts at least EDGE_MARGIN seconds before the next boundary (the
# autouse fixture below), more than any test here takes (a max_wait of 0.5 s included).
LONG = 600.0
EDGE_MARGIN = 10.0


def redis_now(client: redis_lib.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def window_end(now: float, window: float) -> float:
    return (now // window + 1) * window


@pytest.fixture(autouse=True)
def away_from_a_long_windows_end(redis_client):
    """Start each test at least EDGE_MARGIN seconds before a LONG window ends (at most that long a
    wait, once every ten minutes), so a test that waits for a token cannot meet a new window."""
    wait_until(
        lambda: window_end(redis_now(redis_client), LONG) - redis_now(redis_client) > EDGE_MARGIN,
        timeout=EDGE_MARGIN + 5,
        interval=0.2,
        message="a LONG window with room left",
    )


def test_grants_exactly_limit_in_a_window_then_waits_for_its_end(redis_client, redis_url):
    limiter = RateLimiter(redis_client, "intercom", limit=5, window_seconds=LONG)
    decisions = [limiter.attempt() for _ in range(5)]
    assert all(d.granted and d.wait == 0.0 for d in decisions)
    assert [d.seq for d in decisions] == [1, 2, 3, 4, 5]

    refused = limiter.attempt()
    assert not refused.granted
    assert 0 < refused.wait <= LONG
    assert refused.at + refused.wait == pytest.approx(window_end(refused.at, LONG), abs=0.002)
    # Another worker sees the same spent budget.
    other = RateLimiter(redis_lib.Redis.from_url(redis_url), "intercom", limit=5, window_seconds=LONG)
    assert other.try_acquire() > 0


def test_a_new_window_grants_again(redis_client):
    limiter = RateLimiter(redis_client, "platform", limit=2, window_seconds=1)
    first = [limiter.attempt() for _ in range(2)]
    while first[0].at // 1 != first[1].at // 1:  # straddled a boundary: start again in the new window
        first = [first[1], limiter.attempt()]
    refused = limiter.attempt()
    if refused.at // 1 == first[0].at // 1:
        assert not refused.granted
        assert 0 < refused.wait <= 1.0

    granted = []
    wait_until(
        lambda: granted.append(limiter.attempt()) or granted[-1].granted,
        timeout=3,
        interval=0.02,
        message="a token in the next window",
    )
    assert granted[-1].at // 1 > first[0].at // 1


def test_limiters_are_independent_by_name(redis_client):
    intercom = RateLimiter(redis_client, "intercom", limit=1, window_seconds=LONG)
    platform = RateLimiter(redis_client, "platform", limit=1, window_seconds=LONG)
    assert intercom.try_acquire() == 0.0
    assert intercom.try_acquire() > 0
    assert platform.try_acquire() == 0.0


def test_observe_lowers_remaining_to_what_the_upstream_says(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=100, window_seconds=LONG)
    assert limiter.try_acquire() == 0.0
    now = redis_now(redis_client)
    reset = float(int(now) + 5)
    assert limiter.observe(100, 3, reset) == 3
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    refused = limiter.attempt()
    assert not refused.granted
    # Held until the upstream's reset plus the skew margin, not until our (much later) window end.
    assert refused.at + refused.wait == pytest.approx(reset + limiter.skew_margin_seconds, abs=0.002)


def test_observe_counts_calls_granted_after_ours_as_still_in_flight(redis_client, redis_url):
    worker_a = RateLimiter(redis_client, "intercom", limit=100, window_seconds=LONG)
    worker_b = RateLimiter(redis_lib.Redis.from_url(redis_url), "intercom", limit=100, window_seconds=LONG)
    assert worker_a.try_acquire() == 0.0  # token 1: A's call
    assert worker_b.try_acquire() == 0.0  # tokens 2, 3: B's calls, perhaps not yet seen by the upstream
    assert worker_b.try_acquire() == 0.0
    reset = float(int(redis_now(redis_client)) + 5)
    # The upstream answered A's call with 5 remaining: B's two calls will come out of those.
    assert worker_a.observe(100, 5, reset) == 3
    grants = sum(1 for _ in range(10) if worker_b.try_acquire() == 0.0)
    assert grants == 3


def test_observe_never_raises_our_budget(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=2, window_seconds=LONG)
    assert [limiter.try_acquire() for _ in range(2)] == [0.0, 0.0]
    limiter.observe(2, 50, float(int(redis_now(redis_client)) + 5))
    assert limiter.try_acquire() > 0


def test_same_window_keeps_the_lowest_cap_and_a_late_older_answer_is_ignored(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=100, window_seconds=LONG)
    now = int(redis_now(redis_client))
    assert limiter.observe(100, 2, now + 5, granted_seq=0) == 2
    assert limiter.observe(100, 7, now + 5, granted_seq=0) == 2  # same window: the lower cap stays
    assert limiter.observe(100, 0, now + 3, granted_seq=0) == 2  # an older window's late answer
    assert [limiter.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert limiter.try_acquire() > 0


def test_a_reported_limit_replaces_the_configured_one_for_every_worker(redis_client, redis_url):
    limiter = RateLimiter(redis_client, "intercom", limit=100, window_seconds=LONG)
    limiter.observe(2, 1000, float(int(redis_now(redis_client)) + 5))
    other = RateLimiter(redis_lib.Redis.from_url(redis_url), "intercom", limit=100, window_seconds=LONG)
    assert [other.try_acquire() for _ in range(2)] == [0.0, 0.0]
    refused = other.attempt()
    assert not refused.granted
    assert refused.at + refused.wait == pytest.approx(window_end(refused.at, LONG), abs=0.002)


def test_pause_until_blocks_every_worker_then_lifts(redis_client, redis_url):
    worker_a = RateLimiter(redis_client, "platform", limit=100, window_seconds=1)
    worker_b = RateLimiter(redis_lib.Redis.from_url(redis_url), "platform", limit=100, window_seconds=1)
    until = redis_now(redis_client) + 0.6
    assert worker_a.pause_until(until) > 0
    for limiter in (worker_a, worker_b):
        refused = limiter.attempt()
        assert not refused.granted
        assert refused.at + refused.wait == pytest.approx(until, abs=0.002)
    # An earlier pause does not shorten the one in force.
    worker_b.pause_until(until - 0.5)
    assert worker_b.try_acquire() > 0
    wait_until(lambda: worker_b.try_acquire() == 0.0, timeout=3, interval=0.02, message="the pause to lift")
    assert redis_now(redis_client) >= until


def test_acquire_raises_rate_limit_wait_past_max_wait(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=1, window_seconds=LONG)
    limiter.acquire(max_wait=0.5)
    with pytest.raises(RateLimitWait) as caught:
        limiter.acquire(max_wait=0.5)
    wait = caught.value
    assert isinstance(wait, TransientError)
    assert 0.5 < wait.retry_in <= LONG
    assert wait.retry_after == wait.retry_in
    copy = pickle.loads(pickle.dumps(wait))
    assert (type(copy), copy.retry_in, copy.code, str(copy)) == (
        RateLimitWait,
        wait.retry_in,
        wait.code,
        str(wait),
    )
    assert redis_now(redis_client) + wait.retry_in == pytest.approx(
        window_end(redis_now(redis_client), LONG), abs=0.05
    )


def test_acquire_waits_for_a_token_within_max_wait(redis_client):
    limiter = RateLimiter(redis_client, "platform", limit=1, window_seconds=0.25)
    started = redis_now(redis_client)
    limiter.acquire(max_wait=1.0)
    limiter.acquire(max_wait=1.0)  # the second token is in the next window, at most 0.25 s away
    assert redis_now(redis_client) // 0.25 > started // 0.25


def test_hooks_follow_intercom_headers_and_pause_on_429(redis_client):
    limiter = RateLimiter(redis_client, "intercom", limit=100, window_seconds=10)
    hooks = RateLimitHooks({"intercom": limiter}, max_wait=0.1)
    hooks.before_request("intercom", "get_contact")
    reset = int(redis_now(redis_client)) + 4
    hooks.after_response(
        "intercom",
        200,
        {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "1", "x-ratelimit-reset": str(reset)},
    )
    hooks.before_request("intercom", "update_contact")
    with pytest.raises(RateLimitWait):
        hooks.before_request("intercom", "update_contact")

    other = RateLimiter(redis_client, "intercom-429", limit=100, window_seconds=10)
    hooks = RateLimitHooks({"intercom": other}, max_wait=0.1)
    hooks.after_response(
        "intercom",
        429,
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(redis_now(redis_client)) + 3),
        },
    )
    refused = other.attempt()
    assert not refused.granted
    assert 2.0 < refused.wait <= 3.0 + other.skew_margin_seconds
    # An upstream without a limiter is not throttled.
    hooks.before_request("somewhere-else", "call")


def test_hooks_pause_the_platform_for_its_retry_after(redis_client):
    limiter = RateLimiter(redis_client, "platform", limit=100, window_seconds=1)
    hooks = RateLimitHooks({"platform": limiter}, max_wait=0.0)
    hooks.after_response("platform", 200, {"Retry-After": "30"})  # not a 429: ignored
    assert limiter.try_acquire() == 0.0
    hooks.after_response("platform", 429, {"Retry-After": "2"})
    refused = limiter.attempt()
    assert not refused.granted
    assert 1.9 < refused.wait <= 2.0
    with pytest.raises(RateLimitWait) as caught:
        hooks.before_request("platform", "clients_by_email")
    assert 1.5 < caught.value.retry_in <= 2.0


def test_header_parsing():
    window = parse_intercom_window(
        {"X-RateLimit-Limit": "1666", "X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "1769000010"}
    )
    assert (window.limit, window.remaining, window.reset_at) == (1666, 12, 1769000010.0)
    assert parse_intercom_window({"X-RateLimit-Remaining": "oops", "X-RateLimit-Reset": "1"}) is None
    assert parse_intercom_window({}) is None
    assert parse_retry_after({"retry-after": "7"}).seconds == 7.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).until == 1445412480.0
    assert parse_retry_after({"Retry-After": "soon"}) is None


# --- several real processes sharing one limiter -----------------------------------------------

WINDOW = 1.0
LIMIT = 40
PROCESSES = 4


def _hammer(url: str, times, ready, go, results) -> None:
    """Child process: take every token it can between the start and end times (Redis time) it is given."""
    client = redis_lib.Redis.from_url(url)
    limiter = RateLimiter(client, "shared", limit=LIMIT, window_seconds=WINDOW)
    ready.wait()
    go.wait()
    start_at, end_at = times[0], times[1]
    grants: list[tuple[float, int]] = []
    while True:
        seconds, micros = client.time()
        if seconds + micros / 1e6 >= start_at:
            break
        time.sleep(0.001)  # waiting for a start time (a real deadline), not synchronising on a condition
    while True:
        decision = limiter.attempt()
        if decision.at >= end_at:
            break
        if decision.granted:
            grants.append((decision.at, decision.seq))
    results.put(grants)
    client.close()


def test_processes_never_exceed_the_limit_and_use_the_budget(redis_client, redis_url):
    def schedule() -> tuple[float, float]:
        start_at = window_end(redis_now(redis_client) + 0.2, WINDOW)
        return start_at, start_at + 2 * WINDOW

    answers, start_at, _ = run_together(_hammer, redis_url, PROCESSES, schedule)
    grants = [grant for found in answers for grant in found]

    per_window = Counter(int(at // WINDOW) for at, _ in grants)
    assert max(per_window.values()) <= LIMIT
    assert len({seq for _, seq in grants}) == len(grants)  # every token handed out once
    full_windows = [int(start_at // WINDOW) + i for i in range(2)]
    used = sum(per_window[w] for w in full_windows)
    assert used >= 0.95 * LIMIT * len(full_windows), per_window
