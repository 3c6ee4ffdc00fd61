"""A fixed-window rate limiter shared by every worker process through Redis.

Guarantees:
- every decision is one Lua script run on Redis's own clock (``TIME``): the
  workers' clocks are never read, and two workers can never both take the last
  token of a window;
- within one window (``window id = floor(redis_now / window_seconds)``, so the
  windows are aligned on multiples of the window length, like Intercom's
  10-second windows) at most ``limit`` tokens are granted, where ``limit`` is
  the configured one or, when the upstream told us another, that one;
- while a pause is set (:meth:`RateLimiter.pause_until`, after a 429) no token
  is granted to anyone;
- after :meth:`RateLimiter.observe` no more tokens are granted, until the
  upstream's window ends, than the upstream said remain (minus the calls that
  may not have reached it yet, see :meth:`RateLimiter.observe`); we only ever
  lower our budget from what the upstream says, never raise it above our own count;
- a refusal says how long to wait (end of the window, of the pause, or of the
  upstream's window), never 0, so a caller can sleep or reschedule exactly.
- reservations (:meth:`RateLimiter.take`, used by a run's session,
  :mod:`sync_worker.ratelimit.reservation`): a run's calls are counted in a window
  together, and a caller that must wait is promised tokens in the first later window
  with room (counted in that window's ``limit`` when promised, so a window's grants,
  reserved ones included, never pass its limit). A reserved token is granted only
  inside its own window on Redis's clock, never before it starts; a pause, the
  upstream's cap or a lowered limit in force there refuses it like any token, and
  its reservation moves past them; one whose window is over is asked for again
  like any new request. Tokens a run did not use are given back to their window
  (:meth:`RateLimiter.release`).
- :meth:`RateLimiter.peek` (and :meth:`RateLimiter.inspect`) write nothing: they
  answer the wait a token request would get now (0.0: one is free) and the limit in force;
  :meth:`RateLimiter.inspect_with` answers the same look and the replies of other
  commands sent with it, in one round trip.

The same class serves Intercom (``limit`` calls per 10-second window) and the
platform (``N`` calls per second: ``window_seconds=1``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from sync_worker import keys
from sync_worker.errors import RateLimited
from sync_worker.ratelimit.reservation import Reservation, Take

#: How long a limit the upstream reported stays in force without being reported again.
OBSERVED_LIMIT_LIFETIME_SECONDS = 24 * 3600
#: How long an idle limiter's state is kept in Redis.
KEEP_SECONDS = 24 * 3600
#: Default allowance for the upstream's clock running behind Redis's (see ``observe``).
DEFAULT_SKEW_MARGIN_SECONDS = 1.0
#: Reserved tokens are spread over this share of their window (thousandths): the n-th token of a
#: window is due ``n / limit`` of the way through it, so its holders do not all come at its start,
#: and the last ones are due early enough that a holder a little late is still inside its window.
RESERVATION_SPREAD_PERMILLE = 800

# Shared by the scripts: now in milliseconds on Redis's clock; integers as exact decimal text.
_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(n) return string.format('%d', n) end
local function keep_at_least(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl < ms then redis.call('PEXPIRE', key, int(ms)) end
end
-- The current window's committed tokens (granted or promised) and granted ones: as stored when the
-- stored window is this one, else the tokens reserved for it and none granted yet (rolled = true).
local function window_counts(key, stored_win, stored_count, stored_used, win)
  if tonumber(stored_win or -1) == win then
    return tonumber(stored_count or 0), tonumber(stored_used or stored_count or 0), false
  end
  return tonumber(redis.call('HGET', key, 'r:' .. int(win)) or 0), 0, true
end
-- Stores the current window's counts; on a new window, drops the reservations of it and of the past.
local function save_window(key, win, count, used, rolled)
  redis.call('HSET', key, 'win', int(win), 'count', int(count), 'used', int(used))
  if rolled then
    for _, name in ipairs(redis.call('HKEYS', key)) do
      if string.sub(name, 1, 2) == 'r:' and tonumber(string.sub(name, 3)) <= win then
        redis.call('HDEL', key, name)
      end
    end
  end
end
"""

