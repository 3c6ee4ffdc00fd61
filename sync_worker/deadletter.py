"""The dead-letter store: contacts whose sync failed for good, kept for an operator to replay.

Guarantees:
- one entry per contact and integration, keyed by its source id, else its Intercom id, else its
  normalised email
  (:meth:`DeadLetterStore.key_for`); parking a contact that is already parked
  updates that entry (latest error, trigger and replay arguments,
  ``last_failed_at``) and keeps its ``first_failed_at``;
- ``attempts`` counts the failed sync attempts over every park of the entry:
  each park adds the attempts that run made (its first try and its retries);
- each park is one Lua script on Redis's clock: the entry (a hash) and the
  index (a sorted set by ``last_failed_at``) never disagree, and two workers
  parking the same contact at once count two attempts;
- :meth:`DeadLetterStore.list` is newest failure first;
- a replay hands the stored task arguments to ``enqueue`` and only then
  removes the entry (replaying them all is a background run: :mod:`sync_worker.replayruns`); when ``enqueue`` raises, the entry stays; when the
  contact is parked again while its replay is being enqueued, the new entry
  stays too (removal only takes the version that was replayed);
- entries never expire: they wait for a replay or a purge.

The entries hold the contact's email because a replay needs it: this is stored
data, never written to the logs (log lines carry the contact id only).
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib

from sync_worker import keys
from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

#: An error message longer than this is cut (a store of thousands of entries stays small).
MAX_MESSAGE_CHARS = 1000
_BATCH = 500

# KEYS[1] entry hash, KEYS[2] index. ARGV: id, contact_id, email, error code, error message, trigger,
# kwargs json ('' contact_id / email: keep what the entry has), attempts. Returns the entry as a flat list.
_PARK = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[8]))
else
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'attempts', tonumber(ARGV[8]), 'first_failed_at', now)
end
redis.call('HSET', KEYS[1], 'error_code', ARGV[4], 'error_message', ARGV[5], 'trigger', ARGV[6],
           'kwargs', ARGV[7], 'last_failed_at', now)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'contact_id', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'email', ARGV[3]) end
redis.call('ZADD', KEYS[2], now, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] entry hash, KEYS[2] index. ARGV: id, the last_failed_at replayed ('' = any). Returns 1 removed.
_REMOVE = """
local last = redis.call('HGET', KEYS[1], 'last_failed_at')
if not last then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and last ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(epoch: str) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


@dataclass(frozen=True)
class DeadLetter:
    """One parked contact. ``kwargs`` are the task arguments that replay it."""

    id: str
    contact_id: str | None
    email: str | None
    error_code: str
    error_message: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    trigger: str
    kwargs: dict[str, Any]

    @property
    def integration(self) -> str:
        """The integration whose sync was parked (an entry parked before requests named one: ``clients``)."""
        return self.kwargs.get("integration") or keys.LEGACY_INTEGRATION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 UTC strings."""
        return {
            "id": self.id,
            "integration": self.integration,
            "contact_id": self.contact_id,
            "email": self.email,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "trigger": self.trigger,
            "kwargs": self.kwargs,
        }


def _entry(fields: Mapping[str, str]) -> tuple[DeadLetter, str]:
    """The entry and its version (the raw ``last_failed_at``) from the hash's fields."""
    entry = DeadLetter(
        id=fields["id"],
        contact_id=fields.get("contact_id") or None,
        email=fields.get("email") or None,
        error_code=fields.get("error_code", ""),
        error_message=fields.get("error_message", ""),
        attempts=int(fields.get("attempts", "1")),
        first_failed_at=_time(fields["first_failed_at"]),
        last_failed_at=_time(fields["last_failed_at"]),
        trigger=fields.get("trigger", ""),
        kwargs=json.loads(fields.get("kwargs") or "{}"),
    )
    return entry, fields["last_failed_at"]


def _decode(raw: Mapping[Any, Any] | list[Any]) -> dict[str, str]:
    if isinstance(raw, list):  # a script's HGETALL: field, value, field, value...
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    return {_text(key): _text(value) for key, value in raw.items()}


