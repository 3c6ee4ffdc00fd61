"""Worker heartbeats, written and judged on Redis's clock.

Guarantees:
- :func:`beat` stores the time of a worker's heartbeat as Redis's own ``TIME``, read in the
  same script that writes it (one round trip), never the worker host's clock: a worker
  whose clock is off by minutes still beats "now";
- :func:`worker_health` judges every heartbeat against Redis's ``TIME`` too, read in the
  same round trip, so neither the worker's nor the reader's clock enters the age;
- :func:`heartbeat_age` (pure) is the one rule for an age: ``None`` when absent or unreadable,
  never negative.

Kept as our own small module because the heartbeat answers a question Celery's own
``inspect ping`` cannot answer cheaply from a web request (it broadcasts and waits for replies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import redis as redis_lib

from sync_worker import keys

#: How long the latest heartbeat key lives without a new beat.
HEARTBEAT_TTL_SECONDS = 60
#: A worker whose latest heartbeat is older than this is not counted as running.
HEARTBEAT_MAX_AGE_SECONDS = 30.0

# KEYS[1] the latest heartbeat (string), KEYS[2] the hash hostname -> time; ARGV[1] the worker's
# hostname ('' to write only the latest), ARGV[2] the latest's ttl (s). Returns the time written.
_BEAT = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], now, 'EX', tonumber(ARGV[2]))
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], now)
end
return now
"""


def beat(client: redis_lib.Redis, hostname: str | None = None) -> float:
    """Record a heartbeat now (Redis's clock): the latest one, and the worker's own when named."""
    now = client.eval(
        _BEAT, 2, keys.worker_heartbeat(), keys.worker_heartbeats(), hostname or "", HEARTBEAT_TTL_SECONDS
    )
    return float(now.decode() if isinstance(now, bytes) else now)


def heartbeat_age(raw: bytes | str | None, now: float) -> float | None:
    """Seconds since the heartbeat ``raw`` (a Unix time), or None when absent or unreadable (pure)."""
    if raw is None:
        return None
    try:
        return max(0.0, now - float(raw.decode() if isinstance(raw, bytes) else raw))
    except ValueError:
        return None


@dataclass(frozen=True)
class WorkerHealth:
    """What the heartbeats say: the latest one's age, and each worker's (seconds, Redis's clock)."""

    latest_age: float | None
    ages: Mapping[str, float] = field(default_factory=dict)
    max_age: float = HEARTBEAT_MAX_AGE_SECONDS

    @property
    def fresh(self) -> int:
        """How many workers beat within ``max_age``."""
        return sum(1 for age in self.ages.values() if age <= self.max_age)

    @property
    def healthy(self) -> bool:
        """Some worker beat within ``max_age``."""
        return self.latest_age is not None and self.latest_age <= self.max_age

    def to_dict(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "fresh_workers": self.fresh,
            "latest_heartbeat_age_seconds": _rounded(self.latest_age),
            "max_age_seconds": self.max_age,
        }


def worker_health(client: redis_lib.Redis, max_age: float = HEARTBEAT_MAX_AGE_SECONDS) -> WorkerHealth:
    """The heartbeats judged on Redis's clock (``TIME`` read in the same round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.get(keys.worker_heartbeat())
    pipe.hgetall(keys.worker_heartbeats())
    (seconds, micros), latest, beats = pipe.execute()
    now = seconds + micros / 1_000_000
    ages = {}
    for host, raw in beats.items():
        age = heartbeat_age(raw, now)
        if age is not None:
            ages[host.decode() if isinstance(host, bytes) else host] = age
    return WorkerHealth(heartbeat_age(latest, now), ages, max_age)


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 3)
