"""Redis keys of the bulk re-sync.

Guarantees: every key starts with ``intercom-sync:resync:`` (the service's prefix,
:data:`sync_worker.keys.PREFIX`), so one pattern finds everything the re-sync keeps.
A run's keys hold its id; the lock and the active run are one per integration (the ``clients``
integration's keep the names they had before runs had an integration, so a run in flight at an
upgrade is found as it is); the index of runs is one for all.
"""

from __future__ import annotations

from sync_worker.keys import LEGACY_INTEGRATION, PREFIX

BASE = f"{PREFIX}:resync"


def _of(name: str, integration: str) -> str:
    return f"{BASE}:{name}" if integration == LEGACY_INTEGRATION else f"{BASE}:{name}:{integration}"


def lock(integration: str = LEGACY_INTEGRATION) -> str:
    """``integration``'s one-run-at-a-time lock: value = the id of the run holding it."""
    return _of("lock", integration)


def active(integration: str = LEGACY_INTEGRATION) -> str:
    """The id of ``integration``'s run not finished yet (kept past the lock's expiry, so a crashed run
    resumes)."""
    return _of("active", integration)


def runs_index() -> str:
    """Sorted set: run id -> start time (Unix seconds), for listing recent runs."""
    return f"{BASE}:runs"


def run(run_id: str) -> str:
    """Hash: the run's options, checkpoint (cursor, page, generation) and counters."""
    return f"{BASE}:run:{run_id}"


def pending(run_id: str) -> str:
    """Hash: chunk id -> chunk payload (JSON) for every chunk queued and not finished yet."""
    return f"{BASE}:pending:{run_id}"
