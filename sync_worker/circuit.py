"""A circuit breaker shared by every worker through Redis, on Redis's clock.

Guarantees:
- **closed**: every call is allowed; a failure is remembered for
  ``window_seconds``; ``failure_threshold`` failures within that sliding window
  open the circuit, whatever successes came between them (the README's "this many
  failed reads within the window": a platform failing 80% of its reads opens it);
- **open**: no call is allowed until ``open_seconds`` have passed since it opened;
- **half-open** (open and ``open_seconds`` passed): one probe at a time is
  allowed; the probe's success closes the circuit, its failure opens it again
  for another ``open_seconds``; a probe that reports neither (its worker died)
  lets the next one through after ``probe_timeout_seconds``; a probe that ends
  having learnt nothing about the upstream can :meth:`CircuitBreaker.release`
  its turn so the next one goes at once (:meth:`CircuitBreaker.admit` says
  whether a call is the probe; a release frees only that probe's turn);
- a success while closed ends the current outage (``unavailable_since``) but not
  the window's failures; a success while half-open (or open past ``open_seconds``)
  closes the circuit and forgets the failures; a success while open is a late answer
  to a call admitted before it opened and changes nothing;
- ``unavailable_since`` is the time of the first failure of the current outage:
  set by the first failure after a success (or after ``window_seconds`` without
  failures while closed) and kept, through opening and half-opening, until a
  success that closes it; it is what "platform unavailable since <date-time>" shows;
- :meth:`CircuitBreaker.opens_in` says how long until an open circuit lets a
  probe through (0 when a call may go now), so a caller can schedule its next
  try for then instead of spending it against the open circuit;
- every transition is one Lua script, so concurrent workers agree on the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib

from sync_worker import keys

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# Time is kept in microseconds on Redis's clock, written as exact decimal text.
_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(n) return string.format('%d', n) end
"""

