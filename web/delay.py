"""How long a newly queued sync is expected to wait before it runs.

Guarantees: :func:`expected_delay_seconds` never raises and never blocks on
anything but Redis; ``None`` means "no estimate" (the 202 body then carries
``"expected_delay_seconds": null``).

PLACEHOLDER: the estimate (from the shared rate limiter's budget and the length
of the realtime queue) is to be filled in here; the trigger route already calls
this function and puts its answer in the 202 body.
"""

from __future__ import annotations

import redis as redis_lib

from sync_worker.config import Settings


def expected_delay_seconds(client: redis_lib.Redis, settings: Settings) -> float | None:
    """Seconds until a sync queued now is expected to run; None while there is no estimate."""
    del client, settings  # used once the estimate is implemented
    return None
