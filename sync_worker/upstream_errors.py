"""The errors of an upstream whose answers say no more than a status and a message (the platform,
the referral program), and the one status table that types them.

Guarantees:
- :class:`UpstreamError` carries the HTTP ``status`` (None without a response) and the
  :class:`~sync_worker.errors.SyncError` ``code``; :class:`UpstreamRateLimited` is also a
  :class:`~sync_worker.errors.RateLimited` with ``retry_after`` seconds;
- :meth:`StatusTable.error_for` (pure: no I/O, ``now`` in Unix seconds) types a non-2xx answer the
  same way for every such upstream: 429 its rate-limited error (``Retry-After`` read by
  :func:`~sync_worker.ratelimit.headers.retry_after_seconds`, ``default_retry_after`` when it says
  nothing usable), 401/403 its auth error, any other 4xx its request error, anything else its
  unavailable error; the message names the upstream, the operation and the status, and the
  upstream's own message (its body's ``message_field``) when it sent one as a string.

Intercom's answers say more (error codes, a merged contact's survivor, the window's reset), so
its table stays its own (:func:`sync_worker.intercom.error_for_response`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_worker.errors import RateLimited, SyncError
from sync_worker.ratelimit.headers import retry_after_seconds


class UpstreamError(SyncError):
    """A failed call of an upstream; ``status`` is the HTTP status (None without a response)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.status = status


class UpstreamRateLimited(UpstreamError, RateLimited):
    """429: wait ``retry_after`` seconds before the next call."""

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


@dataclass(frozen=True)
class StatusTable:
    """One upstream's error classes by the kind of status, and where its body puts its message."""

    label: str
    message_field: str
    rate_limited: type[UpstreamRateLimited]
    auth: type[UpstreamError]
    request: type[UpstreamError]
    unavailable: type[UpstreamError]
    default_retry_after: float = 1.0

    def error_for(
        self, status: int, headers: Mapping[str, str], payload: Any, *, operation: str, now: float
    ) -> UpstreamError:
        """The typed error for a non-2xx answer (see the module's guarantees)."""
        message = payload.get(self.message_field) if isinstance(payload, Mapping) else None
        text = f"{self.label} {operation} answered {status}" + (
            f": {message}" if isinstance(message, str) and message else ""
        )
        if status == 429:
            wait = retry_after_seconds(headers, now=now, default=self.default_retry_after)
            return self.rate_limited(text, retry_after=wait)
        if status in (401, 403):
            return self.auth(text, status=status)
        if 400 <= status < 500:
            return self.request(text, status=status)
        return self.unavailable(text, status=status)
