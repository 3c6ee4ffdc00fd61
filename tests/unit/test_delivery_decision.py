"""The retry decision every task shares (``sync_contact``, a re-sync's walk and its chunks)."""

from __future__ import annotations

from sync_worker.delivery.decision import backoff_seconds, retry_countdown
from sync_worker.errors import PermanentError, TransientError


def test_a_transient_error_retries_after_the_backoff_while_the_budget_lasts():
    assert retry_countdown(TransientError("x"), 0, max_retries=2, backoff=lambda n: 1.5 * (n + 1)) == 1.5
    assert retry_countdown(TransientError("x"), 1, max_retries=2, backoff=lambda n: 1.5 * (n + 1)) == 3.0
    assert retry_countdown(TransientError("x"), 2, max_retries=2, backoff=lambda n: 1.0) is None


def test_a_permanent_error_is_never_retried():
    assert retry_countdown(PermanentError("x"), 0, max_retries=5, backoff=lambda n: 1.0) is None


def test_an_error_that_is_not_ours_is_retried_like_a_transient_one():
    """A bug in one contact of a bulk chunk is tried again (the task itself never sees one here)."""
    assert retry_countdown(KeyError("x"), 0, max_retries=1, backoff=lambda n: 2.0) == 2.0


def test_an_errors_own_retry_after_wins_when_longer_capped():
    slow = TransientError("x", retry_after=90.0)
    assert retry_countdown(slow, 0, max_retries=3, backoff=lambda n: 1.0) == 90.0
    assert retry_countdown(slow, 0, max_retries=3, backoff=lambda n: 1.0, retry_after_cap=30.0) == 30.0
    assert (
        retry_countdown(TransientError("x", retry_after=0.5), 0, max_retries=3, backoff=lambda n: 4.0) == 4.0
    )


def test_backoff_is_exponential_with_full_jitter_under_the_cap():
    for attempt, ceiling in ((0, 1.0), (1, 2.0), (2, 4.0), (10, 8.0)):
        wait = backoff_seconds(attempt, 1.0, 8.0)
        assert ceiling / 2 <= wait <= ceiling
