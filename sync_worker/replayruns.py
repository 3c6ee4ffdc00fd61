"""Replay runs: ``retry-all`` of the dead-letter store as a background task, its progress in Redis.

A replay of every parked contact can take far longer than a web request may (a server's or a client's timeout)
or a task's time limit on a store of thousands of entries, so it runs as a chain of task steps,
each replaying at most :data:`BATCH` entries, and leaves its progress in a record that the admin
API and the CLI read. Our own module because the record is this small (the bulk re-sync's
:mod:`sync_worker.resync.runs` keeps walk checkpoints and chunks this does not need).

Guarantees:
- a run is one hash (``keys.replay_run``): ``status`` (``queued``, ``running``, ``finished``,
  ``failed`` when its first step could not be published), ``trigger``, ``total`` (entries parked
  when it was created), ``replayed``, ``failed`` (replays that could not be stored: those entries
  stay parked), ``step`` and times; ``keys.replay_run_latest`` names the newest run. A run is
  kept :data:`KEEP_SECONDS` after its last change;
- a run replays the entries parked up to its creation (``cutoff``, on Redis's clock), oldest
  first; an entry parked again meanwhile (its replay failed once more) or later is not the run's,
  so a run always ends. An entry whose replay cannot be stored stays parked and is skipped by the
  later steps;
- a step counts only when the record is at its ``step`` (one script): a step delivered twice
  (a worker died after it replayed) counts once and publishes no second successor; its replays
  are harmless twice (a replayed entry is gone, a pending sync folds a second trigger);
- :func:`start` stores the run before it publishes its first step (``sync.bulk``: the replayed
  syncs, on ``sync.realtime``, go first); a publish that fails marks the run ``failed`` and raises;
- the record holds counts and ids only, never an email.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis as redis_lib
from celery import Celery

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, REPLAY_DEAD_LETTERS_TASK
from sync_worker.deadletter import DeadLetterStore
from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"
#: Entries one step replays (each replay is one Redis script): well inside a task's time limit.
BATCH = 500
KEEP_SECONDS = 7 * 24 * 3600

# KEYS[1] run; ARGV: step, replayed, failed, done ('1' finishes the run), now, keep seconds.
# Returns 1 when the step was counted (the run was at this step and not ended), else 0.
_RECORD_STEP = """
local f = redis.call('HMGET', KEYS[1], 'status', 'step')
if (f[1] ~= 'queued' and f[1] ~= 'running') or f[2] ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[1], 'replayed', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'failed', tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'step', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[4] == '1' and 'finished' or 'running', 'updated_at', ARGV[5])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'finished_at', ARGV[5]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return 1
"""


@dataclass(frozen=True)
class ReplayRun:
    id: str
    status: str
    trigger: str
    cutoff: float
    total: int
    replayed: int
    failed: int
    step: int
    created_at: float
    updated_at: float
    finished_at: float | None
    error: str | None = None

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> ReplayRun:
        finished = fields.get("finished_at")
        return cls(
            id=fields["id"],
            status=fields["status"],
            trigger=fields.get("trigger", "manual"),
            cutoff=float(fields["cutoff"]),
            total=int(fields.get("total", 0)),
            replayed=int(fields.get("replayed", 0)),
            failed=int(fields.get("failed", 0)),
            step=int(fields.get("step", 0)),
            created_at=float(fields["created_at"]),
            updated_at=float(fields.get("updated_at", fields["created_at"])),
            finished_at=float(finished) if finished else None,
            error=fields.get("error") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``done`` (replayed or failed) for a progress display."""
        document = asdict(self)
        del document["cutoff"]
        return {**document, "done": self.replayed + self.failed}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ReplayRuns:
    """The replay-run records of one Redis."""

    def __init__(self, client: redis_lib.Redis):
        self._redis = client
        self._record_step = client.register_script(_RECORD_STEP)

    def create(self, store: DeadLetterStore, trigger: str) -> ReplayRun:
        """A queued run of every entry parked now; it becomes the latest run."""
        seconds, micros = self._redis.time()
        cutoff = f"{seconds}.{int(micros):06d}"
        run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}-{uuid.uuid4().hex[:8]}"
        now = repr(time.time())
        fields = {
            "id": run_id,
            "status": QUEUED,
            "trigger": trigger,
            "cutoff": cutoff,
            "total": str(store.count_parked_until(float(cutoff))),
            "replayed": "0",
            "failed": "0",
            "step": "0",
            "created_at": now,
            "updated_at": now,
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.replay_run(run_id), mapping=fields)
        pipe.expire(keys.replay_run(run_id), KEEP_SECONDS)
        pipe.set(keys.replay_run_latest(), run_id, ex=KEEP_SECONDS)
        pipe.execute()
        return ReplayRun.from_hash(fields)

    def load(self, run_id: str) -> ReplayRun | None:
        raw = self._redis.hgetall(keys.replay_run(run_id))
        return ReplayRun.from_hash({_text(k): _text(v) for k, v in raw.items()}) if raw else None

    def latest(self) -> ReplayRun | None:
        run_id = self._redis.get(keys.replay_run_latest())
        return self.load(_text(run_id)) if run_id else None

    def record_step(self, run_id: str, step: int, replayed: int, failed: int, *, done: bool) -> bool:
        """Count step ``step``'s replays (and finish the run when ``done``); False: not this run's turn."""
        args = [step, replayed, failed, "1" if done else "0", repr(time.time()), KEEP_SECONDS]
        return bool(self._record_step(keys=[keys.replay_run(run_id)], args=args))

    def fail(self, run_id: str, error: str) -> None:
        """The run could not be started (its first step not published)."""
        now = repr(time.time())
        self._redis.hset(
            keys.replay_run(run_id),
            mapping={"status": FAILED, "error": error, "finished_at": now, "updated_at": now},
        )


