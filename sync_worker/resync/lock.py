"""A Redis lock with expiry, owned by a token, for "one run at a time" across processes.

Guarantees:
- :meth:`RunLock.acquire` succeeds for exactly one caller while the lock is free,
  however many processes call it at once (``SET NX PX``);
- only the owner (the token that acquired it) can refresh, hand over or release
  it (compare-and-set scripts), so a stale owner can never extend or free the lock
  of the owner that took over after its expiry;
- the lock expires ``ttl_seconds`` after it was last acquired or refreshed, so a
  crashed owner blocks others for a bounded time.
"""

from __future__ import annotations

import redis as redis_lib

# KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms. 1 when refreshed; re-takes a lock nobody holds.
_REFRESH = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] lock; ARGV[1] owner, ARGV[2] new owner, ARGV[3] ttl ms.
_HAND_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] lock; ARGV[1] owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RunLock:
    def __init__(self, client: redis_lib.Redis, key: str, *, ttl_seconds: float):
        self._redis = client
        self.key = key
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self._refresh = client.register_script(_REFRESH)
        self._hand_over = client.register_script(_HAND_OVER)
        self._release = client.register_script(_RELEASE)

    def acquire(self, owner: str) -> bool:
        """Take the lock for ``owner`` if nobody holds it."""
        return bool(self._redis.set(self.key, owner, nx=True, px=self.ttl_ms))

    def holder(self) -> str | None:
        return _text(self._redis.get(self.key))

    def refresh(self, owner: str) -> bool:
        """Extend ``owner``'s lock (or take it again if it expired and nobody took it); False if another holds it."""
        return bool(self._refresh(keys=[self.key], args=[owner, self.ttl_ms]))

    def hand_over(self, owner: str, new_owner: str) -> bool:
        """Give ``owner``'s lock to ``new_owner`` (full ttl); False if ``owner`` does not hold it."""
        return bool(self._hand_over(keys=[self.key], args=[owner, new_owner, self.ttl_ms]))

    def release(self, owner: str) -> bool:
        """Free the lock if ``owner`` holds it."""
        return bool(self._release(keys=[self.key], args=[owner]))
