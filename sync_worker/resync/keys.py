"""Redis keys of the bulk re-sync.

Guarantees: every key starts with ``intercom-sync:resync:`` (the service's prefix,
:data:`sync_worker.keys.PREFIX`), so one pattern finds everything the re-sync keeps.
A run's keys hold its id; the run-independent ones (lock, active run, index) are fixed.
"""

from __future__ import annotations

from sync_worker.keys import PREFIX

BASE = f"{PREFIX}:resync"


def lock() -> str:
    """The one-run-at-a-time lock: value = the id of the run holding it."""
    return f"{BASE}:lock"


def active() -> str:
    """The id of the run not finished yet (kept past the lock's expiry, so a crashed run resumes)."""
    return f"{BASE}:active"


def runs_index() -> str:
    """Sorted set: run id -> start time (Unix seconds), for listing recent runs."""
    return f"{BASE}:runs"


def run(run_id: str) -> str:
    """Hash: the run's options, checkpoint (cursor, page, generation) and counters."""
    return f"{BASE}:run:{run_id}"


def pending(run_id: str) -> str:
    """Hash: chunk id -> chunk payload (JSON) for every chunk queued and not finished yet."""
    return f"{BASE}:pending:{run_id}"