# KEYS[1] limiter hash. ARGV: configured limit, window ms, observed-limit lifetime ms, keep ms.
# Returns {granted 0/1, wait ms, grant sequence number, now ms}.
_ACQUIRE = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local window = tonumber(ARGV[2])
local f = redis.call('HMGET', key, 'win', 'count', 'seq', 'limit', 'limit_at', 'pause', 'cap', 'cap_until', 'used')
local limit = tonumber(ARGV[1])
if f[4] and f[5] and now - tonumber(f[5]) < tonumber(ARGV[3]) then limit = tonumber(f[4]) end
local seq = tonumber(f[3] or 0)
local pause = tonumber(f[6] or 0)
if pause > now then return {0, pause - now, seq, now} end
local win = math.floor(now / window)
local count, used, rolled = window_counts(key, f[1], f[2], f[9], win)
if count >= limit then return {0, (win + 1) * window - now, seq, now} end
local cap_until = tonumber(f[8] or 0)
if cap_until > now and seq >= tonumber(f[7] or 0) then return {0, cap_until - now, seq, now} end
seq = seq + 1
redis.call('HSET', key, 'seq', int(seq))
save_window(key, win, count + 1, used + 1, rolled)
keep_at_least(key, tonumber(ARGV[4]))
return {1, 0, seq, now}
"""
)

# KEYS[1] limiter hash. ARGV: limit, remaining, upstream reset (ms, upstream clock), granted seq
# (-1: unknown), window ms, skew margin ms, keep ms. Returns the cap's remaining grants.
_OBSERVE = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local remaining = math.max(0, tonumber(ARGV[2]))
local reset = tonumber(ARGV[3])
local window = tonumber(ARGV[5])
local margin = tonumber(ARGV[6])
local f = redis.call('HMGET', key, 'seq', 'cap', 'cap_until', 'cap_reset')
local seq = tonumber(f[1] or 0)
if limit > 0 then redis.call('HSET', key, 'limit', int(limit), 'limit_at', int(now)) end
local base = tonumber(ARGV[4])
if base < 0 or base > seq then base = seq end
local cap = base + remaining
local until_ = reset + margin
local latest = now + window + margin
if until_ > latest or until_ <= now then until_ = latest end
local old_until = tonumber(f[3] or 0)
if old_until > now then
  local old_reset = tonumber(f[4] or 0)
  if old_reset > reset then
    keep_at_least(key, tonumber(ARGV[7]))
    return math.max(0, tonumber(f[2]) - seq)
  end
  if old_reset == reset then
    cap = math.min(cap, tonumber(f[2]))
    until_ = math.max(until_, old_until)
  end
end
redis.call('HSET', key, 'cap', int(cap), 'cap_until', int(until_), 'cap_reset', int(reset))
keep_at_least(key, math.max(tonumber(ARGV[7]), until_ - now))
return math.max(0, cap - seq)
"""
)

# KEYS[1] limiter hash. ARGV: until ms ('' = use ARGV[2]), for ms, at most ms ('' = no bound), keep ms.
# Returns the ms left of the pause in force (0: none).
_PAUSE = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local target
if ARGV[1] ~= '' then target = tonumber(ARGV[1]) else target = now + tonumber(ARGV[2]) end
if ARGV[3] ~= '' then target = math.min(target, now + tonumber(ARGV[3])) end
local current = tonumber(redis.call('HGET', key, 'pause') or 0)
if target > current and target > now then
  redis.call('HSET', key, 'pause', int(target))
  keep_at_least(key, target - now + tonumber(ARGV[4]))
  current = target
end
return math.max(0, current - now)
"""
)


# Read-only twin of _ACQUIRE (writes nothing). KEYS[1] limiter hash. ARGV: configured limit, window ms,
# observed-limit lifetime ms. Returns {wait ms (0: a token is free now), effective limit, tokens granted or
# reserved in the window}.
_PEEK = (
    _LUA_PRELUDE
    + """
