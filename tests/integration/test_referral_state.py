"""The referral-leads records on a real Redis: one run at a time reports a referral, and the
record that it was reported outlives every claim."""

from __future__ import annotations

import redis as redis_lib

from sync_worker.integrations.referral_leads.state import ReferralState


def test_one_claim_at_a_time_and_reported_for_good(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    state = ReferralState(client)
    assert state.claim_qualification(5002, "run-a", ttl=60) == "claimed"
    assert state.claim_qualification(5002, "run-b", ttl=60) == "busy"
    state.release_qualification(5002, "run-b")  # not its claim: nothing let go
    assert state.claim_qualification(5002, "run-c", ttl=60) == "busy"
    state.release_qualification(5002, "run-a")  # its report failed: the next run may try
    assert state.claim_qualification(5002, "run-b", ttl=60) == "claimed"
    state.mark_reported(5002, by="us")
    assert state.claim_qualification(5002, "run-d", ttl=60) == "reported"
    assert state.load(5002).reported and not client.exists("intercom-sync:referral-qualifying:5002")
    assert client.ttl("intercom-sync:referral:5002") == -1  # the record has no expiry


def test_a_claim_of_a_run_that_died_expires(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    state = ReferralState(client)
    assert state.claim_qualification(7, "dead-run", ttl=1) == "claimed"
    assert 0 < client.ttl("intercom-sync:referral-qualifying:7") <= 1


def test_the_pairing_and_the_email_index(redis_url):
    state = ReferralState(redis_lib.Redis.from_url(redis_url))
    state.mark_skipped(9, "type_not_sent")
    assert state.load(9).handled and state.load(9).skipped == "type_not_sent"
    state.pair(9, "c9", " Sam@Example.com", shown="f1", seen="lead", set_seen=True)
    record = state.load(9)
    assert (record.contact_id, record.email, record.seen, record.shown, record.skipped) == (
        "c9",
        "sam@example.com",
        "lead",
        "f1",
        None,
    )
    assert state.referral_for_email("sam@example.com") == "9"
    state.pair(9, "c10", "sam@example.com", shown="f2")  # re-paired: the value last seen is kept
    assert state.load(9).seen == "lead" and state.load(9).contact_id == "c10"
    state.forget_contact(9)
    assert state.load(9).contact_id is None and state.load(9).seen == "lead"
