"""IntercomClient's contact creation, search, companies and memberships against the Intercom
sandbox over real HTTP (every request validated against Intercom's 2.14 description)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sync_worker.errors import PermanentError, TransientError
from sync_worker.intercom import (
    CompanyExists,
    CompanyLimitReached,
    ContactExists,
    IntercomNotFound,
    IntercomRateLimited,
    InvalidAttribute,
)

pytestmark = pytest.mark.integration

LONG_WINDOW = 3600.0  # a test never straddles two rate-limit windows by chance


@pytest.fixture
def sandbox(intercom_sandbox):
    return intercom_sandbox


@pytest.fixture
def client(sandbox):
    client = sandbox.client(max_attempts=1)
    yield client
    client.close()


def succeeded(sandbox, operation: str) -> int:
    return sandbox.stats()["succeeded_by_operation"].get(operation, 0)


def with_companies(sandbox, count: int, *, attached: int) -> tuple[dict, list[str]]:
    """A contact, ``count`` companies ``loc-<n>`` and the contact attached to the first ``attached``."""
    contact = sandbox.seed(email="m@example.com")[0]
    company_ids = [f"loc-{n}" for n in range(count)]
    sandbox.seed_companies(*({"company_id": c, "name": c.upper()} for c in company_ids))
    sandbox.attach(contact["id"], *company_ids[:attached])
    return contact, company_ids


def assert_all_valid(sandbox) -> None:
    stats = sandbox.stats()
    assert stats["validation_failures"] == 0, stats["validation_problems"]


# --- creating contacts ---------------------------------------------------------------------


def test_create_contact_writes_standard_and_custom_fields(sandbox, client):
    sandbox.create_attribute("Source")
    created = client.create_contact(
        role="user",
        email="dana@example.com",
        external_id="u-1",
        name="Dana Roe",
        custom_attributes={"Source": "Billing Center Dealer App"},
    )
    stored = sandbox.contact(created["id"])
    assert (stored["role"], stored["email"], stored["external_id"], stored["name"]) == (
        "user",
        "dana@example.com",
        "u-1",
        "Dana Roe",
    )
    assert stored["custom_attributes"] == {"Source": "Billing Center Dealer App"}
    assert succeeded(sandbox, "CreateContact") == 1
    assert_all_valid(sandbox)


def test_a_user_with_a_taken_email_is_contact_exists_naming_the_contact(sandbox, client):
    first = sandbox.seed(email="Dana@Example.com")[0]
    with pytest.raises(ContactExists) as caught:
        client.create_contact(role="user", email="dana@example.com", external_id="u-1")
    assert caught.value.existing_id == first["id"]
    assert caught.value.status == 409
    assert isinstance(caught.value, PermanentError) and not isinstance(caught.value, TransientError)
    assert sandbox.stats()["calls_by_operation"]["CreateContact"] == 1  # not retried
    assert len(sandbox.contacts()) == 1


def test_a_taken_external_id_is_contact_exists_even_for_an_archived_contact(sandbox, client):
    first = sandbox.seed(email="old@example.com", external_id="u-7", archived=True)[0]
    with pytest.raises(ContactExists) as caught:
        client.create_contact(role="user", email="new@example.com", external_id="u-7")
    assert caught.value.existing_id == first["id"]
    with pytest.raises(IntercomNotFound):  # archived: unarchive it first
        client.get_contact(first["id"])
    assert client.unarchive_contact(first["id"])["archived"] is False
    assert client.get_contact(first["id"])["external_id"] == "u-7"
    assert_all_valid(sandbox)


def test_a_lead_may_share_a_users_email(sandbox, client):
    sandbox.seed(email="dana@example.com")
    lead = client.create_contact(role="lead", email="dana@example.com")
    assert lead["role"] == "lead"
    assert len(sandbox.contacts()) == 2


def test_archived_contacts_leave_search_until_unarchived(sandbox, client):
    contact = client.create_contact(role="user", external_id="u-3", email="c@example.com")
    client.archive_contact(contact["id"])
    assert client.find_contacts_by_external_id("u-3") == []
    assert [c["id"] for c in client.iter_contacts()] == []
    client.unarchive_contact(contact["id"])
    assert [c["id"] for c in client.find_contacts_by_external_id("u-3")] == [contact["id"]]
    assert_all_valid(sandbox)


def test_update_contact_writes_standard_email_name_and_external_id(sandbox, client):
    contact = sandbox.seed(email="old@example.com")[0]
    client.update_contact(
        contact["id"],
        custom_attributes={},
        standard={"email": "new@example.com", "name": "New Name", "external_id": "u-9"},
    )
    stored = sandbox.contact(contact["id"])
    assert (stored["email"], stored["name"], stored["external_id"]) == ("new@example.com", "New Name", "u-9")
    assert_all_valid(sandbox)


# --- searching -------------------------------------------------------------------------------


def test_find_by_external_id_is_exact(sandbox, client):
    wanted = sandbox.seed(
        {"email": "a@example.com", "external_id": "u-1"}, {"email": "b@example.com", "external_id": "u-10"}
    )
    assert [c["id"] for c in client.find_contacts_by_external_id("u-1")] == [wanted[0]["id"]]
    assert client.find_contacts_by_external_id("u-2") == []
    assert_all_valid(sandbox)


def test_search_pages_and_iter_search_follows_them(sandbox, client):
    seeded = sandbox.seed(*({"email": f"p{n}@example.com", "role": "user"} for n in range(7)))
    query = {"field": "email", "operator": "~", "value": "@example.com"}
    first = client.search_contacts(query, per_page=3)
    assert len(first.contacts) == 3 and first.next_cursor and first.total_count == 7
    second = client.search_contacts(query, per_page=3, starting_after=first.next_cursor)
    assert [c["id"] for c in second.contacts] == [c["id"] for c in seeded[3:6]]
    assert [c["id"] for c in client.iter_search(query, per_page=3)] == [c["id"] for c in seeded]
    assert [c["id"] for c in client.search_contacts_by_email("p4@example.com")] == [seeded[4]["id"]]
    assert_all_valid(sandbox)


# --- companies ---------------------------------------------------------------------------------


def test_upsert_company_creates_then_updates_by_company_id(sandbox, client):
    client.create_data_attribute("Dealer Company", model="company")
    created = client.upsert_company(
        company_id="loc-1", name="North", custom_attributes={"Dealer Company": "A"}
    )
    updated = client.upsert_company(
        company_id="loc-1", name="North 2", custom_attributes={"Dealer Company": "B"}
    )
    assert updated["id"] == created["id"] and updated["company_id"] == "loc-1"
    assert (updated["name"], updated["custom_attributes"]) == ("North 2", {"Dealer Company": "B"})
    assert client.find_company("loc-1")["id"] == created["id"]
    assert client.get_company(created["id"])["name"] == "North 2"
    assert [c["writes"] for c in sandbox.companies()] == [2]
    assert succeeded(sandbox, "createOrUpdateCompany") == 2
    assert_all_valid(sandbox)


def test_company_attributes_are_checked_against_company_data_attributes(sandbox, client):
    sandbox.create_attribute("Dealer Company")  # a contact attribute: not one of companies
    with pytest.raises(InvalidAttribute) as caught:
        client.upsert_company(company_id="loc-1", name="North", custom_attributes={"Dealer Company": "A"})
    assert caught.value.attribute == "Dealer Company"
    assert sandbox.companies() == []
    names = [a["name"] for a in client.list_data_attributes(model="company")]
    assert names == []
    client.create_data_attribute("Dealer Company", model="company")
    assert [a["name"] for a in client.list_data_attributes(model="company")] == ["Dealer Company"]
    client.upsert_company(company_id="loc-1", name="North", custom_attributes={"Dealer Company": "A"})
    assert_all_valid(sandbox)


def test_find_company_is_none_when_there_is_none(sandbox, client):
    assert client.find_company("nowhere") is None
    with pytest.raises(IntercomNotFound):
        client.get_company("nothing")


def test_a_create_lost_to_another_client_is_company_exists_and_reads_back(sandbox, client):
    sandbox.race_company("loc-1", name="Written by someone else")
    with pytest.raises(CompanyExists) as caught:
        client.upsert_company(company_id="loc-1", name="North")
    assert caught.value.status == 400 and caught.value.intercom_code == "unique_company_constraint"
    assert isinstance(caught.value, TransientError)
    found = client.find_company("loc-1")
    assert found is not None and found["name"] == "Written by someone else"
    # the next write is an update of that company, not a second one
    assert client.upsert_company(company_id="loc-1", name="North")["id"] == found["id"]
    assert len(sandbox.companies()) == 1
    assert_all_valid(sandbox)


# --- memberships --------------------------------------------------------------------------------


def test_attach_list_and_detach(sandbox, client):
    contact = sandbox.seed(email="m@example.com", external_id="u-1")[0]
    north = client.upsert_company(company_id="loc-1", name="North")
    south = client.upsert_company(company_id="loc-2", name="South")
    sandbox.seed_companies({"company_id": "other", "name": "Theirs"})
    sandbox.attach(contact["id"], "other")  # by someone else

    assert client.attach_company(contact["id"], north["id"])["user_count"] == 1
    client.attach_company(contact["id"], south["id"])
    client.attach_company(contact["id"], south["id"])  # already attached: nothing changes
    listed = client.list_contact_companies(contact["id"])
    assert [c["company_id"] for c in listed] == ["other", "loc-1", "loc-2"]
    assert client.get_contact(contact["id"])["companies"]["total_count"] == 3

    client.detach_company(contact["id"], north["id"])
    assert [c["company_id"] for c in sandbox.contact_companies(contact["id"])] == ["other", "loc-2"]
    stats = sandbox.stats()["succeeded_by_operation"]
    assert (stats["attachContactToACompany"], stats["detachContactFromACompany"]) == (3, 1)
    assert_all_valid(sandbox)


def test_list_contact_companies_follows_pages(sandbox, client):
    contact, company_ids = with_companies(sandbox, 7, attached=7)
    listed = client.list_contact_companies(contact["id"], per_page=3)
    assert [c["company_id"] for c in listed] == company_ids
    assert sandbox.stats()["calls_by_operation"]["listCompaniesForAContact"] == 3
    assert_all_valid(sandbox)


def test_the_thousand_and_first_company_is_company_limit_reached(sandbox, client):
    contact, _ = with_companies(sandbox, 1001, attached=1000)
    last = client.find_company("loc-1000")
    with pytest.raises(CompanyLimitReached) as caught:
        client.attach_company(contact["id"], last["id"])
    assert caught.value.limit == 1000 and "1000" in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert len(sandbox.contact_companies(contact["id"])) == 1000
    # one already attached is still fine
    client.attach_company(contact["id"], client.find_company("loc-0")["id"])
    assert_all_valid(sandbox)


def test_memberships_of_unknown_contacts_and_companies_are_not_found(sandbox, client):
    contact = sandbox.seed(email="m@example.com")[0]
    with pytest.raises(IntercomNotFound):
        client.attach_company(contact["id"], "no-such-company")
    with pytest.raises(IntercomNotFound):
        client.list_contact_companies("no-such-contact")
    with pytest.raises(IntercomNotFound):
        client.detach_company("no-such-contact", "no-such-company")


def test_concurrent_attaches_of_one_contact_never_pass_the_cap(sandbox):
    contact, _ = with_companies(sandbox, 1010, attached=995)
    ids = [c["id"] for c in sandbox.companies()[995:]]

    def attach(company_intercom_id: str) -> str:
        client = sandbox.client(max_attempts=1)
        try:
            client.attach_company(contact["id"], company_intercom_id)
            return "attached"
        except CompanyLimitReached:
            return "refused"
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attach, ids))
    assert (outcomes.count("attached"), outcomes.count("refused")) == (5, 10)
    assert len(sandbox.contact_companies(contact["id"])) == 1000


def test_company_routes_are_rate_limited_with_headers(sandbox, client):
    sandbox.config(rate_limit=2, window_seconds=LONG_WINDOW)
    client.upsert_company(company_id="loc-1", name="North")
    assert client.last_rate_limit is not None and client.last_rate_limit.remaining == 1
    client.find_company("loc-1")
    with pytest.raises(IntercomRateLimited):
        client.upsert_company(company_id="loc-2", name="South")
    assert sandbox.stats()["rate_limited"] == 1


def test_an_update_to_another_contacts_email_or_external_id_is_contact_exists(sandbox, client):
    theirs, mine = sandbox.seed({"email": "a@example.com", "external_id": "u-1"}, {"email": "b@example.com"})
    for standard in ({"email": "A@example.com"}, {"external_id": "u-1"}):
        with pytest.raises(ContactExists) as caught:
            client.update_contact(mine["id"], custom_attributes={}, standard=standard)
        assert caught.value.existing_id == theirs["id"]
    assert (sandbox.contact(mine["id"])["email"], sandbox.contact(mine["id"])["external_id"]) == (
        "b@example.com",
        None,
    )
    client.update_contact(
        mine["id"], custom_attributes={}, standard={"email": "b@example.com", "external_id": "u-2"}
    )
    assert sandbox.contact(mine["id"])["external_id"] == "u-2"


def test_control_routes_refuse_an_attach_past_the_cap(sandbox):
    contact, _ = with_companies(sandbox, 1001, attached=1000)
    with pytest.raises(requests.HTTPError) as caught:
        sandbox.attach(contact["id"], "loc-1000")
    assert caught.value.response.status_code == 400
    assert "1000 company associations" in caught.value.response.json()["error"]