# KEYS[1] state hash, KEYS[2] failures zset. ARGV: open us, probe timeout us.
# Returns 'closed' (allowed), '' (refused) or the probe's probe_until (allowed: this call is the probe).
_ALLOW = (
    _LUA_PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until')
local state = f[1] or 'closed'
if state == 'closed' then return 'closed' end
if state == 'open' and now < tonumber(f[2]) + tonumber(ARGV[1]) then return '' end
if state == 'half_open' and tonumber(f[3] or 0) > now then return '' end
local probe = int(now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', probe)
return probe
"""
)

# KEYS[1] state hash. ARGV: the probe's probe_until. Returns 1 when that probe's turn was freed.
_RELEASE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'probe_until')
if f[1] ~= 'half_open' or f[2] ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'probe_until')
return 1
"""

# KEYS[1] state hash, KEYS[2] failures zset. ARGV: threshold, window us. Returns failures in the window.
_FAILURE = (
    _LUA_PRELUDE
    + """
local window = tonumber(ARGV[2])
local window_ms = math.ceil(window / 1000) + 1000
local f = redis.call('HMGET', KEYS[1], 'state', 'unavailable_since')
local state = f[1] or 'closed'
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(now - window))
if not f[2] or (state == 'closed' and redis.call('ZCARD', KEYS[2]) == 0) then
  redis.call('HSET', KEYS[1], 'unavailable_since', int(now))
end
local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], int(now), int(now) .. '-' .. int(n))
redis.call('PEXPIRE', KEYS[2], int(window_ms))
local failures = redis.call('ZCARD', KEYS[2])
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', int(now))
  redis.call('HDEL', KEYS[1], 'probe_until')
  state = 'open'
end
if state == 'closed' then
  redis.call('PEXPIRE', KEYS[1], int(window_ms))
else
  redis.call('PERSIST', KEYS[1])
end
return failures
"""
)

# KEYS[1] state hash, KEYS[2] failures zset. ARGV: open us.
# Returns 'closed' (closed: the window keeps its failures), 'open' (still open: a late answer to a call
# admitted before it opened changes nothing) or 'reset' (half-open, or open past open_seconds: closed).
_SUCCESS = (
    _LUA_PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at')
local state = f[1] or 'closed'
if state == 'closed' then
  redis.call('HDEL', KEYS[1], 'unavailable_since')
  return 'closed'
end
if state == 'open' and now < tonumber(f[2]) + tonumber(ARGV[1]) then return 'open' end
redis.call('DEL', KEYS[1], KEYS[2])
return 'reset'
"""
)

# KEYS[1] state hash, KEYS[2] failures zset. ARGV: window us, open us.
# Returns {state, failures in the window, opened_at us or '', unavailable_since us or ''}.
_STATE = (
    _LUA_PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'unavailable_since')
local state = f[1] or 'closed'
local failures = redis.call('ZCOUNT', KEYS[2], int(now - tonumber(ARGV[1])), '+inf')
local since = f[3] or ''
if state == 'closed' and failures == 0 then since = '' end
if state == 'open' and now >= tonumber(f[2]) + tonumber(ARGV[2]) then state = 'half_open' end
return {state, failures, f[2] or '', since}
"""
)


# KEYS[1] state hash. ARGV: open us. Returns the us until an open circuit half-opens (0: not open).
_OPENS_IN = (
    _LUA_PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at')
if f[1] ~= 'open' then return 0 end
return math.max(0, tonumber(f[2]) + tonumber(ARGV[1]) - now)
"""
)


@dataclass(frozen=True)
class Admission:
    """A call the circuit let through; ``probe`` identifies the half-open probe when the call is it."""

    probe: str | None = None


@dataclass(frozen=True)
class CircuitState:
    """A snapshot: ``state`` is closed, open or half_open; times are aware UTC datetimes."""

    state: str
    failures: int
    opened_at: datetime | None
    unavailable_since: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "unavailable_since": self.unavailable_since.isoformat() if self.unavailable_since else None,
        }


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: Any) -> datetime | None:
    text = _text(value)
    return datetime.fromtimestamp(int(text) / 1_000_000, UTC) if text else None


class CircuitBreaker:
    """One named circuit (e.g. ``"platform"``) shared by all workers."""

    def __init__(
        self,
        redis: redis_lib.Redis,
        name: str,
        *,
        failure_threshold: int = 5,
        window_seconds: float = 30,
        open_seconds: float = 30,
        probe_timeout_seconds: float | None = None,
    ):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.window_seconds = window_seconds
        self.open_seconds = open_seconds
        self.probe_timeout_seconds = open_seconds if probe_timeout_seconds is None else probe_timeout_seconds
        self._keys = [f"{keys.PREFIX}:circuit:{name}", f"{keys.PREFIX}:circuit:{name}:failures"]
        self._allow = redis.register_script(_ALLOW)
        self._release = redis.register_script(_RELEASE)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._state = redis.register_script(_STATE)
        self._opens_in = redis.register_script(_OPENS_IN)

    def allow(self) -> bool:
        """May a call go out now? (Closed: yes. Open: no. Half-open: yes for one probe at a time.)"""
        return self.admit() is not None

    def admit(self) -> Admission | None:
        """:meth:`allow` saying how: ``None`` refused, else an :class:`Admission` (with ``probe`` set
        when this call is the half-open probe, which should end in a success, a failure or a release)."""
        answer = _text(
            self._allow(keys=self._keys, args=[_us(self.open_seconds), _us(self.probe_timeout_seconds)])
        )
        if not answer:
            return None
        return Admission(None if answer == CLOSED else answer)

    def release(self, admission: Admission) -> None:
        """The admitted call ended without learning whether the upstream is up: when it was the probe
        (and no success, failure or newer probe came since), the next call may probe at once instead
        of after ``probe_timeout_seconds``. Nothing else changes; a call admitted while closed is a no-op."""
        if admission.probe is not None:
            self._release(keys=self._keys[:1], args=[admission.probe])

    def record_success(self) -> None:
        """The upstream answered. Closed: the outage it was in is over (``unavailable_since`` is
        cleared) but the window keeps its failures, so a platform failing most reads still opens
        the circuit. Half-open (or open past ``open_seconds``): closed, the outage forgotten. Open:
        nothing changes (a late answer to a call admitted before it opened)."""
        self._success(keys=self._keys, args=[_us(self.open_seconds)])

    def record_failure(self) -> int:
        """The upstream could not be read; returns the failures within the window."""
        return int(self._failure(keys=self._keys, args=[self.failure_threshold, _us(self.window_seconds)]))

    def opens_in(self) -> float:
        """Seconds until the open circuit lets a probe through; 0.0 when closed or half-open."""
        return int(self._opens_in(keys=self._keys[:1], args=[_us(self.open_seconds)])) / 1_000_000

    def state(self) -> CircuitState:
        state, failures, opened_at, since = self._state(
            keys=self._keys, args=[_us(self.window_seconds), _us(self.open_seconds)]
        )
        return CircuitState(_text(state), int(failures), _time(opened_at), _time(since))
