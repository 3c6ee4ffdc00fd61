"""Each integration's latest re-sync run is its own series on ``/metrics`` (``web.exposition``)."""

from __future__ import annotations

from web.exposition import resync_families


def _samples(runs):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in resync_families(runs)
        for sample in family.samples
    }


def run(run_id: str, status: str, **figures: object) -> dict[str, object]:
    return {"id": run_id, "status": status, "trigger": "beat", "counts": {"seen": 3}, **figures}


def test_two_integrations_runs_are_two_series_not_the_latest_of_either() -> None:
    samples = _samples(
        {
            "clients": run("r1", "finished", done=3, fraction=1.0),
            "dealer_users": run("r2", "running", done=1, fraction=0.25),
        }
    )
    assert samples[("intercom_sync_resync_running", (("integration", "clients"),))] == 0
    assert samples[("intercom_sync_resync_running", (("integration", "dealer_users"),))] == 1
    assert samples[("intercom_sync_resync_progress_ratio", (("integration", "dealer_users"),))] == 0.25
    assert samples[("intercom_sync_resync_done_contacts", (("integration", "clients"),))] == 3
    info = [key for key in samples if key[0] == "intercom_sync_resync_run_info"]
    assert sorted(dict(labels)["run_id"] for _, labels in info) == ["r1", "r2"]


def test_a_figure_not_known_yet_is_absent_and_no_run_is_empty_families() -> None:
    samples = _samples({"clients": run("r1", "running")})
    assert not any(name == "intercom_sync_resync_eta_seconds" for name, _ in samples)
    assert _samples({}) == {}
