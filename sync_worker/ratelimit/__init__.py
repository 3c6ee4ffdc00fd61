"""Shared rate limiting of the upstream calls (Redis + Lua, Redis's clock).

- :mod:`.limiter`: :class:`RateLimiter`, one fixed-window budget per upstream,
  shared by every worker process, following the upstream's own count and pauses;
- :mod:`.hooks`: :class:`RateLimitHooks`, the HTTP clients' hooks that take a
  token before each call and feed each response's rate-limit headers back;
- :mod:`.reservation`: a run's calls taken together and tokens promised in a later window
  (:func:`reserving`, :class:`Reservation`), so a waiting run is woken when its token is there;
- :mod:`.headers`: pure parsing of ``X-RateLimit-*`` and ``Retry-After``;
- :mod:`.slices`: a budget taken in slices for an upstream that counts its window on its own
  clock (:func:`sliced_budget`: the referral program's minute).
"""

from sync_worker.ratelimit.headers import RetryAfter, UpstreamWindow, parse_intercom_window, parse_retry_after
from sync_worker.ratelimit.hooks import RateLimitHooks
from sync_worker.ratelimit.limiter import Decision, RateLimiter, RateLimitWait
from sync_worker.ratelimit.reservation import Reservation, reserving

__all__ = [
    "Decision",
    "RateLimitHooks",
    "RateLimitWait",
    "RateLimiter",
    "Reservation",
    "RetryAfter",
    "UpstreamWindow",
    "parse_intercom_window",
    "parse_retry_after",
    "reserving",
]