local window = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'win', 'count', 'seq', 'limit', 'limit_at', 'pause', 'cap', 'cap_until')
local limit = tonumber(ARGV[1])
if f[4] and f[5] and now - tonumber(f[5]) < tonumber(ARGV[3]) then limit = tonumber(f[4]) end
local win = math.floor(now / window)
local count = window_counts(KEYS[1], f[1], f[2], f[2], win)
local wait = 0
local pause = tonumber(f[6] or 0)
if pause > now then wait = pause - now
elseif count >= limit then wait = (win + 1) * window - now
else
  local cap_until = tonumber(f[8] or 0)
  if cap_until > now and tonumber(f[3] or 0) >= tonumber(f[7] or 0) then wait = cap_until - now end
end
return {wait, limit, count}
"""
)

# KEYS[1] limiter hash. ARGV: configured limit, window ms, observed-limit lifetime ms, keep ms, tokens wanted,
# held window id (-1: none), tokens held in it, spread (thousandths of a window), horizon ms.
# A held reservation is redeemed in its own window only (before it: wait for it, kept; a pause or a cap
# lifting before the window ends: wait for that, kept; one lasting past it, or a lowered limit: its tokens
# are given back and asked for again; after it: asked for again). A reserved token is due no earlier than
# the upstream's cap in force lifts (the skew margin after the upstream's reset).
# Asking: the tokens wanted (at most the limit) all at once now when the window has room for them (the
# first is granted), else reserved together in the first window with room for them, no earlier than a
# pause or cap lifts.
# Returns {granted 0/1, wait ms, seq, window of the tokens held now (-1: none), tokens held, paused now 0/1, now}.
_TAKE = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[5])
local held = tonumber(ARGV[6])
local held_tokens = tonumber(ARGV[7])
local f = redis.call('HMGET', key, 'win', 'count', 'seq', 'limit', 'limit_at', 'pause', 'cap', 'cap_until', 'used')
local limit = tonumber(ARGV[1])
if f[4] and f[5] and now - tonumber(f[5]) < tonumber(ARGV[3]) then limit = tonumber(f[4]) end
local seq = tonumber(f[3] or 0)
local win = math.floor(now / window)
local count, used, rolled = window_counts(key, f[1], f[2], f[9], win)
local pause = tonumber(f[6] or 0)
local cap_until = tonumber(f[8] or 0)
local paused = pause > now
local capped = cap_until > now and seq >= tonumber(f[7] or 0)
local dirty = false
local function save()
  save_window(key, win, count, used, rolled)
  keep_at_least(key, tonumber(ARGV[4]))
end
local function grant(left)
  seq = seq + 1
  used = used + 1
  redis.call('HSET', key, 'seq', int(seq))
  save()
  return {1, 0, seq, win, left, 0, now}
end
local blocked = 0
if paused then blocked = 1 end
if held >= 0 then
  if held > win then return {0, held * window - now, seq, held, held_tokens, blocked, now} end
  if held == win then
    if not paused and not capped and used < limit then return grant(held_tokens - 1) end
    local lifts = 0
    if paused then lifts = pause end
    if capped and cap_until > lifts then lifts = cap_until end
    if used < limit and lifts < (win + 1) * window then return {0, lifts - now, seq, held, held_tokens, blocked, now} end
    count = math.max(used, count - held_tokens)
    dirty = true
  end
  wanted = held_tokens
end
if wanted > limit then wanted = limit end
if not paused and not capped and count + wanted <= limit then
  count = count + wanted
  return grant(wanted - 1)
end
local earliest = now
if paused then earliest = pause end
if capped and cap_until > earliest then earliest = cap_until end
local spread = tonumber(ARGV[8])
local last = math.floor((now + tonumber(ARGV[9])) / window)
for w = math.floor(earliest / window), last do
  local c = count
  if w ~= win then c = tonumber(redis.call('HGET', key, 'r:' .. int(w)) or 0) end
  if c + wanted <= limit then
    local at = math.max(earliest, w * window + math.floor(c * window * spread / (limit * 1000)))
    if cap_until > at then at = cap_until end
    if w == win then
      count = c + wanted
      dirty = true
    else
      redis.call('HSET', key, 'r:' .. int(w), int(c + wanted))
    end
    if dirty then save() else keep_at_least(key, tonumber(ARGV[4])) end
    return {0, math.max(1, at - now), seq, w, wanted, blocked, now}
  end
end
if dirty then save() end
return {0, math.max(1, (last + 1) * window - now), seq, -1, 0, blocked, now}
"""
)

