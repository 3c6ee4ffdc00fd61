"""Workspace-wide failures halt their upstream instead of parking every contact (issue 12 items 4, 13).

Real worker and beat processes, real Redis, both sandboxes over HTTP. A revoked Intercom token
during a bulk run of a few thousand contacts raises one halt (one alert line), the work waits
(chunks hold, realtime syncs reschedule) while beat's probe tries one cheap call, and restoring
the token lets the run finish with every contact written; an archived attribute name does the
same with an error naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from sync_worker import keys
from sync_worker.celery_app import create_celery
from sync_worker.config import Settings
from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.processes import Child, beat_argv
from sync_worker.resync.runs import FINISHED, RUNNING, RunOptions, RunStore
from sync_worker.resync.settings import ResyncSettings
from sync_worker.resync.starter import resume_if_stalled, start
from tests.fixtures.platform_sandbox import served_platform
from tests.fixtures.resilience import log_events
from tests.fixtures.workers import ADMIN_TOKEN, TRIGGER_TOKEN

pytestmark = pytest.mark.integration

CONTACTS = 2000
RUN_TIMEOUT = 240
SCRIPT = Path(sys.executable).parent / "sync-worker"


@pytest.fixture
def platform_sandbox():
    """The platform sandbox serving a synthetic client for each of ``CONTACTS`` contacts."""
    with served_platform(synthetic_count=CONTACTS) as sandbox:
        yield sandbox


@pytest.fixture
def env(bulk_env) -> dict[str, str]:
    return {**bulk_env, "SYNC_HALT_PROBE_SECONDS": "1"}


@pytest.fixture
def client(env):
    redis = redis_lib.Redis.from_url(env["REDIS_URL"])
    yield redis
    redis.close()


@pytest.fixture
def beat(env, tmp_path, workers):
    """A beat process (it schedules the halt probe every second), stopped at the end."""
    child = Child(
        "beat",
        beat_argv(schedule_file=str(tmp_path / "beat-schedule")),
        env=env,
        log_path=tmp_path / "beat.log",
    ).start()
    workers.children.append(child)  # its log is shown with the workers' when a test fails
    yield child
    child.stop()


def halts(web_url: str) -> dict:
    answer = requests.get(
        f"{web_url}/v1/admin/halts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()


def trigger(web_url: str, contact_id: str | None, email: str | None) -> str:
    """Trigger a sync: the receiver's answer (``queued`` or ``folded``). Without an email the
    run's first call is Intercom's (it reads the contact), else the platform's."""
    answer = requests.post(
        f"{web_url}/v1/sync",
        json={**({"contact_id": contact_id} if contact_id else {}), **({"email": email} if email else {})},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["status"]


def operator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``sync-worker ARGS`` as an operator runs it, against the test Redis."""
    command = [str(SCRIPT), *args]
    full = {**os.environ, "REDIS_URL": env["REDIS_URL"]}
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=60)


def last_status(client: redis_lib.Redis, contact_id: str) -> str | None:
    raw = client.get(keys.last_result(keys.contact_key(contact_id, None)))
    return json.loads(raw)["status"] if raw else None


@pytest.mark.parametrize(
    ("in_flight", "walk_done"),
    [("4", False), ("100", True)],
    ids=["revoked-during-the-walk", "revoked-after-the-walk"],
)
def test_a_revoked_token_during_a_bulk_run_halts_once_and_the_run_finishes_once_restored(
    env, workers, beat, web_app, intercom_sandbox, client, in_flight, walk_done
):
    """On the old code the first case ends the run ``failed`` at the walk's 401 (225 of 2,000
    written) and the second parks every contact left (573 dead letters, one per contact)."""
    seeded = intercom_sandbox.seed(
        *({"email": f"client{i}@example.com", "name": f"Client {i}"} for i in range(CONTACTS))
    )
    env = {**env, "SYNC_RESYNC_MAX_IN_FLIGHT": in_flight}
    workers.start(concurrency=2, **env)
    run_id = start(
        client, create_celery(Settings(**env)), RunOptions(trigger="manual"), ResyncSettings(**env)
    ).run_id
    store = RunStore(client, lock_ttl_seconds=300, keep_seconds=3600)
    wait_until(
        lambda: (
            store.load(run_id).counts.get("written", 0) >= 200 and store.load(run_id).walk_done >= walk_done
        ),
        120,
        message="a few chunks written",
    )

    intercom_sandbox.config(token_revoked=True)
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    (halt,) = halts(web_app.url)["halts"]
    assert (halt["upstream"], halt["reason"], halt["code"]) == ("intercom", "auth", "intercom_auth")
    # A realtime trigger during the halt waits: neither lost nor parked.
    waiting_id, waiting_email = seeded[-1]["id"], seeded[-1]["email"]
    trigger(web_app.url, waiting_id, waiting_email)
    # The probe runs (and fails) a few times; meanwhile nothing else calls Intercom.
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 4, 60, message="four failed probes")
    held = store.load(run_id)
    assert held.status == RUNNING and held.counts.get("written", 0) < CONTACTS
    assert walk_done or not held.walk_done, "the walk ended before the revocation: slow it down"
    refused = intercom_sandbox.stats()["unauthorized"]
    probes = halts(web_app.url)["halts"][0]["probes"]
    assert refused <= probes + 1 + 8, (
        refused,
        probes,
    )  # the probes, plus the calls in flight at the revocation
    dead = DeadLetterStore(client)
    assert dead.count() <= 3
    assert last_status(client, waiting_id) is None  # waiting, not failed

    intercom_sandbox.config(token_revoked=False)
    wait_until(lambda: store.load(run_id).status != RUNNING, RUN_TIMEOUT, message="the run to end")
    record = store.load(run_id)
    assert record.status == FINISHED, record
    counts = record.counts
    # The realtime sync may write its contact before the run reaches it: then the run finds it unchanged.
    assert counts.get("unchanged", 0) <= 1
    assert counts["written"] + counts.get("unchanged", 0) + counts.get("failed", 0) == CONTACTS
    print(f"halt: {refused} Intercom calls refused for {probes} probes; dead letters {dead.count()}")
    assert dead.count() <= 3 and counts.get("failed", 0) == dead.count()
    shown = {c["id"]: c["custom_attributes"] for c in intercom_sandbox.contacts()}
    parked = {entry.contact_id for entry in dead.list(limit=10)}
    assert all(shown[c["id"]].get("Data Status") == "Live" for c in seeded if c["id"] not in parked)
    wait_until(lambda: last_status(client, waiting_id) == "synced", 60, message="the realtime sync")

    assert halts(web_app.url) == {"halts": [], "alerts": {"intercom": 1}}
    assert len(log_events(workers, "upstream_halted")) == 1
    assert len(log_events(workers, "upstream_halt_cleared")) == 1


def test_an_archived_attribute_halts_realtime_syncs_naming_it_until_unarchived(
    env, workers, beat, web_app, intercom_sandbox, client
):
    intercom_sandbox.create_attribute("Data Status")
    intercom_sandbox.archive("Data Status")
    contacts = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(3)))
    workers.start(concurrency=2, **env)
    for contact in contacts:
        trigger(web_app.url, contact["id"], contact["email"])

    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    (halt,) = halts(web_app.url)["halts"]
    assert (halt["upstream"], halt["reason"], halt["code"]) == ("intercom", "schema", "attribute_archived")
    assert "'Data Status' is archived" in halt["message"]
    shown = operator(env, "halts")
    assert shown.returncode == 1 and "intercom halted since" in shown.stdout, shown
    assert "'Data Status' is archived" in shown.stdout
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 2, 60, message="two failed probes")
    assert DeadLetterStore(client).count() == 0
    assert all(last_status(client, c["id"]) is None for c in contacts)

    intercom_sandbox.archive("Data Status", archived=False)
    for contact in contacts:
        wait_until(lambda c=contact: last_status(client, c["id"]) == "synced", 60, message="the syncs")
    assert DeadLetterStore(client).count() == 0
    assert halts(web_app.url) == {"halts": [], "alerts": {"intercom": 1}}
    assert len(log_events(workers, "upstream_halted")) == 1
    cleared = operator(env, "halts")
    assert (cleared.returncode, cleared.stdout.strip().splitlines()[-1]) == (0, "no halts")


def test_a_revoked_platform_token_halts_the_platform_and_syncs_resume_once_restored(
    env, workers, beat, web_app, intercom_sandbox, platform_sandbox, client
):
    contacts = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(3)))
    platform_sandbox.config(token_revoked=True)
    workers.start(concurrency=2, **env)
    for contact in contacts:
        trigger(web_app.url, contact["id"], contact["email"])

    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    (halt,) = halts(web_app.url)["halts"]
    assert (halt["upstream"], halt["reason"], halt["code"]) == ("platform", "auth", "platform_auth")
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 2, 60, message="two failed probes")
    assert DeadLetterStore(client).count() == 0
    assert all(last_status(client, c["id"]) is None for c in contacts)
    # Nothing was written while halted: no contact shows "No account" for a read that was refused.
    assert intercom_sandbox.stats()["calls_by_operation"].get("UpdateContact", 0) == 0

    platform_sandbox.config(token_revoked=False)
    for contact in contacts:
        wait_until(lambda c=contact: last_status(client, c["id"]) == "synced", 60, message="the syncs")
    assert DeadLetterStore(client).count() == 0
    assert halts(web_app.url) == {"halts": [], "alerts": {"platform": 1}}
    assert len(log_events(workers, "upstream_halted")) == 1


def test_an_attribute_archived_after_it_was_cached_halts_instead_of_parking(
    env, workers, beat, web_app, intercom_sandbox, client
):
    """The names are cached for an hour: a write refused for a named attribute lists them again.

    On the old code every contact synced within that hour is parked (``invalid_attribute``)."""
    first, *others = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(4)))
    workers.start(concurrency=2, **env)
    trigger(web_app.url, first["id"], first["email"])
    wait_until(lambda: last_status(client, first["id"]) == "synced", 60, message="the first sync")

    intercom_sandbox.archive("Data Status")
    for contact in others:
        trigger(web_app.url, contact["id"], contact["email"])
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    assert halts(web_app.url)["halts"][0]["code"] == "attribute_archived"
    assert DeadLetterStore(client).count() == 0

    intercom_sandbox.archive("Data Status", archived=False)
    for contact in others:
        wait_until(lambda c=contact: last_status(client, c["id"]) == "synced", 60, message="the syncs")
    assert DeadLetterStore(client).count() == 0


@pytest.mark.parametrize(
    ("knob", "reason", "code"),
    [("token_revoked", "auth", "platform_auth"), ("lookup_refused", "contract", "platform_bad_request")],
    ids=["token-refused", "batch-contract-changed"],
)
def test_a_bulk_run_holds_while_the_platform_refuses_its_batched_read(
    env, workers, beat, web_app, intercom_sandbox, platform_sandbox, client, knob, reason, code
):
    """A chunk's batched platform read answered 401, or 400 to every batch (the platform's batch
    contract changed): on the old code the run ends with all 300 parked, one per contact, for one
    platform-wide problem."""
    seeded = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(300)))
    platform_sandbox.config(**{knob: True})
    workers.start(concurrency=2, **env)
    run_id = start(
        client, create_celery(Settings(**env)), RunOptions(trigger="manual"), ResyncSettings(**env)
    ).run_id
    store = RunStore(client, lock_ttl_seconds=300, keep_seconds=3600)
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    (halt,) = halts(web_app.url)["halts"]
    assert (halt["upstream"], halt["reason"], halt["code"]) == ("platform", reason, code)
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 2, 60, message="two failed probes")
    assert store.load(run_id).status == RUNNING
    assert DeadLetterStore(client).count() == 0

    platform_sandbox.config(**{knob: False})
    wait_until(lambda: store.load(run_id).status != RUNNING, RUN_TIMEOUT, message="the run to end")
    record = store.load(run_id)
    assert (record.status, record.counts["written"], record.counts.get("failed", 0)) == (FINISHED, 300, 0)
    shown = {c["id"]: c["custom_attributes"] for c in intercom_sandbox.contacts()}
    assert all(shown[c["id"]].get("Data Status") == "Live" for c in seeded)
    assert DeadLetterStore(client).count() == 0
    assert len(log_events(workers, "upstream_halted")) == 1


def test_the_halts_route_is_for_operators_only(web_app):
    assert requests.get(f"{web_app.url}/v1/admin/halts", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert requests.get(f"{web_app.url}/v1/admin/halts", headers=wrong, timeout=10).status_code == 401
    assert halts(web_app.url) == {"halts": [], "alerts": {}}


def waits_of(workers, contact_id: str) -> list[dict]:
    """The contact's ``sync_waiting_halt`` lines."""
    return [e for e in log_events(workers, "sync_waiting_halt") if e.get("contact_id") == contact_id]


