"""How long a newly queued sync is expected to wait before it runs.

Guarantees:
- :func:`estimate_delay` (pure) is the Intercom limiter's current wait plus the
  realtime queue's work at the rate the limiter allows: ``queued * CALLS_PER_SYNC /
  (limit / window)``; under :data:`WORTH_SAYING_SECONDS` it is ``None`` (no delay
  worth telling), otherwise seconds rounded up to a tenth;
- :func:`expected_delay_seconds` reads that state without changing it, in one
  Redis round trip (the limiter's read-only look and ``LLEN`` of the realtime
  queue, pipelined by :meth:`~sync_worker.ratelimit.limiter.RateLimiter.inspect_with`
  on the limiter's Redis, which is the broker's: one ``REDIS_URL``), never raises
  and never blocks on anything but Redis: a Redis error is ``None`` (the 202 body
  then carries ``"expected_delay_seconds": null``).
"""

from __future__ import annotations

import logging
import math

import redis as redis_lib

from sync_worker.celery_app import REALTIME_QUEUE
from sync_worker.logs import log_event
from sync_worker.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

#: Intercom calls one realtime sync makes: a contact lookup or search, then the PUT (schema
#: creation is rare). The upper end of 1-2, so the estimate errs on the long side.
CALLS_PER_SYNC = 2
#: Below this the delay is not worth telling the caller.
WORTH_SAYING_SECONDS = 1.0


def estimate_delay(
    wait: float, queued: int, rate: float, *, calls_per_sync: float = CALLS_PER_SYNC
) -> float | None:
    """Seconds until a sync queued behind ``queued`` messages runs, or None when under a second (pure).

    ``wait``: seconds until the limiter grants its next token; ``rate``: tokens per second.
    """
    backlog = max(0, queued) * calls_per_sync / rate if rate > 0 else 0.0
    delay = max(0.0, wait) + backlog
    if delay < WORTH_SAYING_SECONDS:
        return None
    return math.ceil(round(delay * 10, 6)) / 10  # round first: 1.4 * 10 is 14.000000000000002


def expected_delay_seconds(intercom: RateLimiter) -> float | None:
    """Seconds until a sync queued now is expected to run; None when short or unknown."""
    try:
        budget, [queued] = intercom.inspect_with(lambda pipe: pipe.llen(REALTIME_QUEUE))
    except redis_lib.RedisError as exc:
        log_event(logger, "delay_unknown", logging.WARNING, exc_type=type(exc).__name__)
        return None
    return estimate_delay(budget.wait, int(queued), budget.rate)
