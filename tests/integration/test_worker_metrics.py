"""``/metrics`` shows what real worker processes did, read with ``prometheus_client``'s parser.

Real ``celery worker`` processes (a prefork pool of two children) sync contacts of the
Intercom sandbox from the platform sandbox over HTTP; the receiver's ``/metrics`` (another
process's view: it only reads Redis) must show their syncs by outcome and error code, the
upstream responses by status, rate-limit waits, queue depths, dead letters, the circuit's
state and a bulk re-sync's progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis as redis_lib
import requests

from sync_worker.celery_app import SYNC_TASK
from sync_worker.config import Settings
from sync_worker.devtools.devstack import NO_ACCOUNT_EMAIL, seed_intercom_contacts
from sync_worker.devtools.localredis import wait_until
from sync_worker.ratelimit import RateLimiter
from tests.fixtures.prometheus import Key, family_types, key, scrape
from tests.fixtures.workers import ADMIN_TOKEN, TRIGGER_TOKEN

pytestmark = pytest.mark.integration

OLIVIA_EMAIL = "olivia.brandt@example.com"
UNKNOWN_EMAIL = "nobody.in.intercom@example.com"
SYNCS = "intercom_sync_worker_syncs_total"


def wait_for(url: str, check: Callable[[dict[Key, float]], bool], message: str, timeout: float = 60) -> dict:
    seen: dict[str, dict[Key, float]] = {}

    def done() -> bool:
        seen["samples"] = scrape(url)
        return check(seen["samples"])

    try:
        wait_until(done, timeout, interval=0.2, message=message)
    except TimeoutError:
        interesting = {
            k: v for k, v in seen.get("samples", {}).items() if not k[0].startswith("intercom_sync_web")
        }
        raise AssertionError(f"{message}; last scrape: {sorted(interesting.items())}") from None
    return seen["samples"]


def syncs(samples: dict[Key, float], **labels: str) -> float:
    """The sum of the syncs counted with ``labels`` (any other label's value)."""
    return sum(
        value
        for (name, label_set), value in samples.items()
        if name == SYNCS and set(labels.items()) <= label_set
    )


def trigger(url: str, body: dict) -> None:
    response = requests.post(
        f"{url}/v1/sync", json=body, headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"}, timeout=10
    )
    assert response.status_code == 202, response.text


def test_metrics_show_what_real_workers_did(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
) -> None:
    url = web_app.url
    contacts = {contact["email"]: contact for contact in seed_intercom_contacts(intercom_sandbox.url)}
    olivia, no_account = contacts[OLIVIA_EMAIL], contacts[NO_ACCOUNT_EMAIL]

    # Before any worker runs: what the receiver queued waits on the realtime queue.
    trigger(url, {"contact_id": olivia["id"], "email": OLIVIA_EMAIL})
    trigger(url, {"contact_id": no_account["id"]})
    samples = scrape(url)
    assert samples[key("intercom_sync_queue_depth", queue="sync.realtime")] == 2
    assert samples[key("intercom_sync_queue_depth", queue="sync.bulk")] == 0
    assert samples[key("intercom_sync_circuit_state", circuit="platform", state="closed")] == 1
    assert syncs(samples) == 0
    types = family_types(requests.get(f"{url}/metrics", timeout=10).text)
    assert types["intercom_sync_worker_syncs"] == "counter"
    assert types["intercom_sync_queue_depth"] == "gauge"
    assert types["intercom_sync_web_request_duration_seconds"] == "histogram"

    workers.start(
        1,
        concurrency=2,
        SYNC_CIRCUIT_FAILURE_THRESHOLD="1",
        SYNC_CIRCUIT_OPEN_SECONDS="60",
        SYNC_CONTACT_SEARCH_WAIT_SECONDS="2",
    )
    samples = wait_for(
        url,
        lambda s: (
            syncs(s, outcome="synced", trigger="manual", error_code="none") == 1
            and syncs(s, outcome="no_account", trigger="manual") == 1
        ),
        "the two manual syncs counted",
    )
    assert samples[key("intercom_sync_queue_depth", queue="sync.realtime")] == 0
    assert samples[key("intercom_sync_upstream_responses_total", upstream="intercom", status="200")] >= 2
    assert samples[key("intercom_sync_upstream_responses_total", upstream="platform", status="200")] == 2
    assert samples[key("intercom_sync_upstream_requests_total", upstream="platform")] == 2
    assert samples[key("intercom_sync_dead_letters")] == 0

    # An email Intercom's search never shows: it waits out SYNC_CONTACT_SEARCH_WAIT_SECONDS and
    # ends not_found, no dead letter.
    trigger(url, {"email": UNKNOWN_EMAIL})
    wait_for(
        url,
        lambda s: syncs(s, outcome="not_found") == 1,
        "the unknown contact counted as not found",
    )

    # Intercom refusing a contact's writes past its retries (SYNC_TASK_MAX_RETRIES=3): parked.
    intercom_sandbox.config(fail_next={"count": 10_000, "status": 503, "operation": "UpdateContact"})
    trigger(url, {"contact_id": olivia["id"], "email": OLIVIA_EMAIL})
    samples = wait_for(
        url,
        lambda s: (
            syncs(s, outcome="dead_lettered", error_code="intercom_unavailable") == 1
            and s[key("intercom_sync_dead_letters")] == 1
        ),
        "the refused contact parked and counted",
    )
    assert syncs(samples, outcome="retried", error_code="intercom_unavailable") == 3
    assert syncs(samples, outcome="dead_lettered") == 1
    intercom_sandbox.config(fail_next=None)

    # Rate limits: a pause every worker obeys. A short one is slept inline; a long one reschedules.
    limiter = RateLimiter(
        redis_lib.Redis.from_url(service_env["REDIS_URL"]),
        "platform",
        limit=Settings(**service_env).platform_calls_per_second,
        window_seconds=1,
    )
    limiter.pause_for(1.5)
    trigger(url, {"contact_id": olivia["id"], "email": OLIVIA_EMAIL})
    wait_for(
        url,
        lambda s: (
            s.get(key("intercom_sync_rate_limit_waits_total", upstream="platform", how="inline"), 0) == 1
            and s.get(key("intercom_sync_rate_limit_waited_seconds_total", upstream="platform"), 0) > 0.5
        ),
        "an inline rate-limit wait counted",
    )
    limiter.pause_for(4)
    trigger(url, {"contact_id": no_account["id"], "email": NO_ACCOUNT_EMAIL})
    samples = wait_for(
        url,
        lambda s: (
            s.get(key("intercom_sync_rate_limit_waits_total", upstream="platform", how="rescheduled"), 0) == 1
            and syncs(s, outcome="rescheduled", error_code="rate_limit_wait") == 1
        ),
        "a rescheduled rate-limit wait counted",
    )
    assert samples[key("intercom_sync_rate_limit_wait_seconds", upstream="platform")] > 0
    wait_for(  # a manual trigger writes even what the contact shows
        url,
        lambda s: (
            syncs(s, outcome="synced", trigger="manual") == 2
            and syncs(s, outcome="no_account", trigger="manual") == 2
        ),
        "both waits ended in a sync",
    )

    # A bulk re-sync: its progress, and its contacts among the syncs.
    started = requests.post(
        f"{url}/v1/admin/resync", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    samples = wait_for(
        url,
        lambda s: (
            s.get(
                key(
                    "intercom_sync_resync_run_info",
                    integration="clients",
                    run_id=run_id,
                    status="finished",
                    trigger="api",
                )
            )
            == 1
        ),
        "the re-sync run finished",
        timeout=90,
    )
    report = requests.get(
        f"{url}/v1/admin/resync/{run_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ).json()
    counts = report["counts"]
    assert counts["seen"] == len(contacts)
    assert (
        samples[key("intercom_sync_resync_contacts", count="seen", integration="clients")] == counts["seen"]
    )
    assert (
        samples[key("intercom_sync_resync_contacts", count="written", integration="clients")]
        == counts["written"]
    )
    assert samples[key("intercom_sync_resync_progress_ratio", integration="clients")] == 1
    assert samples[key("intercom_sync_resync_running", integration="clients")] == 0
    assert samples[key("intercom_sync_resync_in_flight_chunks", integration="clients")] == 0
    # The chunks' counts reach Redis within a flush interval of the run's end.
    bulk = counts["written"] + counts["unchanged"]
    wait_for(url, lambda s: syncs(s, trigger="schedule") == bulk, f"the {bulk} bulk syncs counted")

    # A platform outage: the failed reads, the stale write and the open circuit.
    platform_sandbox.config(outage="503")
    trigger(url, {"contact_id": olivia["id"], "email": OLIVIA_EMAIL})
    samples = wait_for(
        url,
        lambda s: (
            syncs(s, outcome="stale", trigger="manual") == 1
            and s[key("intercom_sync_circuit_state", circuit="platform", state="open")] == 1
        ),
        "the stale sync and the open circuit",
    )
    assert samples[key("intercom_sync_circuit_state", circuit="platform", state="closed")] == 0
    assert samples[key("intercom_sync_circuit_failures", circuit="platform")] >= 1
    assert samples[key("intercom_sync_upstream_responses_total", upstream="platform", status="503")] >= 1
    answered = sum(
        v
        for (name, labels), v in samples.items()
        if name == "intercom_sync_upstream_responses_total" and ("upstream", "platform") in labels
    )
    assert samples[key("intercom_sync_upstream_requests_total", upstream="platform")] == answered
    assert samples[key("intercom_sync_upstream_halted", upstream="intercom")] == 0


def test_metrics_count_a_bulk_run_s_deferred_contacts_and_syncs_waiting_on_a_halt(
    intercom_sandbox, platform_sandbox, workers, web_app, bulk_env
) -> None:
    """A chunk held past its bound (the platform down) defers its contacts: on the old code
    ``/metrics`` never counted them (``deferred``, like ``gone``, was no bulk sync outcome)."""
    url = web_app.url
    seeded = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(5)))
    platform_sandbox.config(outage="503")
    workers.start(
        1,
        concurrency=2,
        **{**bulk_env, "SYNC_RATE_LIMIT_MAX_WAIT_SECONDS": "2", "SYNC_CIRCUIT_OPEN_SECONDS": "1"},
    )
    started = requests.post(
        f"{url}/v1/admin/resync", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert started.status_code == 202, started.text
    wait_for(
        url,
        lambda s: syncs(s, outcome="deferred", trigger="schedule") == 5,
        "the 5 deferred contacts counted",
    )
    # Their refreshes wait on sync.bulk (the old code put them on sync.realtime, ahead of webhooks),
    # reserved by the worker until due (kombu's unacked entry: [message, exchange, routing key]).
    client = redis_lib.Redis.from_url(bulk_env["REDIS_URL"])
    waiting = [json.loads(raw) for raw in client.hvals("unacked")]
    refreshes = [entry for entry in waiting if entry[0]["headers"]["task"] == SYNC_TASK]
    assert refreshes and {entry[2] for entry in refreshes} == {"sync.bulk"}, waiting
    client.close()

    # A sync that finds Intercom halted counts each reschedule it waits (once per look).
    intercom_sandbox.config(token_revoked=True)
    trigger(url, {"contact_id": seeded[0]["id"]})
    wait_for(
        url,
        lambda s: syncs(s, outcome="waiting_halt", error_code="intercom_auth") >= 2,
        "a sync waiting on the halt, counted at each look",
    )
