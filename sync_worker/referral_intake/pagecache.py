"""Referral users read a page at a time, kept briefly in Redis for the syncs that need them.

Guarantees:
- :meth:`PageCache.store` keeps each user of a page (the record as the program answered it) with
  the time it was read, under its id, and its code names that id, for :data:`TTL_SECONDS`
  (one pipelined round trip); a later read of the same user replaces an earlier one only when it
  is newer (a slow reader never puts an older record back);
- :meth:`PageCache.lookup` answers a user named by a request (``source_id`` ``<id>`` or
  ``code:<code>``; never by email alone: several users may share one, and the program answers
  the newest, which a page of older users cannot tell) only when it was read at or after
  ``not_before`` (the time
  the request was stored): a record read after the webhook is what reading the user then would
  have answered, so serving it reads nothing the webhook's body claimed;
- :meth:`PageCache.read_at` / :meth:`PageCache.note_read` are the time of the newest page read
  (what a sync waiting for a page compares its request's time with); :meth:`PageCache.freshness`
  also says whether that read showed a newer newest user than the one before (users are joining).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import redis as redis_lib

from sync_worker.keys import PREFIX

TTL_SECONDS = 600
_USER = f"{PREFIX}:referral-page:user:"
_CODE = f"{PREFIX}:referral-page:code:"
READ_AT_KEY = f"{PREFIX}:referral-page:read-at"
NEWEST_KEY = f"{PREFIX}:referral-page:newest"
MOVING_KEY = f"{PREFIX}:referral-page:moving"
#: Users joining is remembered this long after the newest page last showed a new one.
MOVING_TTL_SECONDS = 30
CODE_PREFIX = "code:"


def user_key(user_id: int | str) -> str:
    return f"{_USER}{user_id}"


def identity_key(source_id: str | None) -> str | None:
    """The key a request's user is found under (its id's record, or its code's pointer)."""
    if not source_id:
        return None
    if source_id.startswith(CODE_PREFIX):
        return f"{_CODE}{source_id[len(CODE_PREFIX) :]}"
    return user_key(source_id)


# KEYS[1] the user's record (``<read at>|<json>``); ARGV[1] the entry, ARGV[2] read at, ARGV[3] ttl: written unless
# a newer read is kept.
_KEEP_NEWER = """
local kept = redis.call('GET', KEYS[1])
if kept then
  local at = tonumber(string.match(kept, '^([^|]+)|'))
  if at and at > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return 1
"""


# KEYS[1] read at, KEYS[2] newest id, KEYS[3] moving flag; ARGV[1] read at, ARGV[2] ttl, ARGV[3]
# newest id ('' : a deeper page), ARGV[4] the flag's ttl.
_NOTE_READ = """
local kept = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= kept then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
if ARGV[3] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[3] then
    redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[2]))
    redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4]))
  else
    redis.call('DEL', KEYS[3])
  end
end
return 1
"""


class PageCache:
    def __init__(self, client: redis_lib.Redis, *, ttl_seconds: int = TTL_SECONDS):
        self._redis = client
        self.ttl = ttl_seconds
        self._keep_newer = client.register_script(_KEEP_NEWER)
        self._note_read = client.register_script(_NOTE_READ)

    def store(self, users: Iterable[Mapping[str, Any]], read_at: float) -> int:
        """Keep ``users`` (read at ``read_at``); the number kept."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for user in users:
            entry = f"{read_at!r}|{json.dumps(dict(user))}"
            key = user_key(user["id"])
            self._keep_newer(keys=[key], args=[entry, repr(read_at), self.ttl], client=pipe)
            pipe.set(f"{_CODE}{user['code']}", str(user["id"]), ex=self.ttl)
            count += 1
        if count:
            pipe.execute()
        return count

    def lookup(self, source_id: str | None, *, not_before: float) -> dict[str, Any] | None:
        """The user a request's ``source_id`` names, read at or after ``not_before``; None when
        not kept so."""
        key = identity_key(source_id)
        if key is None:
            return None
        if not key.startswith(_USER):
            pointed = self._redis.get(key)
            if pointed is None:
                return None
            key = user_key(pointed.decode() if isinstance(pointed, bytes) else pointed)
        raw = self._redis.get(key)
        if raw is None:
            return None
        at, _, record = (raw.decode() if isinstance(raw, bytes) else raw).partition("|")
        if float(at) < not_before:
            return None
        return json.loads(record)

    def read_at(self) -> float:
        return self.freshness()[0]

    def freshness(self) -> tuple[float, bool]:
        """The newest page read's time, and whether the program's newest user changed at that read
        (users are joining: the newest page is worth reading again). One round trip."""
        raw, moving = self._redis.mget([READ_AT_KEY, MOVING_KEY])
        return (float(raw) if raw is not None else 0.0), moving is not None

    def note_read(self, read_at: float, newest_id: int | None = None) -> None:
        """Remember ``read_at`` as the newest page read, unless a newer one is remembered; with
        ``newest_id`` (the newest page's first user) also whether it changed (:meth:`freshness`)."""
        self._note_read(
            keys=[READ_AT_KEY, NEWEST_KEY, MOVING_KEY],
            args=[repr(read_at), self.ttl, "" if newest_id is None else str(newest_id), MOVING_TTL_SECONDS],
        )
