"""Which failures of a run mean "Redis is unreachable", so the task hands its message back."""

from __future__ import annotations

import pytest
import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from sync_worker.errors import TransientError
from sync_worker.tasks import redis_unavailable


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        redis.BusyLoadingError("loading the append-only file"),  # just after a restart
        OperationalError("publish failed"),
    ],
)
def test_connection_errors_and_a_retry_celery_could_not_publish_are_redis_unavailable(error):
    assert redis_unavailable(error) is error
    assert redis_unavailable(Reject(error, requeue=False)) is error  # Task.retry's publish failed


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("NOSCRIPT"),  # Redis answered
        TransientError("Intercom answered 503"),
        Reject(TransientError("x"), requeue=False),
        Reject(redis.ConnectionError("refused"), requeue=True),  # already handed back
        Reject("a reason", requeue=False),
    ],
)
def test_anything_else_is_not(error):
    assert redis_unavailable(error) is None
