"""The clients' request hooks that route every upstream call through its shared limiter.

Guarantees (``RateLimitHooks`` implements :class:`sync_worker.http.RequestHooks`):
- ``before_request`` takes a token from the upstream's limiter, waiting at most
  ``max_wait`` seconds, else raises :class:`RateLimitWait` so the task
  reschedules itself; an upstream without a limiter is not throttled;
- inside a run's session (:func:`~sync_worker.ratelimit.reservation.reserving`) it takes
  the run's planned calls together at the first call, or redeems the reservation the run
  carries (:meth:`RateLimiter.take`); a token it must wait for is reserved, never looked
  for again at a window's start: a reserved token due within ``reserved_wait`` seconds
  (and not held back by a pause) is waited for inline, the worker holding its one message
  while the others stay queued; one due later raises :class:`RateLimitWait` carrying the
  reservation, for the rescheduled run to redeem when its token is really there;
- ``after_response`` makes every worker follow the upstream: Intercom's
  ``X-RateLimit-*`` headers lower the shared budget (:meth:`RateLimiter.observe`);
  a 429 pauses every worker (Intercom: until its reset, bounded by one window
  plus the skew margin since the reset is read on Intercom's clock; the
  platform and the referral program: for its ``Retry-After``, one window when absent);
- given ``metrics``, every attempt let through is counted by upstream, every response
  by upstream and status (an attempt without one timed out or failed), and every call
  that found no token at once by how it waited (slept inline, or rescheduled), with the
  seconds slept (memory only: :class:`~sync_worker.servicemetrics.ServiceMetrics`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from sync_worker.logs import log_event
from sync_worker.ratelimit import reservation
from sync_worker.ratelimit.headers import parse_intercom_window, parse_retry_after
from sync_worker.ratelimit.limiter import RateLimiter, RateLimitWait
from sync_worker.servicemetrics import ServiceMetrics

logger = logging.getLogger(__name__)

INTERCOM = "intercom"
#: The referral program (:mod:`sync_worker.referral`): ``Retry-After`` on a 429, like the platform.
REFERRAL = "referral"
#: How far ahead a session may reserve (seconds); a task's countdown is bounded by
#: ``SYNC_MAX_RESCHEDULE_SECONDS`` anyway (a run woken before its window waits again, reservation kept).
RESERVE_AHEAD_SECONDS = 300.0


class RateLimitHooks:
    def __init__(
        self,
        limiters: Mapping[str, RateLimiter],
        max_wait: float,
        reserved_wait: float | None = None,
        *,
        metrics: ServiceMetrics | None = None,
    ):
        self.limiters = dict(limiters)
        self.max_wait = max_wait
        self.reserved_wait = max_wait if reserved_wait is None else max(max_wait, reserved_wait)
        self.metrics = metrics

    def before_request(self, upstream: str, operation: str) -> None:
        limiter = self.limiters.get(upstream)
        if limiter is not None:
            session = reservation.current(upstream)
            if session is None:
                self._take_token(upstream, limiter)
            else:
                self._take_in(upstream, session, limiter)
        if self.metrics is not None:
            self.metrics.upstream_request(upstream)

    def _take_token(self, upstream: str, limiter: RateLimiter) -> None:
        if self.metrics is None:
            limiter.acquire(self.max_wait)
            return
        if limiter.try_acquire() == 0.0:  # the common case: a token at once (a refusal takes nothing)
            return
        started = time.monotonic()
        try:
            limiter.acquire(self.max_wait)
        except RateLimitWait:
            self.metrics.rate_limit_wait(upstream, how="rescheduled")
            raise
        self.metrics.rate_limit_wait(upstream, how="inline", seconds=time.monotonic() - started)

    def _take_in(self, upstream: str, session: reservation.Session, limiter: RateLimiter) -> None:
        """A token for this call of the session's run: see the module's guarantees."""
        session.give_back = limiter.release
        started = time.monotonic()
        slept = False
        while True:
            took = limiter.take(session.wanted(), session.held, horizon_seconds=RESERVE_AHEAD_SECONDS)
            session.held = took.held
            if took.granted:
                session.started = True
                if slept and self.metrics is not None:
                    self.metrics.rate_limit_wait(upstream, how="inline", seconds=time.monotonic() - started)
                return
            inline = self.reserved_wait if took.held is not None and not took.paused else self.max_wait
            if took.wait > inline - (time.monotonic() - started):
                if self.metrics is not None:
                    self.metrics.rate_limit_wait(upstream, how="rescheduled")
                raise RateLimitWait(took.wait, limiter.name, reservation=session.carry())
            # Due at a time of its own (reservations are spread through their window): no jitter needed.
            time.sleep(took.wait)
            slept = True

    def after_response(self, upstream: str, status: int, headers: Mapping[str, str]) -> None:
        if self.metrics is not None:
            self.metrics.upstream_response(upstream, status)
        limiter = self.limiters.get(upstream)
        if limiter is None:
            return
        if upstream == INTERCOM:
            self._follow_intercom(limiter, status, headers)
        elif status == 429:
            self._follow_retry_after(limiter, headers)

    @staticmethod
    def _follow_intercom(limiter: RateLimiter, status: int, headers: Mapping[str, str]) -> None:
        window = parse_intercom_window(headers)
        if window is not None:
            limiter.observe(window.limit, window.remaining, window.reset_at)
        if status != 429:
            return
        if window is not None:
            paused = limiter.pause_until(
                window.reset_at + limiter.skew_margin_seconds,
                max_seconds=limiter.window_seconds + limiter.skew_margin_seconds,
            )
        else:
            paused = limiter.pause_for(limiter.window_seconds)
        log_event(logger, "rate_limit_paused", level=logging.WARNING, upstream=limiter.name, seconds=paused)

    @staticmethod
    def _follow_retry_after(limiter: RateLimiter, headers: Mapping[str, str]) -> None:
        retry_after = parse_retry_after(headers)
        if retry_after is not None and retry_after.until is not None:
            paused = limiter.pause_until(retry_after.until)
        elif retry_after is not None and retry_after.seconds is not None:
            paused = limiter.pause_for(retry_after.seconds)
        else:
            paused = limiter.pause_for(limiter.window_seconds)
        log_event(logger, "rate_limit_paused", level=logging.WARNING, upstream=limiter.name, seconds=paused)
