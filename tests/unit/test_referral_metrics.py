"""The referral intake's walk and backstop on ``/metrics`` (``web.exposition.referral_families``)."""

from __future__ import annotations

from sync_worker.referral_intake.marks import Mark
from sync_worker.referral_intake.status import IntakeStatus
from web.exposition import referral_families

WALK_ENDED = "intercom_sync_referral_walk_last_ended_timestamp_seconds"
BACKSTOP_ENDED = "intercom_sync_referral_backstop_last_ended_timestamp_seconds"
FAMILIES = {
    WALK_ENDED,
    "intercom_sync_referral_walk_last_pages",
    "intercom_sync_referral_walk_last_users",
    "intercom_sync_referral_walk_running",
    "intercom_sync_referral_high_water_timestamp_seconds",
    BACKSTOP_ENDED,
    "intercom_sync_referral_backstop_last_contacts",
}


def _samples(intake: IntakeStatus | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in referral_families(intake)
        for sample in family.samples
    }


def test_a_finished_walk_its_mark_and_a_backstop_are_their_figures() -> None:
    intake = IntakeStatus(
        last_walk={
            "status": "finished",
            "pages": 3,
            "stored": 7,
            "already": 2,
            "newest": "1700000000.5:42",
            "run_id": "r1",
            "ended_at": 1700000100.25,
        },
        walk_running=False,
        high_water=Mark(1700000000.5, 42),
        last_backstop={"status": "finished", "found": 4, "stored": 3, "ended_at": 1700000200.0},
    )
    assert _samples(intake) == {
        (WALK_ENDED, (("error_code", "none"), ("status", "finished"))): 1700000100.25,
        ("intercom_sync_referral_walk_last_pages", ()): 3,
        ("intercom_sync_referral_walk_last_users", (("count", "stored"),)): 7,
        ("intercom_sync_referral_walk_last_users", (("count", "already"),)): 2,
        ("intercom_sync_referral_walk_running", ()): 0,
        ("intercom_sync_referral_high_water_timestamp_seconds", ()): 1700000000.5,
        (BACKSTOP_ENDED, (("error_code", "none"), ("status", "finished"))): 1700000200.0,
        ("intercom_sync_referral_backstop_last_contacts", (("count", "found"),)): 4,
        ("intercom_sync_referral_backstop_last_contacts", (("count", "stored"),)): 3,
    }


def test_a_failed_end_carries_its_error_code() -> None:
    intake = IntakeStatus(
        last_walk={"status": "failed", "error_code": "referral_unavailable", "pages": 0, "ended_at": 5.0},
        walk_running=True,
        high_water=None,
        last_backstop={"status": "failed", "error_code": "intercom_unavailable", "found": 1, "ended_at": 6.0},
    )
    samples = _samples(intake)
    assert samples[(WALK_ENDED, (("error_code", "referral_unavailable"), ("status", "failed")))] == 5.0
    assert samples[(BACKSTOP_ENDED, (("error_code", "intercom_unavailable"), ("status", "failed")))] == 6.0
    assert samples[("intercom_sync_referral_walk_running", ())] == 1
    # Counts the record does not hold are absent, not zeros.
    assert ("intercom_sync_referral_walk_last_users", (("count", "stored"),)) not in samples
    assert ("intercom_sync_referral_backstop_last_contacts", (("count", "stored"),)) not in samples
    assert not any(name == "intercom_sync_referral_high_water_timestamp_seconds" for name, _ in samples)


def test_nothing_recorded_yet_is_only_the_lock_and_not_running_is_empty_families() -> None:
    fresh = IntakeStatus(last_walk=None, walk_running=False, high_water=None, last_backstop=None)
    assert _samples(fresh) == {("intercom_sync_referral_walk_running", ()): 0}
    assert _samples(None) == {}
    assert {family.name for family in referral_families(None)} == FAMILIES
