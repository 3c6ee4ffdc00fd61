"""`ContactSync` in-process, wired by the real composition root to the test Redis and both sandboxes.

These cover the steps of one run that the end-to-end tests do not single out:
screening before any call, data attributes created once, a type clash, a
merged contact, the staleness path with and without last known values (and a
fresh sync that finds the platform still down), and "write only what changed".
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sync_worker.circuit import HALF_OPEN, CircuitBreaker
from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from sync_worker.dispatch import SyncRequest
from sync_worker.ratelimit import RateLimitWait
from sync_worker.runtime import Runtime
from sync_worker.schema import AttributeTypeClash

OLIVIA = "olivia.brandt@example.com"


@pytest.fixture
def runtime(service_env) -> Runtime:
    runtime = Runtime(Settings(**{**service_env, "SYNC_EXCLUDED_EMAILS": "support@example.com"}))
    yield runtime
    runtime.redis.close()


@pytest.fixture
def olivia(intercom_sandbox) -> str:
    return intercom_sandbox.seed({"email": OLIVIA, "name": "Olivia Brandt"})[0]["id"]


def _calls(sandbox, operation: str) -> int:
    return sandbox.stats()["calls_by_operation"].get(operation, 0)


def test_excluded_and_invalid_addresses_are_skipped_before_any_call(
    runtime, intercom_sandbox, platform_sandbox
):
    excluded = runtime.pipeline("clients").run(SyncRequest(email="Support@Example.com "))
    invalid = runtime.pipeline("clients").run(SyncRequest(email="not-an-email"))
    by_reply_to = runtime.pipeline("clients").run(SyncRequest(email=OLIVIA, reply_to="support@example.com"))
    assert [o.status for o in excluded + invalid + by_reply_to] == ["skipped"] * 3
    assert invalid[0].reason == "Invalid email address: not-an-email"
    assert intercom_sandbox.stats()["received_total"] == 0
    assert sum(platform_sandbox.stats().get("calls", {}).values()) == 0


def test_data_attributes_are_created_once_for_every_worker(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    created = _calls(intercom_sandbox, "createDataAttribute")
    assert created == 21  # every custom attribute of the profile (Name is the standard field)
    second = Runtime(runtime.settings)  # another worker process: same Redis, empty memory
    second.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    assert _calls(intercom_sandbox, "createDataAttribute") == created
    assert _calls(intercom_sandbox, "UpdateContact") == 2


def test_an_attribute_of_another_type_is_a_clear_permanent_error(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    intercom_sandbox.create_attribute("Number of Sessions", data_type="integer")
    with pytest.raises(AttributeTypeClash) as raised:
        runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    assert "Number of Sessions" in str(raised.value)
    assert raised.value.transient is False
    assert _calls(intercom_sandbox, "UpdateContact") == 0


@pytest.mark.parametrize("version", ["2.14", "Preview"])  # a 404 and a search; a 410 and its Link
def test_a_merged_contact_is_written_on_the_survivor(
    service_env, intercom_sandbox, platform_sandbox, version
):
    runtime = Runtime(Settings(**{**service_env, "INTERCOM_API_VERSION": version}))
    old, survivor = intercom_sandbox.seed({"email": OLIVIA}, {"email": OLIVIA.upper()})
    intercom_sandbox.merge(old["id"], into=survivor["id"])
    [outcome] = runtime.pipeline("clients").run(SyncRequest(contact_id=old["id"], email=OLIVIA))
    runtime.redis.close()
    assert (outcome.status, outcome.contact_id) == ("synced", survivor["id"])
    assert intercom_sandbox.contact(survivor["id"])["custom_attributes"]["Client ID"] == "131451"
    searched = _calls(intercom_sandbox, "SearchContacts")
    assert searched == (1 if version == "2.14" else 0)
    assert intercom_sandbox.stats()["validation_failures"] == 0


def test_a_contact_merged_into_one_with_another_email_is_gone(runtime, intercom_sandbox, platform_sandbox):
    old, survivor = intercom_sandbox.seed({"email": OLIVIA}, {"email": "someone.else@example.com"})
    intercom_sandbox.merge(old["id"], into=survivor["id"])
    [outcome] = runtime.pipeline("clients").run(SyncRequest(contact_id=old["id"], email=OLIVIA))
    assert (outcome.status, outcome.contact_id) == ("gone", old["id"])
    assert intercom_sandbox.contact(survivor["id"])["custom_attributes"] == {}


def test_platform_down_shows_last_known_values_flagged_stale(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    [live] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    before = intercom_sandbox.contact(olivia)["custom_attributes"]
    platform_sandbox.config(outage="503")
    [stale] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    after = intercom_sandbox.contact(olivia)["custom_attributes"]
    assert (live.status, stale.status) == ("synced", "stale")
    assert after["Data Status"].startswith("Stale - platform unavailable since ")
    assert after["Platform Account Exists"] == "Yes"
    assert after["User Data Updated On"] == before["User Data Updated On"]
    assert {k: v for k, v in after.items() if k != "Data Status"} == {
        k: v for k, v in before.items() if k != "Data Status"
    }
    platform_sandbox.config(outage=None)
    runtime.circuit.record_success()  # the circuit may have opened; a probe would close it the same way
    [fresh] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA, force_write=False))
    assert fresh.status == "synced"  # stale was shown, so the same live values are written again
    assert intercom_sandbox.contact(olivia)["custom_attributes"]["Data Status"] == "Live"


def test_a_fresh_sync_finding_the_platform_still_down_rewrites_nothing(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    platform_sandbox.config(outage="503")
    runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))  # writes the stale values
    shown = intercom_sandbox.contact(olivia)["custom_attributes"]
    [again] = runtime.pipeline("clients").run(
        SyncRequest(contact_id=olivia, email=OLIVIA, trigger="stale_refresh", force_write=False)
    )
    assert (again.status, again.written) == ("stale", False)
    assert _calls(intercom_sandbox, "UpdateContact") == 2
    assert intercom_sandbox.contact(olivia)["custom_attributes"] == shown
    [forced] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    assert (forced.status, forced.written) == ("stale", True)  # a trigger still writes them


def test_platform_down_with_nothing_known_writes_only_the_status(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    platform_sandbox.config(outage="503")
    [outcome] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    attributes = intercom_sandbox.contact(olivia)["custom_attributes"]
    assert outcome.status == "stale"
    assert list(attributes) == ["Data Status"]
    assert attributes["Data Status"].startswith("Stale - platform unavailable since ")


def test_unchanged_values_cost_no_write_unless_forced(runtime, intercom_sandbox, platform_sandbox, olivia):
    runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    [unchanged] = runtime.pipeline("clients").run(
        SyncRequest(contact_id=olivia, email=OLIVIA, force_write=False)
    )
    [forced] = runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA, force_write=True))
    assert (unchanged.status, forced.status) == ("unchanged", "synced")
    assert _calls(intercom_sandbox, "UpdateContact") == 2


def test_a_probe_that_got_no_platform_token_frees_the_probe_at_once(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    """A worker holding the half-open probe that cannot send its read (no rate-limit token) learnt
    nothing: the next caller probes at once, not after the probe timeout (60 s here)."""
    circuit = CircuitBreaker(
        runtime.redis, "platform", failure_threshold=1, open_seconds=0.1, probe_timeout_seconds=60
    )
    runtime.circuit = circuit  # the composition root's breaker, with a long probe timeout
    circuit.record_failure()
    wait_until(lambda: circuit.state().state == HALF_OPEN, 5, interval=0.02, message="half-open")
    runtime.limiters["platform"].pause_for(30)  # as after the platform's 429

    with pytest.raises(RateLimitWait):
        runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))

    assert platform_sandbox.stats()["total_calls"] == 0
    probe = circuit.admit()
    assert probe is not None and probe.probe is not None  # released: the next probe goes now
    assert circuit.state().failures == 1  # and nothing else changed: the same outage


def test_only_changed_writes_a_contact_again_when_its_attributes_are_renamed_or_its_profile_changes(
    runtime, intercom_sandbox, platform_sandbox, olivia
):
    """Issue 12 item 9: the fingerprint covers what is written (Intercom names, the profile's
    version), not the values by key: on the old code the renamed run found the contact unchanged."""
    only_changed = SyncRequest(contact_id=olivia, email=OLIVIA, force_write=False)
    runtime.pipeline("clients").run(SyncRequest(contact_id=olivia, email=OLIVIA))
    [same] = runtime.pipeline("clients").run(only_changed)
    assert same.status == "unchanged"

    renamed = Runtime(runtime.settings.model_copy(update={"attribute_names": {"sessions": "Sessions Count"}}))
    try:
        [moved] = renamed.pipeline("clients").run(only_changed)
        assert (moved.status, moved.written) == ("synced", True)
        shown = intercom_sandbox.contact(olivia)["custom_attributes"]
        assert shown["Sessions Count"] == shown["Number of Sessions"] == "2"
        [again] = renamed.pipeline("clients").run(only_changed)
        assert again.status == "unchanged"  # the new names are what the contact shows now
    finally:
        renamed.redis.close()

    class NextVersion(type(runtime.pipeline("clients").profile)):
        version = "next"

    bumped = replace(runtime.pipeline("clients"), profile=NextVersion(runtime.settings.display_timezone))
    writes = _calls(intercom_sandbox, "UpdateContact")
    [rewritten] = bumped.run(only_changed)
    assert rewritten.status == "synced"
    assert _calls(intercom_sandbox, "UpdateContact") == writes + 1