class DeadLetterStore:
    def __init__(self, redis: redis_lib.Redis, *, prefix: str = keys.PREFIX):
        self._redis = redis
        self._index = f"{prefix}:dead-letters"
        self._entry_prefix = f"{prefix}:dead-letter:"
        self._park = redis.register_script(_PARK)
        self._remove = redis.register_script(_REMOVE)

    @staticmethod
    def key_for(
        contact_id: str | None,
        email: str | None,
        integration: str = keys.LEGACY_INTEGRATION,
        source_id: str | None = None,
    ) -> str:
        """The entry id of a contact for one integration (:func:`sync_worker.keys.contact_key`:
        ``source:<source id>``, else ``id:<contact id>``, else ``email:<normalised email>``, after
        the integration's name unless it is ``clients``): one entry per contact and integration."""
        return keys.contact_key(contact_id, email, integration, source_id)

    @staticmethod
    def integration_of(entry_id: str) -> str:
        """The integration an entry id belongs to (the inverse of :meth:`key_for`'s prefix)."""
        head = entry_id.split(":", 1)[0]
        return keys.LEGACY_INTEGRATION if head in ("id", "email") else head

    def _key(self, entry_id: str) -> str:
        return self._entry_prefix + entry_id

    # --- writing ----------------------------------------------------------------------

    def park(
        self,
        *,
        contact_id: str | None,
        email: str | None,
        error_code: str,
        error_message: str,
        trigger: str,
        kwargs: Mapping[str, Any],
        attempts: int = 1,
        integration: str = keys.LEGACY_INTEGRATION,
        source_id: str | None = None,
    ) -> DeadLetter:
        """Add the contact, or update its entry if it is already parked; returns the entry as stored.

        ``attempts``: the failed sync attempts of the run that parks it (at least 1).
        """
        entry_id = self.key_for(contact_id, email, integration, source_id)
        raw = self._park(
            keys=[self._key(entry_id), self._index],
            args=[
                entry_id,
                contact_id or "",
                (email or "").strip(),
                error_code,
                error_message[:MAX_MESSAGE_CHARS],
                trigger,
                json.dumps(dict(kwargs), default=str, sort_keys=True),
                max(1, int(attempts)),
            ],
        )
        return _entry(_decode(raw))[0]

    def remove(self, entry_id: str) -> bool:
        """Forget one entry; False when there was none."""
        return bool(self._remove(keys=[self._key(entry_id), self._index], args=[entry_id, ""]))

    def purge(self) -> int:
        """Forget every entry; returns how many there were."""
        removed = 0
        while True:
            ids = [_text(i) for i in self._redis.zrange(self._index, 0, _BATCH - 1)]
            if not ids:
                return removed
            pipe = self._redis.pipeline(transaction=True)
            for entry_id in ids:
                pipe.delete(self._key(entry_id))
            pipe.zrem(self._index, *ids)
            removed += sum(pipe.execute()[:-1])

    # --- reading ----------------------------------------------------------------------

    def _read(self, entry_id: str) -> tuple[DeadLetter, str] | None:
        fields = _decode(self._redis.hgetall(self._key(entry_id)))
        return _entry(fields) if fields else None

    def get(self, entry_id: str) -> DeadLetter | None:
        found = self._read(entry_id)
        return found[0] if found else None

    def _ids_of(self, integration: str) -> builtins.list[str]:
        """Every entry id of one integration, the most recent failure first (read from the index's
        ids alone: an entry's integration is in its id)."""
        found = (_text(i) for i in self._redis.zrevrange(self._index, 0, -1))
        return [entry_id for entry_id in found if self.integration_of(entry_id) == integration]

    def list(
        self, offset: int = 0, limit: int = 50, *, integration: str | None = None
    ) -> builtins.list[DeadLetter]:
        """A page of entries, the most recent failure first (only ``integration``'s when given)."""
        if limit <= 0:
            return []
        if integration is None:
            ids = [_text(i) for i in self._redis.zrevrange(self._index, offset, offset + limit - 1)]
        else:
            ids = self._ids_of(integration)[offset : offset + limit]
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hgetall(self._key(entry_id))
        entries = []
        for raw in pipe.execute():
            fields = _decode(raw)
            if fields:  # removed between the two reads
                entries.append(_entry(fields)[0])
        return entries

    def count(self, *, integration: str | None = None) -> int:
        """How many entries are parked (only ``integration``'s when given)."""
        if integration is not None:
            return len(self._ids_of(integration))
        return int(self._redis.zcard(self._index))

    # --- replaying --------------------------------------------------------------------

    def replay(self, entry_id: str, enqueue: Callable[[dict[str, Any]], object]) -> bool:
        """Enqueue the contact's sync again (``enqueue(kwargs)``), then remove the entry.

        Returns False when there is no such entry. An exception from ``enqueue``
        propagates and the entry stays.
        """
        found = self._read(entry_id)
        if found is None:
            return False
        entry, version = found
        enqueue(dict(entry.kwargs))
        self._remove(keys=[self._key(entry_id), self._index], args=[entry_id, version])
        log_event(logger, "dead_letter_replayed", contact_id=entry.contact_id, attempts=entry.attempts)
        return True

    def ids_parked_until(self, cutoff: float, *, offset: int = 0, limit: int = 500) -> builtins.list[str]:
        """Ids of entries last parked at or before ``cutoff`` (epoch seconds, Redis's clock), oldest
        first, from ``offset`` on: what a replay run (:mod:`sync_worker.replayruns`) works through."""
        found = self._redis.zrangebyscore(self._index, "-inf", repr(cutoff), start=offset, num=limit)
        return [_text(i) for i in found]

    def count_parked_until(self, cutoff: float) -> int:
        return int(self._redis.zcount(self._index, "-inf", repr(cutoff)))
