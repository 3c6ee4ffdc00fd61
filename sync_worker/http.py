"""What the HTTP clients let the rest of the worker hook into.

Guarantees: every upstream client (Intercom, the platform, the referral program) calls
``hooks.before_request`` once before every attempt they send (so a shared rate
limiter sees every call, retries included) and ``hooks.after_response`` once
for every response they receive (so the limiter can follow the upstream's own
rate-limit headers). A client built without hooks sends unthrottled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RequestHooks(Protocol):
    def before_request(self, upstream: str, operation: str) -> None:
        """Called before each attempt; may block, or raise to refuse the call."""

    def after_response(self, upstream: str, status: int, headers: Mapping[str, str]) -> None:
        """Called with every response's status and headers."""


class NoHooks:
    """Hooks that do nothing."""

    def before_request(self, upstream: str, operation: str) -> None:
        return None

    def after_response(self, upstream: str, status: int, headers: Mapping[str, str]) -> None:
        return None
