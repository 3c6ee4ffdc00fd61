"""Delivery settings: time limits, reschedule cap, the visibility-timeout and re-sync lock checks, the sweep interval."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sync_worker.celery_app import (
    REPLAY_DEAD_LETTERS_TASK,
    DeliveryMisconfigured,
    beat_schedule,
    check_resync_lock_ttl,
    check_visibility_timeout,
    create_celery,
    longest_countdown,
    restore_interval,
)
from sync_worker.config import Settings
from sync_worker.resync.settings import ResyncSettings


def settings(**values: object) -> Settings:
    return Settings(**{name: str(value) for name, value in values.items()})


def resync_settings(**values: object) -> ResyncSettings:
    return ResyncSettings(**{name: str(value) for name, value in values.items()})


def test_defaults_are_the_former_constants():
    default = Settings()
    assert (default.task_time_limit_seconds, default.soft_time_limit_seconds) == (150, 120)
    assert default.max_reschedule_seconds == 300
    assert longest_countdown(default) == 600  # the retry backoff cap
    check_visibility_timeout(default)  # 3600 > 600 + 150
    check_resync_lock_ttl(default, ResyncSettings())  # 360 > 300 + 5


def test_the_visibility_timeout_must_exceed_the_longest_countdown_plus_the_hard_limit():
    short = {
        "SYNC_TASK_TIME_LIMIT_SECONDS": 10,
        "SYNC_MAX_RESCHEDULE_SECONDS": 3,
        "SYNC_RETRY_BACKOFF_MAX_SECONDS": 2,
    }
    check_visibility_timeout(settings(**short, SYNC_VISIBILITY_TIMEOUT_SECONDS=14))
    with pytest.raises(DeliveryMisconfigured, match=r"SYNC_VISIBILITY_TIMEOUT_SECONDS=13 .*\(13s\)"):
        check_visibility_timeout(settings(**short, SYNC_VISIBILITY_TIMEOUT_SECONDS=13))
    with pytest.raises(DeliveryMisconfigured):  # the default hour is too short for a 3500 s cap
        create_celery(settings(SYNC_MAX_RESCHEDULE_SECONDS=3500))


def test_the_resync_lock_must_outlive_the_longest_resync_countdown_plus_a_chunk_budget():
    # The retry backoff cap does not count: every re-sync countdown is capped at the reschedule cap.
    short = settings(SYNC_MAX_RESCHEDULE_SECONDS=3, SYNC_RETRY_BACKOFF_MAX_SECONDS=50)
    budget = {"SYNC_RESYNC_CHUNK_TIME_BUDGET_SECONDS": 1.5}
    check_resync_lock_ttl(short, resync_settings(**budget, SYNC_RESYNC_LOCK_TTL_SECONDS=4.6))
    with pytest.raises(DeliveryMisconfigured) as refused:
        check_resync_lock_ttl(short, resync_settings(**budget, SYNC_RESYNC_LOCK_TTL_SECONDS=4.5))
    message = str(refused.value)
    assert message.startswith("SYNC_RESYNC_LOCK_TTL_SECONDS=4.5 must exceed"), message
    for name in ("SYNC_MAX_RESCHEDULE_SECONDS", "SYNC_RESYNC_CHUNK_TIME_BUDGET_SECONDS"):
        assert name in message, message
    assert "(4.5s)" in message, message  # the value the ttl must exceed: 3 + 1.5


def test_the_app_refuses_a_resync_lock_shorter_than_a_chunk_may_wait():
    long_reschedule = settings(SYNC_MAX_RESCHEDULE_SECONDS=1000, SYNC_VISIBILITY_TIMEOUT_SECONDS=5000)
    with pytest.raises(DeliveryMisconfigured, match=r"SYNC_RESYNC_LOCK_TTL_SECONDS=360 .*\(1005s\)"):
        create_celery(long_reschedule, ResyncSettings())  # the default 360 s lock, a 1000 s reschedule cap
    create_celery(long_reschedule, resync_settings(SYNC_RESYNC_LOCK_TTL_SECONDS=1006))


def test_the_soft_limit_is_80_percent_of_the_hard_one_unless_set_and_stays_below_it():
    assert settings(SYNC_TASK_TIME_LIMIT_SECONDS=10).soft_time_limit_seconds == 8
    assert settings(SYNC_TASK_SOFT_TIME_LIMIT_SECONDS=100).soft_time_limit_seconds == 100
    with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT"):
        settings(SYNC_TASK_TIME_LIMIT_SECONDS=10, SYNC_TASK_SOFT_TIME_LIMIT_SECONDS=10)


def test_the_app_uses_the_settings():
    app = create_celery(
        settings(
            SYNC_TASK_TIME_LIMIT_SECONDS=10,
            SYNC_MAX_RESCHEDULE_SECONDS=2,
            SYNC_RETRY_BACKOFF_MAX_SECONDS=2,
            SYNC_VISIBILITY_TIMEOUT_SECONDS=13,
        )
    )
    assert (app.conf.task_time_limit, app.conf.task_soft_time_limit) == (10, 8)
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == 13
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (1.3, 1)


@pytest.mark.parametrize(("timeout", "interval"), [(3600, 10.0), (100, 10.0), (40, 4.0), (13, 1.3), (5, 1.0)])
def test_dead_workers_messages_are_swept_every_tenth_of_the_timeout_within_1_to_10_s(timeout, interval):
    assert restore_interval(settings(SYNC_VISIBILITY_TIMEOUT_SECONDS=timeout)) == pytest.approx(interval)


def test_beat_replays_dead_letters_only_when_a_cron_is_set():
    assert "dead-letter-replay" not in beat_schedule(Settings())
    schedule = beat_schedule(settings(SYNC_DEAD_LETTER_REPLAY_CRON="30 * * * *"))
    entry = schedule["dead-letter-replay"]
    assert entry["task"] == REPLAY_DEAD_LETTERS_TASK
    assert entry["schedule"].minute == {30}
    assert {"nightly-resync", "resync-watchdog"} <= set(schedule)


def test_the_halt_probe_outlives_a_realtime_backlog():
    """It shares ``sync.realtime`` with webhooks: expiring after one period (30 s), no probe behind a
    backlog ever ran and no halt cleared."""
    for period in (1, 30, 300):
        options = beat_schedule(settings(SYNC_HALT_PROBE_SECONDS=period))["halt-probe"]["options"]
        assert options["expires"] >= max(600, 10 * period)
