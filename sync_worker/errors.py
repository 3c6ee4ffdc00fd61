"""The error classes every part of the sync raises, split by what a retry can do.

Guarantees: every failure the worker can meet is a :class:`SyncError` with a short
machine ``code`` and a human ``message``; ``transient`` says whether trying again
later can succeed (timeouts, connection errors, 5xx, 429) or not (bad input,
4xx, schema clashes, a contact that is gone). The task retries exactly the
transient ones and parks the rest in the dead-letter store, except the errors about
the whole workspace (a refused token, a schema problem): those halt their upstream
(:mod:`sync_worker.halts`) and the work waits instead.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of all sync failures."""

    transient: bool = False
    code: str = "sync_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TransientError(SyncError):
    """Trying again later can succeed."""

    transient = True
    code = "transient"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """A wait for a rate limit, ours or an upstream's 429, not a failure: a task reschedules itself
    ``retry_after`` seconds later without spending a retry (``sync_contact``, the referral intake)."""

    code = "rate_limited"


class PermanentError(SyncError):
    """Trying again with the same input will fail the same way."""

    transient = False
    code = "permanent"