# KEYS[1] limiter hash. ARGV: window ms, window id, tokens, keep ms. Gives back tokens reserved in that window and
# not used: in the current window they are free again at once; a past window's are gone anyway.
_RELEASE = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local held = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local win = math.floor(now / window)
if held > win then
  local name = 'r:' .. int(held)
  local left = tonumber(redis.call('HGET', key, name) or 0) - tokens
  if left > 0 then redis.call('HSET', key, name, int(left)) else redis.call('HDEL', key, name) end
elseif held == win then
  local f = redis.call('HMGET', key, 'win', 'count', 'used')
  local count, used, rolled = window_counts(key, f[1], f[2], f[3], win)
  save_window(key, win, math.max(used, count - tokens), used, rolled)
  keep_at_least(key, tonumber(ARGV[4]))
end
return 0
"""
)


@dataclass(frozen=True)
class Budget:
    """A look at a limiter without taking anything: ``wait`` is 0.0 when a token is free now;
    ``used``: the tokens of the current window granted or promised (reserved) already."""

    wait: float
    limit: int
    used: int
    window_seconds: float

    @property
    def rate(self) -> float:
        """Tokens per second the effective limit allows."""
        return self.limit / self.window_seconds


class RateLimitWait(RateLimited):
    """No token within the caller's ``max_wait``: try again in ``retry_in`` seconds (reschedule, do not block).

    ``reservation``, when set, is the token(s) promised to the caller for then: the rescheduled run
    carries it (:class:`~sync_worker.ratelimit.reservation.Reservation`) and redeems it."""

    code = "rate_limit_wait"

    def __init__(self, retry_in: float, name: str = "", reservation: Reservation | None = None):
        upstream = f" for {name}" if name else ""
        super().__init__(f"no rate-limit token{upstream} for {retry_in:.2f}s", retry_after=retry_in)
        self.retry_in = retry_in
        self.name = name
        self.reservation = reservation

    def __reduce__(self) -> tuple[type[RateLimitWait], tuple[float, str, Reservation | None]]:
        # Survives pickling (Celery may serialise exceptions) with its own arguments, not the message.
        return (type(self), (self.retry_in, self.name, self.reservation))


@dataclass(frozen=True)
class Decision:
    """One answer of the limiter: ``wait`` is 0.0 when granted; ``at`` is Redis's time of the decision."""

    granted: bool
    wait: float
    seq: int
    at: float