def rate_limit_waits(workers, contact_id: str) -> int:
    events = log_events(workers, "sync_rescheduled_rate_limit")
    return sum(1 for e in events if e.get("contact_id") == contact_id)


def test_triggers_during_a_halt_fold_into_the_contact_s_one_waiting_message(
    env, workers, web_app, intercom_sandbox, client
):
    """A halt may last hours. On the old code each waiting run claimed (deleted) the contact's
    pending marker before it found the halt, so every later trigger queued a new chain waking every
    ``SYNC_HALT_PROBE_SECONDS``: here 8 chains for one contact."""
    first, contact = intercom_sandbox.seed({"email": "client0@example.com"}, {"email": "client1@example.com"})
    intercom_sandbox.config(token_revoked=True)
    workers.start(concurrency=2, **env)
    trigger(web_app.url, first["id"], first["email"])
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")

    assert trigger(web_app.url, contact["id"], contact["email"]) == "queued"
    answers = []
    for round_ in range(8):  # each after one more wait of the contact's message: across its reschedules
        wait_until(lambda r=round_: len(waits_of(workers, contact["id"])) > r, 60, message="a wait")
        answers.append(trigger(web_app.url, contact["id"], contact["email"]))
    assert answers == ["folded"] * 8
    assert len({e["task_id"] for e in waits_of(workers, contact["id"])}) == 1


