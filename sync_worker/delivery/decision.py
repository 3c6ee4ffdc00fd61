"""The retry decision every task shares: retry after a countdown, or give up (park, fail).

Guarantees (pure): :func:`backoff_seconds` is exponential backoff with full jitter;
:func:`retry_countdown` retries a transient error (or any error that is not one of ours: a bug in
one contact of a bulk chunk) while ``attempt`` is under the budget, after the backoff or the
error's own ``retry_after`` when that is longer (capped at ``retry_after_cap``), and answers None
for a permanent error or a spent budget. ``sync_contact``, the re-sync's walk and its chunks
all decide with it, so a change of the rule is one change.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sync_worker.errors import SyncError, TransientError

if TYPE_CHECKING:
    from sync_worker.config import Settings


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: a random wait in [0.5, 1] x min(cap, base x 2^attempt)."""
    return min(cap, base * (2**attempt)) * random.uniform(0.5, 1.0)


def retry_countdown(
    error: BaseException,
    attempt: int,
    *,
    max_retries: int,
    backoff: Callable[[int], float],
    retry_after_cap: float = math.inf,
) -> float | None:
    """Seconds until the next try of what failed with ``error`` on try ``attempt`` (0: the first),
    or None when it is not tried again."""
    if isinstance(error, SyncError) and not error.transient:
        return None
    if attempt >= max_retries:
        return None
    countdown = backoff(attempt)
    if isinstance(error, TransientError) and error.retry_after:
        countdown = max(countdown, min(error.retry_after, retry_after_cap))
    return countdown


def settings_backoff(settings: Settings) -> Callable[[int], float]:
    """:func:`backoff_seconds` with the settings' base and cap (``SYNC_RETRY_BACKOFF_*``)."""
    return lambda attempt: backoff_seconds(
        attempt, settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds
    )


def task_retry_countdown(error: BaseException, attempt: int, settings: Settings) -> float | None:
    """:func:`retry_countdown` as a task decides it: ``SYNC_TASK_MAX_RETRIES`` tries, the settings'
    backoff, an error's ``retry_after`` capped at ``SYNC_MAX_RESCHEDULE_SECONDS``."""
    return retry_countdown(
        error,
        attempt,
        max_retries=settings.task_max_retries,
        backoff=settings_backoff(settings),
        retry_after_cap=settings.max_reschedule_seconds,
    )
