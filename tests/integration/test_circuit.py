"""The shared circuit breaker on a real Redis: opening, refusing, half-open probes, closing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis as redis_lib

from sync_worker.circuit import CLOSED, HALF_OPEN, OPEN, Admission, CircuitBreaker
from sync_worker.devtools.localredis import wait_until

pytestmark = pytest.mark.integration


def redis_now(client: redis_lib.Redis) -> datetime:
    seconds, micros = client.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def test_a_new_circuit_is_closed(redis_client):
    breaker = CircuitBreaker(redis_client, "platform")
    assert breaker.allow()
    state = breaker.state()
    assert (state.state, state.failures, state.opened_at, state.unavailable_since) == (CLOSED, 0, None, None)


def test_opens_after_threshold_failures_and_refuses_every_worker(redis_client, redis_url):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=3, open_seconds=60)
    before = redis_now(redis_client)
    assert breaker.record_failure() == 1
    after_first = redis_now(redis_client)
    assert breaker.record_failure() == 2
    assert breaker.allow()
    assert breaker.state().state == CLOSED
    assert before <= breaker.state().unavailable_since <= after_first

    breaker.record_failure()
    state = breaker.state()
    assert state.state == OPEN
    assert state.failures == 3
    assert state.opened_at is not None and state.opened_at >= after_first
    assert before <= state.unavailable_since <= after_first  # the first failure, not the one that opened it
    assert not breaker.allow()
    other = CircuitBreaker(
        redis_lib.Redis.from_url(redis_url), "platform", failure_threshold=3, open_seconds=60
    )
    assert not other.allow()
    assert other.state().state == OPEN


def test_opens_in_is_the_time_left_until_the_open_circuit_lets_a_probe_through(redis_client):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=2, open_seconds=0.6)
    assert breaker.opens_in() == 0.0
    breaker.record_failure()
    assert breaker.opens_in() == 0.0  # closed: a call may go now
    breaker.record_failure()
    assert 0.0 < breaker.opens_in() <= 0.6
    wait_until(lambda: breaker.opens_in() == 0.0, 10, message="the circuit to half-open")
    assert breaker.allow()  # the probe
    assert breaker.opens_in() == 0.0  # half-open: a probe is out, not a wait for the circuit
    breaker.record_failure()
    assert 0.0 < breaker.opens_in() <= 0.6  # the failed probe opened it again


def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens(redis_client, redis_url):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=1, open_seconds=0.5)
    other = CircuitBreaker(
        redis_lib.Redis.from_url(redis_url), "platform", failure_threshold=1, open_seconds=0.5
    )
    breaker.record_failure()
    first_failure = breaker.state().unavailable_since
    assert not breaker.allow()

    wait_until(lambda: breaker.state().state == HALF_OPEN, timeout=3, interval=0.02, message="half-open")
    assert breaker.allow()  # the probe
    assert not other.allow()  # one probe at a time
    assert not breaker.allow()

    breaker.record_failure()  # the probe failed: open again for another open_seconds
    state = breaker.state()
    assert state.state == OPEN
    assert not other.allow()
    assert state.unavailable_since == first_failure  # still the same outage

    wait_until(lambda: other.state().state == HALF_OPEN, timeout=3, interval=0.02, message="half-open again")
    assert other.allow()
    other.record_success()
    state = breaker.state()
    assert (state.state, state.failures, state.opened_at, state.unavailable_since) == (CLOSED, 0, None, None)
    assert breaker.allow() and other.allow()


def test_a_probe_that_never_reports_lets_the_next_one_through(redis_client):
    breaker = CircuitBreaker(
        redis_client, "platform", failure_threshold=1, open_seconds=0.1, probe_timeout_seconds=0.5
    )
    breaker.record_failure()
    wait_until(breaker.allow, timeout=3, interval=0.02, message="the first probe")
    assert not breaker.allow()
    wait_until(breaker.allow, timeout=3, interval=0.02, message="a second probe after the first timed out")
    assert breaker.state().state == HALF_OPEN


def test_admit_says_which_call_is_the_probe_and_a_released_probe_lets_the_next_one_through_at_once(
    redis_client, redis_url
):
    breaker = CircuitBreaker(
        redis_client, "platform", failure_threshold=1, open_seconds=0.1, probe_timeout_seconds=60
    )
    other = CircuitBreaker(
        redis_lib.Redis.from_url(redis_url),
        "platform",
        failure_threshold=1,
        open_seconds=0.1,
        probe_timeout_seconds=60,
    )
    closed = breaker.admit()
    assert closed == Admission(probe=None)
    breaker.release(closed)  # a call admitted while closed: nothing to release
    assert breaker.state().state == CLOSED

    breaker.record_failure()
    assert breaker.admit() is None  # open
    wait_until(lambda: breaker.state().state == HALF_OPEN, timeout=3, interval=0.02, message="half-open")
    probe = breaker.admit()
    assert probe is not None and probe.probe is not None
    assert other.admit() is None  # one probe at a time (for 60 s unless released)

    breaker.release(probe)
    state = breaker.state()
    assert (state.state, state.failures) == (HALF_OPEN, 1)  # nothing learnt: still the same outage
    second = other.admit()
    assert second is not None and second.probe not in (None, probe.probe)
    breaker.release(probe)  # a stale release does not free the newer probe's turn
    assert breaker.admit() is None

    other.record_success()  # the second probe was answered: closed
    other.release(second)  # settled already: nothing changes
    state = breaker.state()
    assert (state.state, state.failures, state.unavailable_since) == (CLOSED, 0, None)
    assert breaker.admit() == Admission(probe=None)


def test_failures_within_the_window_open_it_whatever_successes_come_between(redis_client):
    """The README's rule: this many failed reads within the window (not in a row): a platform
    failing four reads in five opens the circuit (issue 12 item 10; the old code cleared the
    count on every success and never opened)."""
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=4, window_seconds=60)
    for _ in range(3):
        breaker.record_failure()
        breaker.record_success()
        assert breaker.state().state == CLOSED
    breaker.record_success()
    assert breaker.record_failure() == 4
    state = breaker.state()
    assert (state.state, state.failures) == (OPEN, 4)
    assert not breaker.allow()


def test_success_while_closed_ends_the_outage_but_keeps_the_windows_failures(redis_client):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=3)
    breaker.record_failure()
    assert breaker.state().unavailable_since is not None
    breaker.record_success()
    state = breaker.state()
    assert (state.state, state.failures, state.unavailable_since) == (CLOSED, 1, None)
    before = redis_now(redis_client)
    assert breaker.record_failure() == 2
    assert breaker.allow()  # below the threshold
    assert breaker.state().unavailable_since >= before  # a new outage, since the failure after the success


def test_a_late_success_while_open_changes_nothing(redis_client):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=1, open_seconds=60)
    breaker.record_failure()
    opened = breaker.state()
    breaker.record_success()  # a call admitted before the circuit opened, answered now
    assert breaker.state() == opened
    assert not breaker.allow()


def test_failures_older_than_the_window_do_not_count(redis_client):
    breaker = CircuitBreaker(redis_client, "platform", failure_threshold=2, window_seconds=0.3)
    breaker.record_failure()
    first = breaker.state().unavailable_since
    wait_until(
        lambda: breaker.state().failures == 0, timeout=3, interval=0.02, message="the failure to age out"
    )
    assert breaker.state().unavailable_since is None
    assert breaker.record_failure() == 1
    state = breaker.state()
    assert state.state == CLOSED
    assert state.unavailable_since > first  # a new outage
    assert breaker.allow()


def test_circuits_are_independent_by_name(redis_client):
    platform = CircuitBreaker(redis_client, "platform", failure_threshold=1, open_seconds=60)
    other = CircuitBreaker(redis_client, "intercom", failure_threshold=1, open_seconds=60)
    platform.record_failure()
    assert not platform.allow()
    assert other.allow()
    assert platform.state().to_dict()["state"] == OPEN