def test_the_time_halted_does_not_count_on_the_rate_limit_clock(
    env, workers, beat, web_app, intercom_sandbox, platform_sandbox, client
):
    """A contact rescheduled once for Intercom's 429, then halted (its retry meets the platform's
    revoked token) longer than ``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS``, meets a 429 again after the
    halt clears: on the old code its clock, started before the halt, had run out and it was parked."""
    env = {**env, "SYNC_RATE_LIMIT_MAX_WAIT_SECONDS": "6"}
    (contact,) = intercom_sandbox.seed({"email": "client1@example.com"})
    platform_sandbox.config(token_revoked=True)
    workers.start(concurrency=2, **env)
    intercom_sandbox.config(fail_next={"count": 1, "status": 429})  # the contact's first call
    trigger(web_app.url, contact["id"], None)
    wait_until(lambda: waits_of(workers, contact["id"]), 60, message="the contact waiting on the halt")
    assert rate_limit_waits(workers, contact["id"]) == 1
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 7, 60, message="a halt longer than 6 s")
    assert last_status(client, contact["id"]) is None and DeadLetterStore(client).count() == 0

    intercom_sandbox.config(fail_next={"count": 1, "status": 429})  # its first call after the halt
    platform_sandbox.config(token_revoked=False)
    wait_until(lambda: last_status(client, contact["id"]) is not None, 90, message="the contact's sync")
    assert rate_limit_waits(workers, contact["id"]) == 2
    assert last_status(client, contact["id"]) in ("synced", "no_account")
    assert DeadLetterStore(client).count() == 0


