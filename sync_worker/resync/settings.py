"""The bulk re-sync's settings (``SYNC_RESYNC_*``), read from the environment.

Guarantees: every knob has one environment name and a bounded, typed value; a bad
value fails when the settings are read (at process start), not in the middle of a run.
The schedule itself (``SYNC_RESYNC_CRON``) lives in :mod:`sync_worker.config`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The platform's batch lookup takes at most this many emails a call.
MAX_CHUNK_SIZE = 100
#: Intercom's largest page of ``GET /contacts``.
PAGE_SIZE = 150


class ResyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    #: Bulk runs write only contacts whose values changed (triggered syncs always write).
    only_changed: bool = Field(True, validation_alias="SYNC_RESYNC_ONLY_CHANGED")
    #: Contacts per chunk task (one platform lookup each).
    chunk_size: int = Field(
        MAX_CHUNK_SIZE, ge=1, le=MAX_CHUNK_SIZE, validation_alias="SYNC_RESYNC_CHUNK_SIZE"
    )
    #: Chunks queued or running at once; the walk pauses while this many are in flight.
    max_in_flight: int = Field(16, ge=1, le=10_000, validation_alias="SYNC_RESYNC_MAX_IN_FLIGHT")
    #: How long a walk waits before looking again while the chunks in flight are at the bound.
    backpressure_pause_seconds: float = Field(
        0.5, gt=0, le=60, validation_alias="SYNC_RESYNC_BACKPRESSURE_PAUSE_SECONDS"
    )
    #: Pages one walk task reads before handing on to a fresh task (if the bound allows).
    pages_per_step: int = Field(4, ge=1, le=100, validation_alias="SYNC_RESYNC_PAGES_PER_STEP")
    #: A chunk task gives its worker slot back after this long, rescheduling the rest of its contacts.
    chunk_time_budget_seconds: float = Field(
        5.0, gt=0, le=100, validation_alias="SYNC_RESYNC_CHUNK_TIME_BUDGET_SECONDS"
    )
    #: The lock expires this long after the run last made progress (then the run may be resumed).
    #: Progress is a committed page or a recorded chunk, never a walk paused at the bound. It must
    #: exceed ``SYNC_MAX_RESCHEDULE_SECONDS`` (the cap of every re-sync countdown) plus
    #: ``chunk_time_budget_seconds`` (checked at start by
    #: :func:`sync_worker.celery_app.check_resync_lock_ttl`; with the defaults, 300 + 5 s), so a
    #: chunk rescheduled for a long rate-limit wait is not re-published by the watchdog meanwhile
    #: (that would be harmless, the first of the two to run moves the chunk's version on and the
    #: other does nothing, but spare work).
    lock_ttl_seconds: float = Field(
        360.0, ge=0.1, le=24 * 3600, validation_alias="SYNC_RESYNC_LOCK_TTL_SECONDS"
    )
    #: A scheduled start is skipped when a run started less than this long ago (several beats).
    min_interval_seconds: float = Field(3600.0, ge=0, validation_alias="SYNC_RESYNC_MIN_INTERVAL_SECONDS")
    #: Finished runs are kept this long, and at most ``keep_runs`` of them.
    keep_seconds: int = Field(30 * 24 * 3600, ge=60, validation_alias="SYNC_RESYNC_KEEP_SECONDS")
    keep_runs: int = Field(50, ge=1, validation_alias="SYNC_RESYNC_KEEP_RUNS")


@lru_cache(maxsize=1)
def get_resync_settings() -> ResyncSettings:
    """The process's re-sync settings, read once from the environment."""
    return ResyncSettings()
