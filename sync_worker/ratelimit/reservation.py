"""Reserved tokens: a run's calls taken together, and a token promised in a later window.

Why our own: Celery's ``rate_limit`` is per worker and knows nothing of a shared budget, and
kombu has no notion of a token held by a message; the reservations live in the limiter's own
Redis hash (:mod:`.limiter`, on Redis's clock) so every worker counts them.

Guarantees (the data and the per-thread session; the counting is :meth:`RateLimiter.take`'s):

- a :class:`Reservation` names one window (its id on Redis's clock, ``floor(t / window)``) and
  the tokens promised in it; it is plain data that survives a Celery message
  (:meth:`Reservation.to_kwargs`, :meth:`Reservation.from_kwargs`, which reads ``None`` or
  anything malformed as no reservation: a message never fails on it);
- :func:`reserving` opens a session for one run on this thread: the hooks take the run's
  ``calls`` tokens of ``upstream`` together at its first call (or redeem the reservation the run
  carries), so the calls after the first find their token already counted; when the session
  ends, tokens it still holds are given back to their window (best effort: a Redis error there
  only leaves them unused, it never masks how the run ended);
- a reservation handed to a :class:`~sync_worker.ratelimit.limiter.RateLimitWait` leaves the
  session with the error (``carried``): it is not given back, the rescheduled run redeems it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from sync_worker.logs import log_event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """``tokens`` promised in window ``window`` (window id on Redis's clock) of limiter ``upstream``."""

    upstream: str
    window: int
    tokens: int

    def to_kwargs(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "window": self.window, "tokens": self.tokens}

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any] | None) -> Reservation | None:
        if not isinstance(kwargs, Mapping):
            return None
        try:
            found = cls(str(kwargs["upstream"]), int(kwargs["window"]), int(kwargs["tokens"]))
        except (KeyError, TypeError, ValueError):
            return None
        return found if found.tokens > 0 and found.window >= 0 else None


@dataclass(frozen=True)
class Take:
    """One answer of :meth:`RateLimiter.take`.

    ``granted``: a token for this call now. ``held``: what the caller holds afterwards (the
    tokens left of its batch, or the reservation made or kept), None when nothing. ``wait``
    (refused only): seconds until the held reservation's token is due, or until the next try.
    ``paused``: refused while a pause is in force (a 429, a ``Retry-After``): the wait is the
    upstream's, not the budget's.
    """

    granted: bool
    wait: float
    seq: int
    held: Reservation | None
    paused: bool
    at: float


@dataclass
class Session:
    """One run's use of one upstream's limiter (see :func:`reserving`)."""

    upstream: str
    calls: int
    held: Reservation | None = None
    started: bool = False
    give_back: Callable[[Reservation], None] | None = None

    def wanted(self) -> int:
        """Tokens to ask for now: those held, else the run's planned calls at its first call, else one."""
        if self.held is not None:
            return self.held.tokens
        return 1 if self.started else max(1, self.calls)

    def carry(self) -> Reservation | None:
        """Hand the held reservation over (to a reschedule): the session no longer gives it back."""
        held, self.held = self.held, None
        return held


_local = threading.local()


def current(upstream: str) -> Session | None:
    """The session open on this thread for ``upstream``, if any."""
    session: Session | None = getattr(_local, "session", None)
    return session if session is not None and session.upstream == upstream else None


@contextmanager
def reserving(upstream: str, calls: int, held: Reservation | None = None) -> Iterator[Session]:
    """A session for one run that plans ``calls`` calls to ``upstream``, redeeming ``held`` first."""
    if held is not None and held.upstream != upstream:
        held = None
    session = Session(upstream, calls, held)
    previous = getattr(_local, "session", None)
    _local.session = session
    try:
        yield session
    finally:
        _local.session = previous
        left = session.carry()
        if left is not None and session.give_back is not None:
            try:
                session.give_back(left)
            except redis_lib.RedisError as exc:  # only budget left unused; never mask the run's end
                log_event(
                    logger, "reservation_give_back_failed", logging.WARNING, exc_type=type(exc).__name__
                )
