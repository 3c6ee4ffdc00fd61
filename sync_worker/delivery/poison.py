"""How many runs of one task message died with their worker (a poison message's count).

Guarantees: each run adds a token of its own under ``keys.delivery_runs`` (per task id and
retry) and a run that hands its message back takes its token out again (:func:`take_back`), so
the tokens a run finds are runs that died, never hand-backs (best effort: where Redis refuses that
``SREM`` too, as it does every write unless it only ran out of memory, or is unreachable, that run
counts); a run that ends without handing its message back deletes the key (:func:`forget`), so
acknowledged messages leave none (best effort: one left behind expires after
:data:`DELIVERY_RUNS_TTL_SECONDS`). Neither :func:`take_back` nor :func:`forget` ever raises.
"""

from __future__ import annotations

import logging

import redis as redis_lib

from sync_worker import keys
from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

#: Runs of one message that may die with their worker before the next run parks it instead.
MAX_DELIVERIES = 3
DELIVERY_RUNS_TTL_SECONDS = 24 * 3600


def count_run(client: redis_lib.Redis, task_id: str, retries: int, run: str) -> int:
    """How many runs of this message (this retry of it) did not hand it back, this one (``run``) included."""
    key = keys.delivery_runs(task_id, retries)
    pipe = client.pipeline()
    pipe.sadd(key, run)
    pipe.expire(key, DELIVERY_RUNS_TTL_SECONDS)
    pipe.scard(key)
    _, _, count = pipe.execute()
    return int(count)


def take_back(client: redis_lib.Redis, task_id: str, retries: int, run: str) -> None:
    """This run hands its message back: it was no worker death, so it no longer counts.

    Best effort, one quick try (``client``: short timeouts, no retries): Redis may be what failed
    (SREM still works when Redis is out of memory; not when it is unreachable or refuses writes
    otherwise, and then this run counts as a death). Never raises: the hand-back must go on.
    """
    try:
        client.srem(keys.delivery_runs(task_id, retries), run)
    except Exception as exc:  # whatever it is, the Reject that follows matters more
        log_event(logger, "delivery_take_back_failed", logging.WARNING, exc_info=exc)


def forget(client: redis_lib.Redis, task_id: str, retries: int) -> None:
    """The message is acknowledged (the run ended, a retry is a new message): its tokens are of no
    more use, so the key goes now instead of after :data:`DELIVERY_RUNS_TTL_SECONDS`.

    Best effort, one quick try, never raises: a key left behind only expires later.
    """
    try:
        client.delete(keys.delivery_runs(task_id, retries))
    except Exception as exc:  # the run's outcome is stored: nothing else depends on this
        log_event(logger, "delivery_forget_failed", logging.WARNING, exc_type=type(exc).__name__)
