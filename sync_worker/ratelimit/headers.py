"""Reading the upstreams' rate-limit headers (pure functions, no I/O).

Guarantees: header names are matched case-insensitively; a missing or
malformed header yields ``None`` rather than an exception, so a response with
odd headers never fails a sync on its way through the hooks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class UpstreamWindow:
    """Intercom's view of the current window: ``X-RateLimit-Limit/Remaining/Reset`` (Unix seconds)."""

    limit: int
    remaining: int
    reset_at: float


@dataclass(frozen=True)
class RetryAfter:
    """A ``Retry-After`` value: either a delay in seconds or an absolute time (Unix seconds)."""

    seconds: float | None = None
    until: float | None = None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in any letter case, or None."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def parse_intercom_window(headers: Mapping[str, str]) -> UpstreamWindow | None:
    """Intercom's ``X-RateLimit-*`` headers, or None unless remaining and reset are both readable."""
    remaining = _int(header(headers, "X-RateLimit-Remaining"))
    reset_at = _int(header(headers, "X-RateLimit-Reset"))
    if remaining is None or reset_at is None:
        return None
    limit = _int(header(headers, "X-RateLimit-Limit")) or 0
    return UpstreamWindow(limit=limit, remaining=remaining, reset_at=float(reset_at))


def parse_retry_after(headers: Mapping[str, str]) -> RetryAfter | None:
    """``Retry-After`` as delay-seconds or as an HTTP date (one without a zone read as UTC); None
    when absent or unreadable (a delay that is not a finite number included)."""
    value = header(headers, "Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return RetryAfter(until=when.timestamp())
    if not math.isfinite(seconds):
        return None
    return RetryAfter(seconds=max(0.0, seconds))


def retry_after_seconds(headers: Mapping[str, str], *, now: float, default: float) -> float:
    """Seconds to wait that ``Retry-After`` asks for (``now`` in Unix seconds), never negative;
    ``default`` when the header is absent or unreadable."""
    retry_after = parse_retry_after(headers)
    if retry_after is None:
        return default
    if retry_after.seconds is not None:
        return retry_after.seconds
    until = retry_after.until if retry_after.until is not None else now
    return max(0.0, until - now)
