"""The run record and the chunks in flight, kept in Redis and changed only atomically.

Guarantees:
- a run is one hash (:func:`sync_worker.resync.keys.run`): its options, its walk
  checkpoint (``gen``, ``page``, ``cursor``, ``walk_done``) and its counters; the
  chunks queued and not finished are one hash of payloads (``pending``), whose size
  is the run's in-flight count;
- :meth:`RunStore.commit_page` (a walk step) advances the checkpoint, adds the page's
  chunks to ``pending`` and its counts, all in one script, and only if the caller's
  ``gen`` and ``page`` are the checkpoint's: a duplicate or superseded walk message
  changes nothing, so no page is counted twice;
- :meth:`RunStore.record_chunk` (a chunk task) adds a chunk's counts and removes it
  (or stores what is left of it under the next version) only if the caller holds the
  chunk's current version: a chunk delivered twice is counted once;
- the run finishes in the same script that removes its last chunk after the walk's
  last page (or commits a last page with nothing to do): status ``finished``, the
  lock and the active pointer released, the record kept ``keep_seconds``;
- the lock and the active pointer a script takes are those of the run's own integration
  (:func:`sync_worker.resync.keys.lock`), so runs of two integrations never touch each other's;
- :meth:`RunStore.resume` bumps ``gen`` (older walk messages become no-ops) and
  returns the checkpoint and the chunks still pending, so a stalled run can be
  picked up exactly where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis as redis_lib

from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.resync import keys

#: Counters every run keeps (contacts unless named otherwise).
COUNTERS = (
    "seen",  # listed by the walk
    "skipped",  # not queued: no email, or an excluded or invalid address
    "no_email",  # of the skipped: no email at all
    "queued",  # put into a chunk
    "written",  # PUT on the contact (dry run: would be)
    "synced",  # written with platform values (an account exists)
    "no_account",  # written: the platform has no account for the email
    "stale",  # written with the staleness flag: the platform could not be read
    "deferred",  # not written: the platform stayed unreadable past the hold, a stale refresh scheduled
    "unchanged",  # values equal to what the contact shows: no write
    "failed",  # parked in the dead-letter store
    "gone",  # no longer in Intercom (merged or deleted, no survivor by email): nothing written
    "pages",  # pages the walk read (GET /contacts, GET /v1/users)
)
RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"

# Shared tail: finish the run if the walk is done and nothing is pending.
# Expects locals: run_key, pending_key, lock_key, active_key, run_id, now, keep.
_FINISH_IF_DONE = """
local function finish_if_done()
  if redis.call('HGET', run_key, 'walk_done') == '1' and redis.call('HLEN', pending_key) == 0 then
    redis.call('HSET', run_key, 'status', 'finished', 'finished_at', now, 'updated_at', now)
    redis.call('EXPIRE', run_key, keep)
    redis.call('DEL', pending_key)
    if redis.call('GET', active_key) == run_id then redis.call('DEL', active_key) end
    if redis.call('GET', lock_key) == run_id then redis.call('DEL', lock_key) end
    return 1
  end
  return 0
end
local function refresh_lock(ttl)
  local holder = redis.call('GET', lock_key)
  if holder == run_id then
    redis.call('PEXPIRE', lock_key, ttl)
  elseif not holder then
    redis.call('SET', lock_key, run_id, 'PX', ttl)
  end
end
"""

# KEYS: run, pending, lock, active. ARGV: run_id, now, keep, lock ttl ms, gen, page, next cursor,
# walk_done, n counter pairs, counters..., chunk pairs (id, payload)...  Returns {committed, finished}.
_COMMIT_PAGE = (
    """
