"""IntercomClient against the Intercom sandbox over real HTTP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sync_worker.devtools.localredis import free_port, wait_until
from sync_worker.errors import PermanentError, TransientError
from sync_worker.intercom import (
    ContactMerged,
    IntercomAuthError,
    IntercomBadRequest,
    IntercomClient,
    IntercomConflict,
    IntercomNotFound,
    IntercomRateLimited,
    IntercomUnavailable,
    InvalidAttribute,
    RateLimitState,
    error_for_response,
    survivor_from_link,
)

pytestmark = pytest.mark.integration

# A window long enough that a test never straddles two of them by chance.
LONG_WINDOW = 3600.0


class RecordingHooks:
    """The RequestHooks protocol, recording every call."""

    def __init__(self, refuse: bool = False):
        self.before: list[tuple[str, str]] = []
        self.after: list[tuple[str, int]] = []
        self.refuse = refuse

    def before_request(self, upstream: str, operation: str) -> None:
        self.before.append((upstream, operation))
        if self.refuse:
            raise RuntimeError("no token")

    def after_response(self, upstream: str, status: int, headers: Mapping[str, str]) -> None:
        assert "X-RateLimit-Remaining" in headers
        self.after.append((upstream, status))


@pytest.fixture
def sandbox(intercom_sandbox):
    return intercom_sandbox


@pytest.fixture
def ann(sandbox) -> dict:
    return sandbox.seed(email="ann@example.com", name="Ann Lee")[0]


# --- operations --------------------------------------------------------------------------


def test_get_contact_returns_intercom_contact(sandbox, ann):
    contact = sandbox.client().get_contact(ann["id"])
    assert contact["type"] == "contact" and contact["id"] == ann["id"]
    assert contact["email"] == "ann@example.com" and contact["name"] == "Ann Lee"
    assert contact["role"] == "user" and contact["custom_attributes"] == {}
    assert isinstance(contact["created_at"], int)


def test_search_by_email_is_case_insensitive_and_exact(sandbox, ann):
    sandbox.seed(email="annie@example.com")
    client = sandbox.client()
    found = client.search_contacts_by_email("ANN@example.com")
    assert [c["id"] for c in found] == [ann["id"]]
    assert client.search_contacts_by_email("nobody@example.com") == []


def test_new_contacts_reach_search_after_the_configured_lag(sandbox):
    sandbox.config(search_lag_seconds=3600)
    created = sandbox.seed(email="late@example.com")[0]
    client = sandbox.client()
    assert client.search_contacts_by_email("late@example.com") == []
    assert client.get_contact(created["id"])["email"] == "late@example.com"


def test_list_contacts_pages_with_a_cursor(sandbox):
    seeded = sandbox.seed(*({"email": f"c{i}@example.com"} for i in range(5)))
    client = sandbox.client()
    first = client.list_contacts(per_page=2)
    assert [c["id"] for c in first.contacts] == [seeded[0]["id"], seeded[1]["id"]]
    assert first.next_cursor
    second = client.list_contacts(per_page=2, starting_after=first.next_cursor)
    assert [c["id"] for c in second.contacts] == [seeded[2]["id"], seeded[3]["id"]]
    sandbox.merge(seeded[4]["id"], into=seeded[0]["id"])  # merged contacts leave the list
    assert [c["id"] for c in client.iter_contacts(per_page=2)] == [c["id"] for c in seeded[:4]]


def test_iter_contacts_walks_every_page(sandbox):
    seeded = sandbox.seed(*({"email": f"p{i}@example.com"} for i in range(7)))
    assert [c["id"] for c in sandbox.client().iter_contacts(per_page=3)] == [c["id"] for c in seeded]
    assert sandbox.stats()["calls_by_operation"]["ListContacts"] == 3


def test_update_contact_writes_custom_and_standard_fields(sandbox, ann):
    sandbox.create_attribute("Client ID")
    sandbox.create_attribute("Client Status")
    client = sandbox.client()
    answer = client.update_contact(
        ann["id"],
        custom_attributes={"Client ID": "131446", "Client Status": "Active"},
        standard={"name": "Ann B"},
    )
    assert answer["custom_attributes"] == {"Client ID": "131446", "Client Status": "Active"}
    stored = sandbox.contact(ann["id"])
    assert stored["name"] == "Ann B"
    assert stored["custom_attributes"] == {"Client ID": "131446", "Client Status": "Active"}
    assert sandbox.stats()["calls_by_operation"] == {"UpdateContact": 1}  # one PUT


def test_update_contact_refuses_custom_attributes_inside_standard(sandbox, ann):
    with pytest.raises(ValueError):
        sandbox.client().update_contact(ann["id"], custom_attributes={}, standard={"custom_attributes": {}})


def test_data_attributes_list_and_create(sandbox):
    client = sandbox.client()
    created = client.create_data_attribute("Client Status", description="from the platform")
    assert (
        created["name"] == "Client Status" and created["data_type"] == "string" and created["custom"] is True
    )
    listed = {a["name"]: a for a in client.list_data_attributes()}
    assert listed["Client Status"]["model"] == "contact"
    assert listed["email"]["custom"] is False


def test_data_attribute_duplicates_and_standard_names_are_refused(sandbox):
    client = sandbox.client()
    client.create_data_attribute("Client ID")
    with pytest.raises(IntercomBadRequest) as duplicate:
        client.create_data_attribute("client id")
    assert duplicate.value.status == 400 and duplicate.value.intercom_code == "parameter_invalid"
    assert "already have" in duplicate.value.message
    with pytest.raises(IntercomBadRequest):
        client.create_data_attribute("Name")


def test_every_request_the_client_sends_validates_against_the_spec(sandbox, ann):
    client = sandbox.client()
    client.create_data_attribute("Client ID")
    client.list_data_attributes()
    client.get_contact(ann["id"])
    client.search_contacts_by_email("ann@example.com")
    client.list_contacts(per_page=150)
    client.update_contact(ann["id"], custom_attributes={"Client ID": "1"}, standard={"name": "A"})
    stats = sandbox.stats()
    assert stats["validation_failures"] == 0, stats["validation_problems"]
    assert sum(stats["calls_by_operation"].values()) == 6


# --- typed errors --------------------------------------------------------------------------


def test_unknown_contact_is_not_found(sandbox):
    with pytest.raises(IntercomNotFound) as raised:
        sandbox.client().get_contact("000000000000000000000000")
    error = raised.value
    assert error.status == 404 and error.intercom_code == "not_found" and error.request_id
    assert isinstance(error, PermanentError) and not error.transient


def test_merged_contact_is_not_found_under_the_pinned_version(sandbox, ann):
    survivor = sandbox.seed(email="ann.lee@example.com")[0]
    sandbox.merge(ann["id"], into=survivor["id"])
    client = sandbox.client()  # 2.14 documents no 410: a merged contact answers as a deleted one
    for call in (
        lambda: client.get_contact(ann["id"]),
        lambda: client.update_contact(ann["id"], custom_attributes={}),
    ):
        with pytest.raises(IntercomNotFound) as raised:
            call()
        assert raised.value.status == 404
    assert sandbox.stats()["validation_failures"] == 0


def test_merged_contact_names_the_survivor_under_preview(sandbox, ann):
    survivor = sandbox.seed(email="ann.lee@example.com")[0]
    sandbox.merge(ann["id"], into=survivor["id"])
    client = sandbox.client(version="Preview")
    for call in (
        lambda: client.get_contact(ann["id"]),
        lambda: client.update_contact(ann["id"], custom_attributes={}),
    ):
        with pytest.raises(ContactMerged) as raised:
            call()
        assert raised.value.survivor_id == survivor["id"] and raised.value.status == 410
        assert not raised.value.transient


def test_unknown_custom_attribute_is_invalid_and_nothing_is_written(sandbox, ann):
    sandbox.create_attribute("Client ID")
    with pytest.raises(InvalidAttribute) as raised:
        sandbox.client().update_contact(ann["id"], custom_attributes={"Client ID": "1", "Nope": "x"})
    assert raised.value.attribute == "Nope" and raised.value.status == 400 and not raised.value.transient
    assert sandbox.contact(ann["id"])["custom_attributes"] == {}


def test_value_of_the_wrong_type_is_invalid(sandbox, ann):
    sandbox.create_attribute("Visits", data_type="integer")
    client = sandbox.client()
    with pytest.raises(InvalidAttribute) as raised:
        client.update_contact(ann["id"], custom_attributes={"Visits": "three"})
    assert raised.value.attribute == "Visits"
    client.update_contact(ann["id"], custom_attributes={"Visits": 3})
    assert sandbox.contact(ann["id"])["custom_attributes"] == {"Visits": 3}


def test_string_longer_than_255_is_refused(sandbox, ann):
    sandbox.create_attribute("Remarks")
    with pytest.raises(InvalidAttribute):
        sandbox.client().update_contact(ann["id"], custom_attributes={"Remarks": "x" * 256})
    sandbox.client().update_contact(ann["id"], custom_attributes={"Remarks": "x" * 255})


def test_wrong_token_is_an_auth_error(sandbox, ann):
    hooks = RecordingHooks()
    with pytest.raises(IntercomAuthError) as raised:
        sandbox.client(token="wrong", hooks=hooks).get_contact(ann["id"])
    assert raised.value.status == 401 and raised.value.intercom_code == "unauthorized"
    assert not raised.value.transient and len(hooks.before) == 1
    assert sandbox.stats()["unauthorized"] == 1


def test_forbidden_is_an_auth_error(sandbox, ann):
    sandbox.config(fail_next={"count": 1, "status": 403})
    with pytest.raises(IntercomAuthError) as raised:
        sandbox.client().get_contact(ann["id"])
    assert raised.value.status == 403


def test_version_header_is_sent_and_checked(sandbox, ann):
    with pytest.raises(IntercomBadRequest) as raised:
        sandbox.client(version="9.9").get_contact(ann["id"])
    assert raised.value.intercom_code == "parameter_invalid" and "Intercom-Version" in raised.value.message
    stats = sandbox.stats()
    assert stats["validation_failures"] == 1
    assert sandbox.client(version="2.13").get_contact(ann["id"])["id"] == ann["id"]


def test_rate_limited_call_raises_at_once_with_the_reset(sandbox, ann):
    sandbox.config(rate_limit=2, window_seconds=LONG_WINDOW)
    hooks = RecordingHooks()
    client = sandbox.client(hooks=hooks)
    client.get_contact(ann["id"])
    client.get_contact(ann["id"])
    before = time.time()
    with pytest.raises(IntercomRateLimited) as raised:
        client.get_contact(ann["id"])
    error = raised.value
    assert error.status == 429 and error.intercom_code == "rate_limit_exceeded"
    assert isinstance(error, TransientError) and error.transient
    assert error.reset_at == math.ceil((math.floor(before / LONG_WINDOW) + 1) * LONG_WINDOW)
    assert 0 < error.retry_after <= LONG_WINDOW
    assert len(hooks.before) == 3 and hooks.after[-1] == ("intercom", 429)  # not retried in the call


def test_the_window_limit_is_enforced(sandbox, ann):
    limit = 5
    sandbox.config(rate_limit=limit, window_seconds=LONG_WINDOW)
    client = sandbox.client()
    for _ in range(limit):
        client.get_contact(ann["id"])
    with pytest.raises(IntercomRateLimited):
        client.get_contact(ann["id"])
    with pytest.raises(IntercomRateLimited):
        client.search_contacts_by_email("ann@example.com")
    stats = sandbox.stats()
    assert stats["max_admitted_in_window"] == limit and stats["max_received_in_window"] == limit + 2
    assert stats["rate_limited"] == 2 and stats["windows_over_limit"] == 0


def test_each_window_reports_what_it_admitted_and_refused(sandbox, ann):
    limit = 3
    sandbox.config(rate_limit=limit, window_seconds=LONG_WINDOW)
    client = sandbox.client(max_attempts=1)
    for _ in range(limit):
        client.get_contact(ann["id"])
    for _ in range(2):
        with pytest.raises(IntercomRateLimited):
            client.get_contact(ann["id"])
    with pytest.raises(IntercomAuthError):
        sandbox.client(token="wrong", max_attempts=1).get_contact(ann["id"])
    [window] = sandbox.stats()["windows"]
    assert window["limit"] == limit and window["end"] - window["start"] == LONG_WINDOW
    # The unauthorized request arrived in the window but was neither admitted nor refused for the limit.
    assert (window["received"], window["admitted"], window["refused"]) == (limit + 3, limit, 2)


def test_concurrent_callers_never_get_more_than_the_limit(sandbox, ann):
    sandbox.config(rate_limit=20, window_seconds=LONG_WINDOW)

    def burst(_: int) -> list[str]:
        client = sandbox.client(max_attempts=1)
        outcomes = []
        for _ in range(10):
            try:
                client.get_contact(ann["id"])
                outcomes.append("ok")
            except IntercomRateLimited:
                outcomes.append("429")
        return outcomes

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [o for batch in pool.map(burst, range(8)) for o in batch]
    assert outcomes.count("ok") == 20 and outcomes.count("429") == 60
    stats = sandbox.stats()
    assert stats["max_admitted_in_window"] == 20 and stats["received_total"] == 80
    assert stats["windows_over_limit"] == 0


def test_a_new_window_admits_again(sandbox, ann):
    sandbox.config(rate_limit=1, window_seconds=0.2)
    client = sandbox.client()

    def admitted() -> bool:
        try:
            client.get_contact(ann["id"])
        except IntercomRateLimited:
            return False
        return True

    assert admitted()
    wait_until(admitted, timeout=5, interval=0.02, message="the next window")
    stats = sandbox.stats()
    assert stats["max_admitted_in_window"] == 1 and len(stats["windows"]) >= 2


def test_rate_limit_headers_are_parsed(sandbox, ann):
    sandbox.config(rate_limit=10, window_seconds=LONG_WINDOW)
    client = sandbox.client()
    assert client.last_rate_limit is None
    client.get_contact(ann["id"])
    first = client.last_rate_limit
    assert first is not None and first.limit == 10 and first.remaining == 9
    assert first.reset_at is not None and first.reset_at % LONG_WINDOW == 0 and first.reset_at > time.time()
    client.get_contact(ann["id"])
    assert client.last_rate_limit.remaining == 8


def test_injected_503_is_retried_then_succeeds(sandbox, ann):
    sandbox.config(fail_next={"count": 2, "status": 503})
    hooks = RecordingHooks()
    contact = sandbox.client(hooks=hooks, backoff_base=0.01).get_contact(ann["id"])
    assert contact["id"] == ann["id"]
    assert hooks.before == [("intercom", "get_contact")] * 3
    assert hooks.after == [("intercom", 503), ("intercom", 503), ("intercom", 200)]
    assert sandbox.stats()["injected_failures"] == 2


def test_persistent_5xx_is_unavailable_after_the_last_attempt(sandbox, ann):
    sandbox.config(fail_next={"count": 10, "status": 500})
    hooks = RecordingHooks()
    with pytest.raises(IntercomUnavailable) as raised:
        sandbox.client(hooks=hooks, backoff_base=0.01).update_contact(ann["id"], custom_attributes={})
    assert raised.value.status == 500 and raised.value.transient
    assert len(hooks.before) == 3 and len(hooks.after) == 3
    assert sandbox.config()["fail_next"]["count"] == 7


@pytest.mark.parametrize("status", [408, 409])
def test_request_timeout_and_conflict_are_transient_and_retried(sandbox, ann, status):
    sandbox.config(fail_next={"count": 1, "status": status})
    hooks = RecordingHooks()
    sandbox.client(hooks=hooks, backoff_base=0.01).get_contact(ann["id"])
    assert [s for _, s in hooks.after] == [status, 200]
    sandbox.config(fail_next={"count": 5, "status": status})
    with pytest.raises(IntercomConflict) as raised:
        sandbox.client(max_attempts=1).get_contact(ann["id"])
    assert raised.value.transient and raised.value.status == status


def test_timeout_is_unavailable(sandbox, ann):
    sandbox.config(delay_ms=400)
    hooks = RecordingHooks()
    started = time.monotonic()
    with pytest.raises(IntercomUnavailable) as raised:
        sandbox.client(hooks=hooks, timeout=0.1, backoff_base=0.01).get_contact(ann["id"])
    assert raised.value.code == "intercom_timeout" and raised.value.status is None
    assert len(hooks.before) == 3 and hooks.after == []
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_unavailable():
    client = IntercomClient(f"http://127.0.0.1:{free_port()}", "t", backoff_base=0.01, timeout=1)
    with pytest.raises(IntercomUnavailable):
        client.get_contact("abc")


def test_hooks_can_refuse_a_call_before_it_is_sent(sandbox, ann):
    with pytest.raises(RuntimeError, match="no token"):
        sandbox.client(hooks=RecordingHooks(refuse=True)).get_contact(ann["id"])
    assert sandbox.stats()["received_total"] == 0


# --- the sandbox on its own -------------------------------------------------------------------


def test_sandbox_control_routes(sandbox, ann):
    assert sandbox.config(rate_limit=7)["rate_limit"] == 7
    response = requests.put(f"{sandbox.url}/_sandbox/config", json={"nonsense": 1}, timeout=5)
    assert response.status_code == 400
    sandbox.reset()
    assert sandbox.config()["rate_limit"] != 7
    assert requests.get(f"{sandbox.url}/_sandbox/contacts/{ann['id']}", timeout=5).status_code == 404


def test_sandbox_refuses_what_the_spec_refuses(sandbox, ann):
    headers = {"Authorization": f"Bearer {sandbox.token}", "Intercom-Version": "2.14"}
    response = requests.put(
        f"{sandbox.url}/contacts/{ann['id']}", json={"name": 5}, headers=headers, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "parameter_invalid", "message": "body name: 5 is not of type 'string'"}
    ]
    assert response.headers["X-RateLimit-Limit"]
    response = requests.get(f"{sandbox.url}/admins", headers=headers, timeout=5)  # in the spec, not sandboxed
    assert response.status_code == 501 and response.json()["errors"][0]["code"] == "not_implemented"
    response = requests.get(f"{sandbox.url}/no/such/thing", headers=headers, timeout=5)
    assert response.status_code == 404 and response.json()["type"] == "error.list"
    stats = sandbox.stats()
    assert stats["validation_failures"] == 2 and stats["calls_by_operation"]["UpdateContact"] == 1


def test_error_helpers_without_the_usual_headers():
    assert survivor_from_link('<https://api.intercom.io/contacts/abc123>; rel="canonical"') == "abc123"
    assert survivor_from_link("<https://api.intercom.io/companies/1>; rel=x") is None
    assert RateLimitState.from_headers({"Content-Type": "application/json"}) is None
    assert RateLimitState.from_headers({"x-ratelimit-remaining": "4"}) == RateLimitState(None, 4, None)
    gone = error_for_response(
        410, {}, {"errors": [{"code": "contact_merged"}]}, operation="get_contact", now=0
    )
    assert isinstance(gone, IntercomNotFound)  # merged, but no Link to follow
    limited = error_for_response(429, {}, None, operation="get_contact", now=100.0)
    assert isinstance(limited, IntercomRateLimited) and limited.retry_after == 10.0
    odd = error_for_response(418, {}, "teapot", operation="get_contact", now=0)
    assert isinstance(odd, IntercomBadRequest) and odd.intercom_code is None


def test_sandbox_runs_standalone(tmp_path):
    contacts = tmp_path / "contacts.json"
    contacts.write_text(json.dumps([{"email": "solo@example.com", "name": "Solo", "id": "solo-1"}]))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_worker.devtools.sandbox.intercom", "--port", str(port), "--token", "T",
         "--contacts", str(contacts)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/_sandbox/stats", timeout=1).ok, timeout=30, message="sandbox")
        assert IntercomClient(url, "T").get_contact("solo-1")["email"] == "solo@example.com"
    finally:
        process.terminate()
        process.wait(timeout=10)