def test_a_walk_held_longer_than_the_lock_ttl_keeps_its_run_s_lock(env, workers, intercom_sandbox, client):
    """The walk's first page meets a revoked token: the walk holds for longer than the run's lock
    ttl. On the old code a held walk never refreshed the lock: the watchdog then resumed the run and
    stacked a second walk chain beside the first (one more per watchdog round)."""
    env = {**env, "SYNC_RESYNC_LOCK_TTL_SECONDS": "4", "SYNC_MAX_RESCHEDULE_SECONDS": "2"}
    intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(50)))
    intercom_sandbox.config(token_revoked=True)
    workers.start(concurrency=2, **env)
    celery, resync = create_celery(Settings(**env)), ResyncSettings(**env)
    run_id = start(client, celery, RunOptions(trigger="manual"), resync).run_id
    held = lambda: len([e for e in log_events(workers, "resync_walk_held") if e["run_id"] == run_id])  # noqa: E731
    wait_until(lambda: held() >= 8, 60, message="a walk held for twice the lock's ttl")

    assert resume_if_stalled(client, celery, resync) is None  # the watchdog's check: alive
    store = RunStore(client, lock_ttl_seconds=4, keep_seconds=3600)
    record = store.load(run_id)
    assert (record.status, record.gen) == (RUNNING, 0)
    # Resumed all the same (a new generation, as the watchdog's resume makes): the held walk of the
    # old one ends at its next look instead of going on beside the new one's.
    assert store.resume(run_id) is not None
    wait_until(lambda: log_events(workers, "resync_walk_superseded"), 30, message="the old walk to end")
    (superseded,) = log_events(workers, "resync_walk_superseded")
    assert (superseded["run_id"], superseded["gen"]) == (run_id, 0)