local run_key, pending_key, lock_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + _FINISH_IF_DONE
    + """
local f = redis.call('HMGET', run_key, 'status', 'gen', 'page')
if f[1] ~= 'running' or f[2] ~= ARGV[5] or f[3] ~= ARGV[6] then return {0, 0} end
local n = tonumber(ARGV[9])
local i = 10
for _ = 1, n do
  redis.call('HINCRBY', run_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HSET', pending_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', run_key, 'page', tostring(tonumber(ARGV[6]) + 1), 'cursor', ARGV[7],
           'walk_done', ARGV[8], 'updated_at', now)
refresh_lock(tonumber(ARGV[4]))
return {1, finish_if_done()}
"""
)

# KEYS: run, pending, lock, active. ARGV: run_id, now, keep, lock ttl ms, chunk id, version,
# remaining payload ('' = chunk done), counter pairs...  Returns {recorded, finished}.
_RECORD_CHUNK = (
    """
local run_key, pending_key, lock_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + _FINISH_IF_DONE
    + """
if redis.call('HGET', run_key, 'status') ~= 'running' then return {0, 0} end
local stored = redis.call('HGET', pending_key, ARGV[5])
if not stored or string.match(stored, '^(%d+):') ~= ARGV[6] then return {0, 0} end
local i = 8
while i <= #ARGV do
  redis.call('HINCRBY', run_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[7] == '' then
  redis.call('HDEL', pending_key, ARGV[5])
else
  redis.call('HSET', pending_key, ARGV[5], ARGV[7])
end
redis.call('HSET', run_key, 'updated_at', now)
refresh_lock(tonumber(ARGV[4]))
return {1, finish_if_done()}
"""
)

# KEYS: run, pending, lock, active. ARGV: run_id, now, keep, lock ttl ms, gen, page.  Returns 1 when the
# walk at (gen, page) is the run's current one (its lock refreshed), else 0.
_HOLD_WALK = (
    """
local run_key, pending_key, lock_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + _FINISH_IF_DONE
    + """
local f = redis.call('HMGET', run_key, 'status', 'gen', 'page')
if f[1] ~= 'running' or f[2] ~= ARGV[5] or f[3] ~= ARGV[6] then return 0 end
refresh_lock(tonumber(ARGV[4]))
return 1
"""
)

# KEYS: run, pending, lock, active. ARGV: run_id, now, keep, status, error.  Returns 1 if it ended the run.
_END = """
local run_key, pending_key, lock_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HGET', run_key, 'status') ~= 'running' then return 0 end
redis.call('HSET', run_key, 'status', ARGV[4], 'error', ARGV[5], 'finished_at', now, 'updated_at', now)
redis.call('EXPIRE', run_key, keep)
redis.call('DEL', pending_key)
if redis.call('GET', active_key) == run_id then redis.call('DEL', active_key) end
if redis.call('GET', lock_key) == run_id then redis.call('DEL', lock_key) end
return 1
"""

# KEYS: run, pending, lock, active. ARGV: run_id, now, keep.
# Returns {} when the run is not running, else {gen, page, cursor, walk_done, finished, id, payload, ...}.
_RESUME = (
    """
local run_key, pending_key, lock_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + _FINISH_IF_DONE
    + """
if redis.call('HGET', run_key, 'status') ~= 'running' then return {} end
local gen = redis.call('HINCRBY', run_key, 'gen', 1)
redis.call('HINCRBY', run_key, 'resumed', 1)
redis.call('HSET', run_key, 'updated_at', now)
local f = redis.call('HMGET', run_key, 'page', 'cursor', 'walk_done')
local out = {tostring(gen), f[1], f[2] or '', f[3] or '0', tostring(finish_if_done())}
for _, v in ipairs(redis.call('HGETALL', pending_key)) do table.insert(out, v) end
return out
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- chunks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Up to 100 entries of one run, what its walk queued (:mod:`sync_worker.resync.walks`: a
    contact's ``(contact_id, email)`` pair, or a user's whole record, a JSON object), how often
    it was retried, and since when (epoch seconds) it has been held for a platform that cannot
    be read (None: not held)."""

    contacts: tuple[Any, ...]
    attempt: int = 0
    version: int = 0
    held_since: float | None = None

    def encode(self) -> str:
        document: dict[str, Any] = {
            "contacts": list(self.contacts),  # a pair as an array, a record as an object
            "attempt": self.attempt,
        }
        if self.held_since is not None:
            document["held_since"] = self.held_since
        return f"{self.version}:{json.dumps(document)}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Chunk:
        version, _, body = _text(raw).partition(":")
        document = json.loads(body)
        entries = tuple(_entry(entry) for entry in document["contacts"])
        held = document.get("held_since")
        return cls(
            entries, int(document.get("attempt", 0)), int(version), None if held is None else float(held)
        )

    def rest(self, start: int, *, attempt: int | None = None, held_since: float | None = None) -> Chunk:
        """The contacts from ``start`` on, as the chunk's next version (held since ``held_since``)."""
        attempt = self.attempt if attempt is None else attempt
        return Chunk(self.contacts[start:], attempt, self.version + 1, held_since)


def _entry(raw: Any) -> Any:
    """A stored entry: a pair (a JSON array) as a tuple of two strings, a record (an object) as a dict."""
    if isinstance(raw, dict):
        return raw
    contact_id, email = raw
    return (str(contact_id), str(email))


def split_evenly(items: Sequence[Any], max_size: int) -> list[list[Any]]:
    """``items`` in the fewest consecutive groups of at most ``max_size``, sizes differing by at most one."""
    if not items:
        return []
    groups = -(-len(items) // max_size)
    base, extra = divmod(len(items), groups)
    out, start = [], 0
    for n in range(groups):
        size = base + (1 if n < extra else 0)
        out.append(list(items[start : start + size]))
        start += size
    return out


# --- the run record ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    id: str
    status: str
    trigger: str
    integration: str
    dry_run: bool
    only_changed: bool
    started_at: float
    updated_at: float
    finished_at: float | None
    page: int
    gen: int
    walk_done: bool
    cursor: str | None
    total_estimate: int | None
    resumed: int
    error: str | None
    in_flight: int
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, fields: Mapping[str, str], in_flight: int) -> RunRecord:
        def number(name: str) -> float | None:
            value = fields.get(name)
            return float(value) if value not in (None, "") else None

        total = fields.get("total_estimate")
        return cls(
            id=fields["id"],
            status=fields.get("status", RUNNING),
            trigger=fields.get("trigger", "manual"),
            integration=fields.get("integration") or LEGACY_INTEGRATION,
            dry_run=fields.get("dry_run") == "1",
            only_changed=fields.get("only_changed") == "1",
            started_at=number("started_at") or 0.0,
            updated_at=number("updated_at") or 0.0,
            finished_at=number("finished_at"),
            page=int(fields.get("page", 0)),
            gen=int(fields.get("gen", 0)),
            walk_done=fields.get("walk_done") == "1",
            cursor=fields.get("cursor") or None,
            total_estimate=int(total) if total not in (None, "") else None,
            resumed=int(fields.get("resumed", 0)),
            error=fields.get("error") or None,
            in_flight=in_flight,
            counts={name: int(fields.get(name, 0)) for name in COUNTERS},
        )


@dataclass(frozen=True)
class Resumption:
    """What :meth:`RunStore.resume` hands back: where to walk from and which chunks to nudge."""

    gen: int
    page: int
    cursor: str | None
    walk_done: bool
    finished: bool
    pending: dict[str, int]  # chunk id -> current version


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    only_changed: bool = True
    trigger: str = "manual"
    #: the integration the run re-syncs (a run started before runs had one is ``clients``'s)
    integration: str = LEGACY_INTEGRATION


class RunStore:
    def __init__(
        self, client: redis_lib.Redis, *, lock_ttl_seconds: float, keep_seconds: int, keep_runs: int = 50
    ):
        self._redis = client
        self.lock_ttl_ms = max(1, round(lock_ttl_seconds * 1000))
        self.keep_seconds = keep_seconds
        self.keep_runs = keep_runs
        self._commit_page = client.register_script(_COMMIT_PAGE)
        self._record_chunk = client.register_script(_RECORD_CHUNK)
        self._end = client.register_script(_END)
        self._hold_walk = client.register_script(_HOLD_WALK)
        self._resume = client.register_script(_RESUME)
        self._integrations: dict[str, str] = {}  # run id -> integration (this store's, a task's life)

    def integration_of(self, run_id: str) -> str:
        """The integration ``run_id`` re-syncs (a run recorded before runs had one, or gone: ``clients``);
        read once per store (it never changes)."""
        known = self._integrations.get(run_id)
        if known is None:
            raw = self._redis.hget(keys.run(run_id), "integration")
            known = (_text(raw) if raw else "") or LEGACY_INTEGRATION
            self._integrations[run_id] = known
        return known

    def _keys(self, run_id: str) -> list[str]:
        integration = self.integration_of(run_id)
        return [keys.run(run_id), keys.pending(run_id), keys.lock(integration), keys.active(integration)]

    def _head(self, run_id: str) -> list[Any]:
        return [run_id, repr(time.time()), self.keep_seconds]

    # --- creating and reading ---------------------------------------------------------------

    def create(self, run_id: str, options: RunOptions, *, total_estimate: int | None = None) -> None:
        """Write a new running run and make it the active one (call while holding the lock)."""
        now = time.time()
        fields = {
            "id": run_id,
            "status": RUNNING,
            "trigger": options.trigger,
            "integration": options.integration,
            "dry_run": "1" if options.dry_run else "0",
            "only_changed": "1" if options.only_changed else "0",
            "started_at": repr(now),
            "updated_at": repr(now),
            "gen": "0",
            "page": "0",
            "cursor": "",
            "walk_done": "0",
            "resumed": "0",
            **{name: "0" for name in COUNTERS},
        }
        if total_estimate is not None:
            fields["total_estimate"] = str(total_estimate)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.run(run_id), mapping=fields)
        pipe.zadd(keys.runs_index(), {run_id: now})
        pipe.set(keys.active(options.integration), run_id)
        pipe.execute()
        self._integrations[run_id] = options.integration
        self._trim()

    def _trim(self) -> None:
        """Forget the runs beyond the newest ``keep_runs`` (of every integration), but never a running one."""
        old = self._redis.zrange(keys.runs_index(), 0, -(self.keep_runs + 1))
        for raw in old:
            run_id = _text(raw)
            if _text(self._redis.hget(keys.run(run_id), "status") or "") != RUNNING:
                self._redis.delete(keys.run(run_id))
                self._redis.zrem(keys.runs_index(), run_id)

    def set_total_estimate(self, run_id: str, total: int) -> None:
        self._redis.hset(keys.run(run_id), "total_estimate", str(total))

    def load(self, run_id: str) -> RunRecord | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.run(run_id))
        pipe.hlen(keys.pending(run_id))
        raw, in_flight = pipe.execute()
        if not raw:
            return None
        return RunRecord.from_hash({_text(k): _text(v) for k, v in raw.items()}, int(in_flight))

    def active_id(self, integration: str = LEGACY_INTEGRATION) -> str | None:
        """The id of ``integration``'s unfinished run, if any."""
        raw = self._redis.get(keys.active(integration))
        return _text(raw) if raw else None

    def recent(self, limit: int = 20, *, integration: str | None = None) -> list[RunRecord]:
        """The newest runs first (of the ``keep_runs`` kept), only ``integration``'s when given."""
        if integration is None:
            ids = [_text(i) for i in self._redis.zrevrange(keys.runs_index(), 0, max(0, limit - 1))]
            return [record for record in (self.load(run_id) for run_id in ids) if record is not None]
        ids = [_text(i) for i in self._redis.zrevrange(keys.runs_index(), 0, -1)]
        found = (record for record in (self.load(run_id) for run_id in ids) if record is not None)
        # Read only as far as the newest ``limit`` of this integration: every /metrics scrape asks
        # each running integration's latest run.
        return list(islice((record for record in found if record.integration == integration), limit))

    def latest(self, integration: str | None = None) -> RunRecord | None:
        """The newest run (``integration``'s when given)."""
        found = self.recent(1, integration=integration)
        return found[0] if found else None

    def last_finished_seen(self, integration: str = LEGACY_INTEGRATION) -> int | None:
        """What ``integration``'s latest finished run saw (an estimate of its next run's total)."""
        for record in self.recent(10, integration=integration):
            if record.status == FINISHED:
                return record.counts["seen"]
        return None

    def in_flight(self, run_id: str) -> int:
        return int(self._redis.hlen(keys.pending(run_id)))

    def chunk(self, run_id: str, chunk_id: str) -> Chunk | None:
        raw = self._redis.hget(keys.pending(run_id), chunk_id)
        return Chunk.decode(raw) if raw else None

    # --- changing ---------------------------------------------------------------------------

    def commit_page(
        self,
        run_id: str,
        *,
        gen: int,
        page: int,
        next_cursor: str | None,
        counts: Mapping[str, int],
        chunks: Iterable[tuple[str, Chunk]],
    ) -> tuple[bool, bool]:
        """Advance the checkpoint past ``page``; returns ``(committed, finished)``."""
        counted = [(name, int(value)) for name, value in counts.items() if value]
        args: list[Any] = [
            *self._head(run_id),
            self.lock_ttl_ms,
            gen,
            page,
            next_cursor or "",
            "0" if next_cursor else "1",
            len(counted),
        ]
        for name, value in counted:
            args += [name, value]
        for chunk_id, chunk in chunks:
            args += [chunk_id, chunk.encode()]
        committed, finished = self._commit_page(keys=self._keys(run_id), args=args)
        return bool(committed), bool(finished)

    def record_chunk(
        self, run_id: str, chunk_id: str, version: int, counts: Mapping[str, int], rest: Chunk | None
    ) -> tuple[bool, bool]:
        """Count a chunk's work and drop it (``rest`` None) or keep what is left; ``(recorded, finished)``."""
        args: list[Any] = [
            *self._head(run_id),
            self.lock_ttl_ms,
            chunk_id,
            version,
            rest.encode() if rest is not None and rest.contacts else "",
        ]
        for name, value in counts.items():
            if value:
                args += [name, int(value)]
        recorded, finished = self._record_chunk(keys=self._keys(run_id), args=args)
        return bool(recorded), bool(finished)

    def hold_walk(self, run_id: str, gen: int, page: int) -> bool:
        """A walk step held at ``page`` (an upstream halted) is alive: refresh the run's lock, so the
        watchdog does not resume the run beside it. False (nothing done) when the run is not running
        or the walk is not its current one (an older ``gen``, another page): the caller drops it."""
        args = [*self._head(run_id), self.lock_ttl_ms, gen, page]
        return bool(self._hold_walk(keys=self._keys(run_id), args=args))

    def end(self, run_id: str, status: str, error: str = "") -> bool:
        """End a running run as ``failed`` or ``cancelled``; False when it was not running."""
        return bool(self._end(keys=self._keys(run_id), args=[*self._head(run_id), status, error]))

    def resume(self, run_id: str) -> Resumption | None:
        """Bump the run's generation and return its checkpoint and pending chunks (None: not running)."""
        out = [_text(v) for v in self._resume(keys=self._keys(run_id), args=self._head(run_id))]
        if not out:
            return None
        gen, page, cursor, walk_done, finished, *pairs = out
        pending = {pairs[i]: int(pairs[i + 1].partition(":")[0]) for i in range(0, len(pairs), 2)}
        return Resumption(int(gen), int(page), cursor or None, walk_done == "1", finished == "1", pending)
