"""`DealerUserSync` in-process, wired by the real composition root to the test Redis and both sandboxes.

The expected values are written out by hand from the platform sandbox's sample users
(``sync_worker/devtools/sandbox/dealer_users_dataset.py``) and the rules of
``docs/integrations/dealer_users.md``, not computed by our own code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sync_worker.config import Settings
from sync_worker.devtools.sandbox.dealer_users_dataset import (
    EMAIL_CHANGE,
    GONE_USER_ID,
    LOCATION_MOVE,
    over_cap_user,
)
from sync_worker.dispatch import SyncRequest
from sync_worker.haltprobe import probe_intercom, probe_platform
from sync_worker.platform import PlatformAuthError, PlatformUnavailable
from sync_worker.runtime import Runtime

pytestmark = pytest.mark.integration

DANA = "dana@dealer.example"  # user123, the seed's example
DANA_ATTRIBUTES = {
    "Source": "Billing Center Dealer App",
    "User_roles": "Company Billing Admin, Location Sales Admin",
    "User_companies": "Company A, Company B",
}


@pytest.fixture
def runtime(service_env) -> Runtime:
    runtime = Runtime(Settings(**{**service_env, "SYNC_INTEGRATIONS": "clients,dealer_users"}))
    yield runtime
    runtime.redis.close()


def _sync(runtime: Runtime, user_id: str, **fields) -> str:
    fields.setdefault("force_write", False)
    request = SyncRequest(source_id=user_id, integration="dealer_users", trigger="manual", **fields)
    (outcome,) = runtime.pipeline("dealer_users").run(request)
    return outcome


def _users_contacts(intercom_sandbox, user_id: str) -> list[dict]:
    return [c for c in intercom_sandbox.contacts() if c.get("external_id") == user_id]


def _company_ids(intercom_sandbox, contact_id: str) -> list[str]:
    return [company["company_id"] for company in intercom_sandbox.contact_companies(contact_id)]


def _calls(intercom_sandbox) -> int:
    return intercom_sandbox.stats()["received_total"]


def test_a_new_user_is_a_user_contact_with_the_seed_attributes_and_its_location_companies(
    runtime, intercom_sandbox, platform_sandbox
):
    outcome = _sync(runtime, "user123")
    assert outcome.status == "synced" and outcome.written
    (contact,) = _users_contacts(intercom_sandbox, "user123")
    assert contact["id"] == outcome.contact_id
    assert contact["role"] == "user"
    assert contact["email"] == DANA and contact["name"] == "Dana Whitfield"
    assert contact["custom_attributes"] == DANA_ATTRIBUTES
    assert _company_ids(intercom_sandbox, contact["id"]) == ["location_id_1", "location_id_3"]
    companies = {c["company_id"]: c for c in intercom_sandbox.companies()}
    assert companies["location_id_1"]["name"] == "Location 1"
    assert companies["location_id_1"]["custom_attributes"] == {"Dealer Company": "Company A"}
    assert companies["location_id_3"]["custom_attributes"] == {"Dealer Company": "Company B"}
    assert intercom_sandbox.stats()["calls_by_operation"] == {
        "lisDataAttributes": 2,  # contacts' and companies', once each
        "createDataAttribute": 4,  # Source, User_roles, User_companies; Dealer Company
        "SearchContacts": 1,  # its external id or its email, in one search
        "CreateContact": 1,  # every value in the create: no PUT after it
        "createOrUpdateCompany": 2,
        "attachContactToACompany": 2,  # no listing of a contact created now
    }


def test_a_second_sync_with_no_change_makes_no_intercom_call(runtime, intercom_sandbox, platform_sandbox):
    assert _sync(runtime, "user123").status == "synced"
    before = _calls(intercom_sandbox)
    again = _sync(runtime, "user123")
    assert again.status == "unchanged" and not again.written
    assert _calls(intercom_sandbox) == before
    other_worker = Runtime(runtime.settings)  # another process: same Redis, empty memory
    assert (
        other_worker.pipeline("dealer_users")
        .run(SyncRequest(source_id="user123", integration="dealer_users", force_write=False))[0]
        .status
        == "unchanged"
    )
    assert _calls(intercom_sandbox) == before


def test_a_preview_says_what_a_sync_would_do_with_no_call_and_nothing_stored(
    runtime, intercom_sandbox, platform_sandbox
):
    pipeline = runtime.pipeline("dealer_users")
    request = SyncRequest(
        source_id="user123", integration="dealer_users", trigger="schedule", force_write=False
    )
    user = platform_sandbox.client().user("user123")
    assert pipeline.preview(user, request).status == "synced"  # never written
    assert pipeline.preview(None, request).status == "no_account"
    assert _calls(intercom_sandbox) == 0
    assert pipeline.apply(user, request).status == "synced"
    before = _calls(intercom_sandbox)
    assert pipeline.preview(user, request).status == "unchanged"
    moved = {**user, "locations": user["locations"][:1]}
    assert pipeline.preview(moved, request).written
    assert pipeline.preview({**user, "last_name": "Whitfield-Ng"}, request).written
    assert _calls(intercom_sandbox) == before
    assert pipeline.apply(user, request).status == "unchanged"  # the previews stored nothing


def test_a_messenger_made_contact_with_the_same_email_is_adopted_not_duplicated(
    runtime, intercom_sandbox, platform_sandbox
):
    (messenger,) = intercom_sandbox.seed({"email": DANA, "role": "user"})
    outcome = _sync(runtime, "user123")
    assert outcome.contact_id == messenger["id"]
    users = [c for c in intercom_sandbox.contacts() if c.get("role") == "user"]
    assert [c["id"] for c in users] == [messenger["id"]]
    assert users[0]["external_id"] == "user123"
    assert users[0]["custom_attributes"] == DANA_ATTRIBUTES
    assert "CreateContact" not in intercom_sandbox.stats()["succeeded_by_operation"]


def test_a_lead_with_the_same_email_is_not_adopted(runtime, intercom_sandbox, platform_sandbox):
    (lead,) = intercom_sandbox.seed({"email": DANA, "role": "lead"})
    outcome = _sync(runtime, "user123")
    assert outcome.contact_id != lead["id"]
    assert intercom_sandbox.contact(lead["id"]).get("external_id") is None


def test_a_409_continues_with_the_existing_contact(runtime, intercom_sandbox, platform_sandbox):
    intercom_sandbox.config(search_lag_seconds=600)  # the Messenger's contact is not searchable yet
    (messenger,) = intercom_sandbox.seed({"email": DANA, "role": "user"})
    outcome = _sync(runtime, "user123")
    assert outcome.status == "synced" and outcome.contact_id == messenger["id"]
    stats = intercom_sandbox.stats()
    assert stats["responses_by_status"].get("409") == 1
    assert [c["id"] for c in intercom_sandbox.contacts()] == [messenger["id"]]
    assert intercom_sandbox.contact(messenger["id"])["custom_attributes"] == DANA_ATTRIBUTES


def test_an_archived_contact_named_by_a_409_is_unarchived_and_written(
    runtime, intercom_sandbox, platform_sandbox
):
    (archived,) = intercom_sandbox.seed({"email": DANA, "role": "user", "archived": True})
    outcome = _sync(runtime, "user123")
    assert outcome.contact_id == archived["id"]
    contact = intercom_sandbox.contact(archived["id"])
    assert not contact.get("archived") and contact["external_id"] == "user123"
    assert contact["custom_attributes"] == DANA_ATTRIBUTES


def test_a_contact_that_belongs_to_another_user_is_a_permanent_conflict(
    runtime, intercom_sandbox, platform_sandbox
):
    intercom_sandbox.config(search_lag_seconds=600)
    intercom_sandbox.seed({"email": DANA, "role": "user", "external_id": "someone-else"})
    with pytest.raises(Exception) as refused:
        _sync(runtime, "user123")
    assert getattr(refused.value, "code", None) == "contact_conflict"
    assert not refused.value.transient


def test_concurrent_syncs_of_one_user_make_one_contact(runtime, intercom_sandbox, platform_sandbox):
    intercom_sandbox.config(search_lag_seconds=600)  # nothing we create is searchable
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: _sync(Runtime(runtime.settings), "user123"), range(4)))
    assert len({o.contact_id for o in outcomes}) == 1
    assert len(intercom_sandbox.contacts()) == 1


def test_an_email_change_updates_the_same_contact(runtime, intercom_sandbox, platform_sandbox):
    user_id, change = EMAIL_CHANGE
    first = _sync(runtime, user_id)
    platform_sandbox.patch_user(user_id, **change)
    second = _sync(runtime, user_id)
    assert second.status == "synced" and second.contact_id == first.contact_id
    (contact,) = _users_contacts(intercom_sandbox, user_id)
    assert contact["email"] == "lee.new@dealer.example"
    assert len(intercom_sandbox.contacts()) == 1


def test_a_location_added_and_one_removed_attach_and_detach_while_someone_elses_stays(
    runtime, intercom_sandbox, platform_sandbox
):
    (loses, _), (gains, _) = LOCATION_MOVE
    before = {user_id: _sync(runtime, user_id).contact_id for user_id in (loses, gains)}
    assert "loc_ls_south" in _company_ids(intercom_sandbox, before[loses])
    assert "loc_ls_south" not in _company_ids(intercom_sandbox, before[gains])
    intercom_sandbox.seed_companies({"company_id": "crm_account_9", "name": "CRM account"})
    intercom_sandbox.attach(before[loses], "crm_account_9")  # an agent's, not ours
    for user_id, changes in LOCATION_MOVE:
        platform_sandbox.patch_user(user_id, **changes)
        assert _sync(runtime, user_id).status == "synced"
    assert _company_ids(intercom_sandbox, before[loses]) == ["location_id_1", "crm_account_9"]
    assert _company_ids(intercom_sandbox, before[gains])[-1] == "loc_ls_south"
    moved = next(c for c in intercom_sandbox.companies() if c["company_id"] == "loc_ls_south")
    assert moved["writes"] == 1  # the location itself did not change: it is not written again


def test_a_location_company_shared_by_many_users_is_written_once(runtime, intercom_sandbox, platform_sandbox):
    sharing = [u["user_id"] for u in platform_sandbox.users()["users"]
               if any(loc["id"] == "location_id_1" for loc in u["locations"])]  # fmt: skip
    assert len(sharing) >= 5
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda user_id: _sync(Runtime(runtime.settings), user_id), sharing))
    shared = next(c for c in intercom_sandbox.companies() if c["company_id"] == "location_id_1")
    assert shared["writes"] == 1
    assert shared["user_count"] == len(sharing)


def test_a_concurrent_company_create_is_read_back_not_failed(runtime, intercom_sandbox, platform_sandbox):
    intercom_sandbox.race_company("location_id_1", name="Location 1")
    outcome = _sync(runtime, "user123")
    assert outcome.status == "synced"
    assert "location_id_1" in _company_ids(intercom_sandbox, outcome.contact_id)
    shared = next(c for c in intercom_sandbox.companies() if c["company_id"] == "location_id_1")
    assert shared["custom_attributes"] == {"Dealer Company": "Company A"}  # ours written over the race's


def test_a_user_the_platform_does_not_have_is_no_account_and_nothing_is_written(
    runtime, intercom_sandbox, platform_sandbox
):
    outcome = _sync(runtime, GONE_USER_ID)
    assert outcome.status == "no_account" and not outcome.written
    assert _calls(intercom_sandbox) == 0
    assert intercom_sandbox.contacts() == []


def test_a_failed_platform_read_is_transient_and_writes_nothing(runtime, intercom_sandbox, platform_sandbox):
    platform_sandbox.config(outage="503")
    with pytest.raises(PlatformUnavailable) as failed:
        _sync(runtime, "user123")
    assert failed.value.transient
    assert _calls(intercom_sandbox) == 0


def test_more_locations_than_intercom_allows_is_permanent_before_any_write(
    runtime, intercom_sandbox, platform_sandbox
):
    platform_sandbox.add_users(over_cap_user())
    with pytest.raises(Exception) as refused:
        _sync(runtime, "user140")
    assert refused.value.code == "company_limit_reached" and "1,000" in refused.value.message
    assert _calls(intercom_sandbox) == 0


def test_the_halt_probe_ensures_the_dealer_users_attributes_contacts_and_companies(
    runtime, intercom_sandbox, platform_sandbox
):
    probe_intercom(runtime)
    listed = intercom_sandbox.client().list_data_attributes(model="company")
    assert "Dealer Company" in {a["name"] for a in listed if a.get("custom", True)}
    contact_names = {a["name"] for a in intercom_sandbox.client().list_data_attributes(model="contact")}
    assert {"Source", "User_roles", "User_companies", "Client ID"} <= contact_names


@pytest.mark.parametrize(
    ("integrations", "routes"),
    [
        ("dealer_users", {"GET /v1/users/{user_id}": 1, "POST /v1/users/lookup": 1}),
        (
            "clients,dealer_users",
            {
                "GET /v1/clients": 1,
                "POST /v1/clients/lookup": 1,
                "GET /v1/users/{user_id}": 1,
                "POST /v1/users/lookup": 1,
            },
        ),
    ],
)
def test_the_platforms_halt_probe_reads_what_the_running_integrations_read(
    service_env, platform_sandbox, integrations, routes
):
    """A halt about the users routes is cleared by reading them, not the clients' routes."""
    probing = Runtime(Settings(**{**service_env, "SYNC_INTEGRATIONS": integrations}))
    try:
        before = dict(platform_sandbox.stats()["calls"])
        probe_platform(probing)
        after = platform_sandbox.stats()["calls"]
        made = {
            route: after[route] - before.get(route, 0)
            for route in after
            if after[route] != before.get(route, 0)
        }
        assert made == routes
        platform_sandbox.config(token_revoked=True)
        with pytest.raises(PlatformAuthError):
            probe_platform(probing)
    finally:
        platform_sandbox.config(token_revoked=False)
        probing.redis.close()