def test_the_time_halted_does_not_count_on_an_email_only_trigger_s_search_wait(
    env, workers, beat, web_app, intercom_sandbox, client
):
    """An email-only trigger whose contact search does not show yet searched once, then Intercom
    was halted longer than ``SYNC_CONTACT_SEARCH_WAIT_SECONDS``: on the old code its first miss after
    the halt ended it ``not_found`` (dropped) although the contact was about to show."""
    env = {**env, "SYNC_CONTACT_SEARCH_WAIT_SECONDS": "6"}
    intercom_sandbox.config(search_lag_seconds=3600)
    (contact,) = intercom_sandbox.seed({"email": "client1@example.com"})
    workers.start(concurrency=2, **env)
    trigger(web_app.url, None, contact["email"])
    wait_until(lambda: log_events(workers, "sync_search_again"), 60, message="a first miss")
    intercom_sandbox.config(token_revoked=True)
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 7, 60, message="a halt longer than 6 s")

    misses = len(log_events(workers, "sync_search_again"))
    intercom_sandbox.config(token_revoked=False)
    wait_until(lambda: len(log_events(workers, "sync_search_again")) > misses, 60, message="a miss after it")
    intercom_sandbox.config(search_lag_seconds=0)  # the contact shows now
    key = keys.last_result(keys.contact_key(None, contact["email"]))
    wait_until(lambda: client.get(key), 60, message="the sync's end")
    assert json.loads(client.get(key))["status"] == "synced"
    assert log_events(workers, "contact_not_found") == []


def test_the_time_halted_does_not_count_on_a_bulk_chunk_s_outage_hold(
    env, workers, beat, web_app, intercom_sandbox, platform_sandbox, client
):
    """Chunks held for a platform outage, then Intercom halted longer than the hold's bound
    (``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS``), the platform still down when the halt clears: on the old
    code the hold's clock had run through the halt and the chunks deferred every contact at once."""
    env = {**env, "SYNC_RATE_LIMIT_MAX_WAIT_SECONDS": "8", "SYNC_CIRCUIT_OPEN_SECONDS": "1"}
    seeded = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(50)))
    platform_sandbox.config(outage="503")
    workers.start(concurrency=2, **env)
    run_id = start(
        client, create_celery(Settings(**env)), RunOptions(trigger="manual"), ResyncSettings(**env)
    ).run_id
    held = lambda: len(log_events(workers, "resync_chunk_held"))  # noqa: E731
    wait_until(lambda: held() >= 1, 60, message="a chunk held for the outage")
    intercom_sandbox.config(token_revoked=True)
    trigger(web_app.url, seeded[0]["id"], None)  # its first call, Intercom's, halts Intercom
    wait_until(lambda: halts(web_app.url)["halts"], 60, message="the halt")
    wait_until(lambda: halts(web_app.url)["halts"][0]["probes"] >= 10, 60, message="a halt longer than 8 s")

    intercom_sandbox.config(token_revoked=False)
    wait_until(lambda: log_events(workers, "upstream_halt_cleared"), 60, message="the halt cleared")
    after = held()
    deferred = lambda: log_events(workers, "resync_chunk_deferred")  # noqa: E731
    wait_until(lambda: held() >= after + 2 or deferred(), 60, message="the chunks held for the outage again")
    assert deferred() == []
    platform_sandbox.config(outage=None)
    store = RunStore(client, lock_ttl_seconds=300, keep_seconds=3600)
    wait_until(lambda: store.load(run_id).status != RUNNING, RUN_TIMEOUT, message="the run to end")
    record = store.load(run_id)
    counts = record.counts  # the realtime sync may have written its contact first: then unchanged
    assert (record.status, counts["written"] + counts.get("unchanged", 0)) == (FINISHED, 50)
    assert counts.get("deferred", 0) == 0