def run_step(
    runs: ReplayRuns,
    store: DeadLetterStore,
    enqueue: Callable[[dict[str, Any]], object],
    run_id: str,
    step: int,
    *,
    batch: int = BATCH,
) -> ReplayRun | None:
    """Replay the run's next ``batch`` entries; the record after the step (None: not this step's turn,
    nothing done). The caller publishes step ``step + 1`` while the record is not finished."""
    run = runs.load(run_id)
    if run is None or run.status not in (QUEUED, RUNNING) or run.step != step:
        return None
    # The entries that failed to replay in earlier steps stay parked, oldest first: skip them.
    ids = store.ids_parked_until(run.cutoff, offset=run.failed, limit=batch)
    replayed = failed = 0
    for entry_id in ids:
        try:
            replayed += store.replay(entry_id, enqueue)
        except Exception as error:  # the entry stays parked; the run goes on
            failed += 1
            log_event(
                logger,
                "dead_letter_replay_failed",
                level=logging.WARNING,
                run_id=run_id,
                error_type=type(error).__name__,
                exc_info=error,
            )
    done = len(ids) < batch
    if not runs.record_step(run_id, step, replayed, failed, done=done):
        return None
    after = runs.load(run_id)
    if done:
        log_event(
            logger,
            "dead_letters_replayed",
            run_id=run_id,
            replayed=run.replayed + replayed,
            failed=run.failed + failed,
        )
    return after


def publish_step(celery_app: Celery, run_id: str, step: int) -> None:
    """Queue step ``step`` of the run (the task is :data:`REPLAY_DEAD_LETTERS_TASK`)."""
    celery_app.send_task(REPLAY_DEAD_LETTERS_TASK, kwargs={"run_id": run_id, "step": step}, queue=BULK_QUEUE)


def start(client: redis_lib.Redis, celery_app: Celery, trigger: str) -> ReplayRun:
    """Create a run of every entry parked now and queue its first step; raises what the publish
    raised (the run is then ``failed``)."""
    runs = ReplayRuns(client)
    run = runs.create(DeadLetterStore(client), trigger)
    try:
        publish_step(celery_app, run.id, 0)
    except Exception as error:
        runs.fail(run.id, f"the first step could not be queued: {type(error).__name__}")
        raise
    log_event(logger, "dead_letter_replay_started", run_id=run.id, total=run.total, trigger=trigger)
    return run
