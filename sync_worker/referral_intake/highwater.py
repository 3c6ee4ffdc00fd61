"""The reconciliation walk's high-water mark: the place in the program's order it stops at.

Guarantees:
- the mark (:meth:`HighWater.get`) is the newest place in the program's newest-first order at or
  below which every user was handled (a lead written or a skip decided: the pipeline's
  ``handled``) or stored as a sync (a stored sync is never lost: it is run, retried or parked);
- :meth:`HighWater.advance` only moves it forward, in one script, so a slow walk never moves it
  back past a later one's;
- its key starts with the service's prefix.
"""

from __future__ import annotations

import redis as redis_lib
from redis.commands.core import Script

from sync_worker.keys import PREFIX
from sync_worker.referral_intake.marks import Mark

KEY = f"{PREFIX}:referral-walk:high-water"

# KEYS[1] the mark; ARGV[1] seconds, ARGV[2] id, ARGV[3] the mark's text. 1 when moved.
_ADVANCE = """
local current = redis.call('GET', KEYS[1])
if current then
  local seconds, id = string.match(current, '^(.*):(%d+)$')
  seconds, id = tonumber(seconds), tonumber(id)
  local new_seconds, new_id = tonumber(ARGV[1]), tonumber(ARGV[2])
  if new_seconds < seconds or (new_seconds == seconds and new_id <= id) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"""
_ADVANCE_SCRIPT = Script(None, _ADVANCE.encode())


class HighWater:
    def __init__(self, client: redis_lib.Redis):
        self._redis = client

    def get(self) -> Mark | None:
        return Mark.from_text(self._redis.get(KEY))

    def advance(self, mark: Mark) -> bool:
        """Move the mark to ``mark`` unless it is already there or newer."""
        args = [repr(mark.signed_up_at), mark.id, mark.to_text()]
        return bool(_ADVANCE_SCRIPT(keys=[KEY], args=args, client=self._redis))
