"""What the referral intake's beat tasks leave in Redis about their runs, and its reading (``/metrics``).

Guarantees:
- the walk's lock (:data:`WALK_LOCK_KEY`), the latest walk's end (:data:`LAST_WALK_KEY`) and the
  latest qualification backstop's end (:data:`LAST_BACKSTOP_KEY`) are keys with the service's
  prefix; an end is one JSON object (:func:`record_end`: the task's figures and ``ended_at``, Unix
  seconds), each end replacing the one before (no expiry: a few hundred bytes);
- :func:`read_intake` only reads, in one round trip: the two ends, whether a walk holds its lock,
  the high-water mark (:mod:`.highwater`); what is not there (no walk or backstop ended yet, no
  mark, a record that cannot be read) is ``None``, never a made-up figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from sync_worker.keys import PREFIX
from sync_worker.referral_intake import highwater
from sync_worker.referral_intake.marks import Mark

WALK_LOCK_KEY = f"{PREFIX}:referral-walk:lock"
#: JSON of the latest walk to end: run id, status (``finished``, ``failed``), counts, ``ended_at``.
LAST_WALK_KEY = f"{PREFIX}:referral-walk:last"
#: JSON of the latest backstop to end: status (``finished``, ``failed``), ``found``, ``stored``, ``ended_at``.
LAST_BACKSTOP_KEY = f"{PREFIX}:referral-backstop:last"


def record_end(client: redis_lib.Redis, key: str, figures: Mapping[str, Any]) -> None:
    """Keep ``figures`` with ``ended_at`` (now) as the latest end under ``key``."""
    client.set(key, json.dumps({**figures, "ended_at": time.time()}))


@dataclass(frozen=True)
class IntakeStatus:
    last_walk: Mapping[str, Any] | None
    walk_running: bool  # a walk holds the lock (until it ends, or its lock's expiry after a crash)
    high_water: Mark | None
    last_backstop: Mapping[str, Any] | None


def _record(raw: bytes | str | None) -> Mapping[str, Any] | None:
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _mark(raw: bytes | str | None) -> Mark | None:
    try:
        return Mark.from_text(raw)
    except ValueError:
        return None


def read_intake(client: redis_lib.Redis) -> IntakeStatus:
    """The intake's runs as Redis has them (raises :class:`redis.RedisError` when it cannot be read)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(LAST_WALK_KEY)
    pipe.exists(WALK_LOCK_KEY)
    pipe.get(highwater.KEY)
    pipe.get(LAST_BACKSTOP_KEY)
    last_walk, locked, mark, last_backstop = pipe.execute()
    return IntakeStatus(
        last_walk=_record(last_walk),
        walk_running=bool(locked),
        high_water=_mark(mark),
        last_backstop=_record(last_backstop),
    )
