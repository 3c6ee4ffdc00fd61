"""Which errors mean that Redis (the broker and the shared state) cannot be used now.

Guarantees: :func:`redis_unavailable` names the Redis error behind an error when Redis is
unreachable or answers but refuses to store anything (a read-only replica, out of memory,
persistence failing, too few replicas, a master down, a script past ``busy-reply-threshold``);
any other error reply (a bug in one of our scripts, a wrong key type) is not, so a message is
never handed back for ever for it.
"""

from __future__ import annotations

import redis as redis_lib
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

#: A run handing its message back first waits a random time in this range (seconds): where the
#: requeue itself works (Redis refused only our client), the message must not loop at full speed.
HAND_BACK_PAUSE_SECONDS = (0.5, 2.0)
#: Redis (the broker and the shared state) cannot be used: redis-py's connection errors (loading
#: after a restart included), kombu's for a publish (a retry, a fresh sync), and the replies of a
#: Redis that answers but refuses to store: a read-only replica (``READONLY``), out of memory
#: (``OOM``: ``maxmemory`` with ``noeviction``).
REDIS_UNAVAILABLE = (
    redis_lib.ConnectionError,
    redis_lib.TimeoutError,
    redis_lib.ReadOnlyError,
    redis_lib.OutOfMemoryError,
    redis_lib.exceptions.MasterDownError,
    OperationalError,
)
#: Error replies meaning the same that redis-py has no class for (a plain ``ResponseError``):
#: persistence failing (``stop-writes-on-bgsave-error``, an AOF write error), too few replicas
#: (``min-replicas-to-write``), a replica cut off from its master (``replica-serve-stale-data no``;
#: ``MasterDownError`` outside a pipeline), a script running past ``busy-reply-threshold``.
REFUSED_WRITE_REPLIES = ("MISCONF ", "NOREPLICAS ", "MASTERDOWN ", "BUSY ")
#: What redis-py puts before the reply of a pipeline's failed command.
_PIPELINE_NOTE = " of pipeline caused error: "


def redis_unavailable(error: BaseException) -> BaseException | None:
    """The Redis error behind ``error`` when it means Redis cannot be used now, else None.

    Unreachable, or answering but refusing to store (:data:`REDIS_UNAVAILABLE`,
    :data:`REFUSED_WRITE_REPLIES`); any other error reply (a bug in a script, a wrong key type)
    is not, or its message would be handed back for ever. Celery turns a retry it could not
    publish into ``Reject(requeue=False)``, which would drop the message: that one counts too.
    """
    if isinstance(error, Reject) and not error.requeue:
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, REDIS_UNAVAILABLE):
        return error
    if isinstance(error, redis_lib.ResponseError) and _reply(error).startswith(REFUSED_WRITE_REPLIES):
        return error
    return None


def _reply(error: redis_lib.ResponseError) -> str:
    """The error reply as Redis sent it (without what redis-py adds for a pipeline's command)."""
    text = str(error)
    if text.startswith("Command # ") and _PIPELINE_NOTE in text:
        text = text.split(_PIPELINE_NOTE, 1)[1]
    return text
