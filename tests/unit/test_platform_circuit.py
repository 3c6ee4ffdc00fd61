"""What each end of a platform read (worker or data connector) tells the shared circuit (pure)."""

from __future__ import annotations

import pytest

from sync_worker.platform import (
    PlatformAuthError,
    PlatformContractError,
    PlatformRateLimited,
    PlatformRequestError,
    PlatformTimedOut,
    PlatformUnavailable,
)
from sync_worker.platform_circuit import ANSWERED, FAILURE, NO_VERDICT, SUCCESS, circuit_outcome
from sync_worker.ratelimit import RateLimitWait


@pytest.mark.parametrize(
    ("error", "full_timeout", "outcome"),
    [
        (None, False, SUCCESS),
        (PlatformTimedOut("timed out"), True, FAILURE),  # waited what a worker waits
        (PlatformTimedOut("timed out"), False, NO_VERDICT),  # a worker could still have been answered
        (PlatformUnavailable("refused"), False, FAILURE),
        (PlatformUnavailable("answered 503", status=503), False, FAILURE),
        (PlatformRateLimited("answered 429", retry_after=1.0), False, ANSWERED),
        (PlatformAuthError("answered 401", status=401), False, ANSWERED),
        (PlatformRequestError("answered 422", status=422), False, ANSWERED),
        (PlatformContractError("broken record"), False, ANSWERED),
        (RateLimitWait(1.0, "platform"), False, NO_VERDICT),  # nothing was sent
        (ConnectionError("redis"), False, NO_VERDICT),
    ],
)
def test_circuit_outcome(error: BaseException | None, full_timeout: bool, outcome: str) -> None:
    assert circuit_outcome(error, full_timeout=full_timeout) == outcome
