"""Which failures of a run mean "Redis cannot be used now", so the task hands its message back.

The replies of a real Redis refusing writes are in ``tests/integration/test_resilience_redis_refusals.py``.
"""

from __future__ import annotations

import pytest
import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from sync_worker.delivery.redisloss import redis_unavailable
from sync_worker.errors import TransientError


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        redis.BusyLoadingError("loading the append-only file"),  # just after a restart
        OperationalError("publish failed"),
        redis.ReadOnlyError("You can't write against a read only replica."),  # a failover
        redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable"),
        redis.ResponseError("MISCONF Errors writing to the AOF file: No space left on device"),
        redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
        redis.exceptions.MasterDownError(
            "Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        ),
        redis.ResponseError(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        ),
        redis.ResponseError(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        ),
        # redis-py names a pipeline's failed command before the reply
        redis.ResponseError("Command # 1 (SADD k v) of pipeline caused error: MISCONF Redis is unable"),
    ],
)
def test_unreachable_or_refusing_writes_and_a_retry_celery_could_not_publish_are_redis_unavailable(error):
    assert redis_unavailable(error) is error
    assert redis_unavailable(Reject(error, requeue=False)) is error  # Task.retry's publish failed


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("NOSCRIPT"),  # Redis answered
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.ResponseError("Unknown Redis command called from script script: 1234, on @user_script:1."),
        redis.ResponseError("bad input"),  # a script's own error reply
        redis.ResponseError("Command # 1 (LPUSH k x) of pipeline caused error: WRONGTYPE Operation"),
        redis.ResponseError("ERR something MISCONF"),  # only a reply that starts with it
        TransientError("Intercom answered 503"),
        Reject(TransientError("x"), requeue=False),
        Reject(redis.ConnectionError("refused"), requeue=True),  # already handed back
        Reject("a reason", requeue=False),
    ],
)
def test_anything_else_is_not(error):
    assert redis_unavailable(error) is None