def limiter_key(name: str) -> str:
    return f"{keys.PREFIX}:ratelimit:{name}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class RateLimiter:
    """A named budget of ``limit`` calls per ``window_seconds``, shared through Redis."""

    def __init__(
        self,
        redis: redis_lib.Redis,
        name: str,
        *,
        limit: int,
        window_seconds: float,
        skew_margin_seconds: float = DEFAULT_SKEW_MARGIN_SECONDS,
    ):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_seconds < 0.001:
            raise ValueError("window_seconds must be at least 1 ms")
        self.name = name
        self.limit = limit
        self.window_seconds = window_seconds
        self.skew_margin_seconds = skew_margin_seconds
        self.key = limiter_key(name)
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._pause = redis.register_script(_PAUSE)
        self._peek = redis.register_script(_PEEK)
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._local = threading.local()

    # --- taking tokens --------------------------------------------------------------

    def attempt(self) -> Decision:
        """Take a token if one is free now; the full answer (see :meth:`try_acquire`)."""
        granted, wait_ms, seq, now_ms = self._acquire(
            keys=[self.key],
            args=[
                self.limit,
                _ms(self.window_seconds),
                _ms(OBSERVED_LIMIT_LIFETIME_SECONDS),
                _ms(KEEP_SECONDS),
            ],
        )
        if granted:
            self._local.seq = int(seq)
        return Decision(bool(granted), int(wait_ms) / 1000.0, int(seq), int(now_ms) / 1000.0)

    def take(self, tokens: int, held: Reservation | None = None, *, horizon_seconds: float) -> Take:
        """A token for a call now, from ``held`` or from ``tokens`` taken together; else a reservation.

        - ``held`` (a reservation of this limiter) is redeemed only inside its own window on Redis's
          clock: before it, nothing is granted and the answer is the wait until the window starts
          (the reservation is kept); inside it, its token is granted unless a pause, the upstream's
          cap (:meth:`observe`) or a lowered limit says no: a pause or cap that lifts before the
          window ends is waited for (kept, ``wait`` until it lifts), otherwise its tokens are given
          back to the window and asked for again, as are those of a reservation whose window is
          over (a holder late: its tokens were never used, and it gets no more than any caller);
        - asking: when the current window has room for all ``tokens`` (no pause, no cap in force)
          they are counted in it together and the first is granted (``held`` is then the rest);
          otherwise they are reserved together in the first window with room for them, at most
          ``horizon_seconds`` ahead and not before a pause or cap lifts; ``wait`` is when the first
          is due (spread through the window, :data:`RESERVATION_SPREAD_PERMILLE`, and not before
          the upstream's cap in force ends, however many tokens it has left), ``held`` the
          reservation. None fits within the horizon: no reservation, ``wait`` is the horizon.

        A window never grants more than its limit, reserved tokens included: reservations count in
        its budget when made, and a redeemed token is granted only while fewer than the limit were.
        """
        if held is not None and held.upstream != self.name:
            held = None
        granted, wait_ms, seq, window, left, paused, now_ms = self._take(
            keys=[self.key],
            args=[
                self.limit,
                _ms(self.window_seconds),
                _ms(OBSERVED_LIMIT_LIFETIME_SECONDS),
                _ms(KEEP_SECONDS),
                max(1, int(tokens)),
                held.window if held is not None else -1,
                held.tokens if held is not None else 0,
                RESERVATION_SPREAD_PERMILLE,
                _ms(horizon_seconds),
            ],
        )
        if granted:
            self._local.seq = int(seq)
        kept = Reservation(self.name, int(window), int(left)) if int(window) >= 0 and int(left) > 0 else None
        return Take(bool(granted), int(wait_ms) / 1000.0, int(seq), kept, bool(paused), int(now_ms) / 1000.0)

    def release(self, held: Reservation) -> None:
        """Give back the unused tokens of ``held``: free again at once when its window is the current or a
        later one (a past window's are gone with it)."""
        if held.upstream != self.name:
            return
        self._release(
            keys=[self.key], args=[_ms(self.window_seconds), held.window, held.tokens, _ms(KEEP_SECONDS)]
        )

    def try_acquire(self) -> float:
        """0.0 when a token was granted, else the seconds until one can be (always > 0)."""
        return self.attempt().wait

    def _peek_args(self) -> list[int]:
        return [self.limit, _ms(self.window_seconds), _ms(OBSERVED_LIMIT_LIFETIME_SECONDS)]

    def _budget(self, reply: list[Any]) -> Budget:
        wait_ms, limit, used = reply
        return Budget(int(wait_ms) / 1000.0, int(limit), int(used), self.window_seconds)

    def inspect(self) -> Budget:
        """The limiter's state now, changing nothing: the wait :meth:`attempt` would answer, the limit in force."""
        return self._budget(self._peek(keys=[self.key], args=self._peek_args()))

    def inspect_with(self, commands: Callable[[Pipeline], object]) -> tuple[Budget, list[Any]]:
        """:meth:`inspect`, and the replies of the commands ``commands`` adds to the pipeline it is
        given (on this limiter's Redis), all in one round trip.

        The pipeline is not a transaction: the commands run right after the look, not atomically
        with it. They should only read: when Redis has lost the look's script (a restart,
        ``SCRIPT FLUSH``) it is loaded and the whole batch is sent once more. A Redis error, or
        an error reply to any command, raises (:class:`redis.RedisError`)."""
        try:
            look, *replies = self._look_along(commands)
        except NoScriptError:  # Redis lost its scripts: load the look, then send the batch again
            self._peek.sha = self._redis.script_load(self._peek.script)
            look, *replies = self._look_along(commands)
        return self._budget(look), replies

    def _look_along(self, commands: Callable[[Pipeline], object]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.evalsha(self._peek.sha, 1, self.key, *self._peek_args())
        commands(pipe)
        return pipe.execute()

    def peek(self) -> float:
        """Seconds until a token would be granted (0.0: one is free now); takes nothing."""
        return self.inspect().wait

    def acquire(self, max_wait: float) -> None:
        """Take a token, sleeping for it as long as the total wait stays within ``max_wait`` seconds.

        Raises :class:`RateLimitWait` (with the wait Redis gave) as soon as the next
        token is further away than what is left of ``max_wait``: the caller (a Celery
        task) reschedules itself instead of holding a worker slot.
        """
        deadline = time.monotonic() + max_wait
        while True:
            wait = self.try_acquire()
            if wait == 0.0:
                return
            if wait > deadline - time.monotonic():
                raise RateLimitWait(wait, self.name)
            # A few ms of jitter so the waiting workers do not all hit Redis at the same instant.
            time.sleep(wait + random.uniform(0.0, min(0.005, self.window_seconds / 100)))

    # --- following the upstream -----------------------------------------------------

    def observe(self, limit: int, remaining: int, reset_at: float, *, granted_seq: int | None = None) -> int:
        """Follow the upstream's own count (Intercom's ``X-RateLimit-Limit/Remaining/Reset``).

        Returns how many more tokens the upstream's window allows by our reckoning.

        ``limit``, when positive, replaces the configured limit for every worker
        (stored in Redis) until another is reported, or for a day without reports.

        ``remaining`` lowers our budget, conservatively, in two respects:

        1. Calls in flight. ``remaining`` was counted when the upstream handled
           this thread's last call (token number ``granted_seq``, by default the
           last one this thread took from this limiter). Tokens granted after it,
           by any worker, may or may not have reached the upstream yet; we assume
           they have not, so they will still come out of ``remaining``. Hence a
           cap on the token counter: at most ``granted_seq + remaining`` tokens
           in total until the upstream's window ends. Two answers about the same
           window keep the lower cap; an answer about an older window (a slow
           response arriving late) is ignored.
        2. Clock skew. The upstream's window ends at ``reset_at`` on *its*
           clock (Intercom's resets fall on multiples of 10 s, like our window
           ids, so with synchronised clocks the windows coincide); ours are cut
           on Redis's clock, so with skew our window may start afresh while the
           upstream's is still running (its count may then refuse what ours allows).
           The cap therefore lives until ``reset_at + skew_margin_seconds`` on
           Redis's clock, independent of our windows. If Redis's clock is behind
           the upstream's, we hold the cap longer than needed (safe). If it is
           ahead by more than the margin, a ``reset_at`` in the past or more
           than a window away cannot be placed on our clock; since the answer
           describes the upstream's *current* window, that window ends within
           one window length, so the cap is held for ``window + margin`` from
           now: at worst one window of unneeded waiting, never a call too many.

        A 429 still gets through if other clients of the same token spend the
        budget between two of our answers; the hooks then pause until the reset.
        """
        if granted_seq is None:
            granted_seq = getattr(self._local, "seq", -1)
        left = self._observe(
            keys=[self.key],
            args=[
                int(limit),
                int(remaining),
                _ms(reset_at),
                int(granted_seq),
                _ms(self.window_seconds),
                _ms(self.skew_margin_seconds),
                _ms(KEEP_SECONDS),
            ],
        )
        return int(left)

    def pause_until(self, epoch_seconds: float, *, max_seconds: float | None = None) -> float:
        """No token for anyone until ``epoch_seconds`` (Redis's clock); returns the seconds of pause in force.

        A pause only ever extends the one in force. ``max_seconds`` bounds it
        from Redis's now (for a reset time read on another clock).
        """
        at_most = "" if max_seconds is None else _ms(max_seconds)
        left = self._pause(keys=[self.key], args=[_ms(epoch_seconds), "", at_most, _ms(KEEP_SECONDS)])
        return int(left) / 1000.0

    def pause_for(self, seconds: float) -> float:
        """No token for anyone for ``seconds`` from Redis's now (a relative ``Retry-After``)."""
        left = self._pause(keys=[self.key], args=["", _ms(seconds), "", _ms(KEEP_SECONDS)])
        return int(left) / 1000.0
