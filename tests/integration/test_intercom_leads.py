"""Leads in the Intercom sandbox, over real HTTP and validated against Intercom's 2.14 description.

A lead's ``external_id`` is ignored as Intercom ignores it; search finds contacts by role and by a
custom attribute's value, page by page; a lead becomes a user by ``PUT role: user`` (never back)
or by ``POST /contacts/merge`` into a user, after which the lead answers 404 as a merged contact.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.intercom_agent import IntercomAgent

pytestmark = pytest.mark.integration

REFERRAL_ID = "Referral ID"


def _search(agent: IntercomAgent, query: dict[str, Any], per_page: int) -> tuple[list[str], list[int]]:
    """Every contact id the query finds, following ``pages.next``; and each page's ``total_count``."""
    ids: list[str] = []
    totals: list[int] = []
    pagination: dict[str, Any] = {"per_page": per_page}
    for _ in range(50):
        response = agent.api("POST", "/contacts/search", json={"query": query, "pagination": pagination})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= per_page
        ids += [c["id"] for c in page["data"]]
        totals.append(page["total_count"])
        following = page["pages"].get("next")
        if not following:
            return ids, totals
        pagination = {"per_page": per_page, "starting_after": following["starting_after"]}
    raise AssertionError("search never ran out of pages")


def test_a_leads_external_id_is_ignored_on_create_and_update_and_kept_once_it_is_a_user(
    intercom_sandbox, intercom_agent
):
    (lead,) = intercom_sandbox.seed({"email": "lead@example.com", "role": "lead", "external_id": "ext-1"})
    assert lead["role"] == "lead" and lead["external_id"] is None and lead["signed_up_at"] is None

    ignored = intercom_agent.api("PUT", f"/contacts/{lead['id']}", json={"external_id": "ext-2"})
    assert ignored.status_code == 200, ignored.text
    assert ignored.json()["external_id"] is None
    assert intercom_agent.api("GET", f"/contacts/{lead['id']}").json()["external_id"] is None

    converted = intercom_agent.api(
        "PUT", f"/contacts/{lead['id']}", json={"role": "user", "external_id": "ext-3"}
    )
    assert converted.status_code == 200, converted.text
    user = intercom_agent.api("GET", f"/contacts/{lead['id']}").json()
    assert user["role"] == "user" and user["external_id"] == "ext-3"
    assert isinstance(user["signed_up_at"], int) and user["signed_up_at"] >= lead["created_at"]

    back = intercom_agent.api("PUT", f"/contacts/{lead['id']}", json={"role": "lead"})
    assert back.status_code == 400 and back.json()["errors"][0]["code"] == "parameter_invalid"
    assert intercom_agent.api("GET", f"/contacts/{lead['id']}").json()["role"] == "user"
    assert intercom_sandbox.stats()["validation_failures"] == 0


def test_search_by_role_finds_every_lead_page_by_page(intercom_sandbox, intercom_agent):
    seeded = intercom_sandbox.seed(
        *({"email": f"c{n}@example.com", "role": "lead" if n % 3 else "user"} for n in range(12))
    )
    leads = [c["id"] for c in seeded if c["role"] == "lead"]
    users = [c["id"] for c in seeded if c["role"] == "user"]
    assert len(leads) == 8 and len(users) == 4

    found, totals = _search(intercom_agent, {"field": "role", "operator": "=", "value": "lead"}, per_page=3)
    assert found == leads  # in creation order, each once, across 3 pages
    assert set(totals) == {8} and len(totals) == 3
    found_users, _ = _search(
        intercom_agent, {"field": "role", "operator": "=", "value": "user"}, per_page=150
    )
    assert found_users == users
    assert intercom_sandbox.stats()["validation_failures"] == 0


def test_search_by_a_custom_attributes_value_alone_and_with_the_role(intercom_sandbox, intercom_agent):
    intercom_sandbox.create_attribute(REFERRAL_ID)
    seeded = intercom_sandbox.seed(
        {"email": "r1@example.com", "role": "lead", "custom_attributes": {REFERRAL_ID: "5001"}},
        {"email": "r2@example.com", "role": "lead", "custom_attributes": {REFERRAL_ID: "5002"}},
        {"email": "r3@example.com", "role": "user", "custom_attributes": {REFERRAL_ID: "5001"}},
        {"email": "r4@example.com", "role": "lead"},
        {"email": "r5@example.com", "role": "lead", "custom_attributes": {REFERRAL_ID: "5001"}},
    )
    ids = [c["id"] for c in seeded]
    by_value = {"field": f"custom_attributes.{REFERRAL_ID}", "operator": "=", "value": "5001"}

    found, totals = _search(intercom_agent, by_value, per_page=1)
    assert found == [ids[0], ids[2], ids[4]] and set(totals) == {3}

    leads_only = {
        "operator": "AND",
        "value": [by_value, {"field": "role", "operator": "=", "value": "lead"}],
    }
    found, _ = _search(intercom_agent, leads_only, per_page=1)
    assert found == [ids[0], ids[4]]
    many, _ = _search(
        intercom_agent,
        {"field": f"custom_attributes.{REFERRAL_ID}", "operator": "IN", "value": ["5001", "5002"]},
        per_page=2,
    )
    assert many == [ids[0], ids[1], ids[2], ids[4]]
    assert intercom_sandbox.stats()["validation_failures"] == 0


def test_merging_a_lead_into_a_user_keeps_the_users_values_fills_its_gaps_and_the_lead_answers_404(
    intercom_sandbox, intercom_agent
):
    intercom_sandbox.create_attribute(REFERRAL_ID)
    intercom_sandbox.create_attribute("Lead Status")
    lead, user = intercom_sandbox.seed(
        {
            "email": "same@example.com",
            "name": "From The Lead",
            "phone": "+15550001",
            "role": "lead",
            "custom_attributes": {REFERRAL_ID: "5001", "Lead Status": "New"},
        },
        {
            "email": "same@example.com",
            "name": "The User",
            "role": "user",
            "custom_attributes": {"Lead Status": "Customer"},
        },
    )

    merged = intercom_agent.api("POST", "/contacts/merge", json={"from": lead["id"], "into": user["id"]})
    assert merged.status_code == 200, merged.text
    survivor = merged.json()
    assert survivor["id"] == user["id"] and survivor["role"] == "user"
    assert survivor["name"] == "The User" and survivor["phone"] == "+15550001"
    assert survivor["custom_attributes"] == {REFERRAL_ID: "5001", "Lead Status": "Customer"}

    gone = intercom_agent.api("GET", f"/contacts/{lead['id']}")
    assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "not_found"
    assert intercom_sandbox.contact(lead["id"])["merged_into"] == user["id"]
    found, _ = _search(
        intercom_agent, {"field": f"custom_attributes.{REFERRAL_ID}", "operator": "=", "value": "5001"}, 150
    )
    assert found == [user["id"]]  # the merged lead no longer answers search; the user carries the id
    assert intercom_sandbox.stats()["calls_by_operation"]["MergeContact"] == 1


def test_merge_refuses_what_intercom_refuses(intercom_sandbox, intercom_agent):
    lead, other_lead, user, other_user = intercom_sandbox.seed(
        {"email": "l1@example.com", "role": "lead"},
        {"email": "l2@example.com", "role": "lead"},
        {"email": "u1@example.com", "role": "user"},
        {"email": "u2@example.com", "role": "user"},
    )
    for source, target in ((user, other_user), (lead, other_lead), (user, lead)):
        refused = intercom_agent.api(
            "POST", "/contacts/merge", json={"from": source["id"], "into": target["id"]}
        )
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "parameter_invalid"
    missing = intercom_agent.api("POST", "/contacts/merge", json={"from": lead["id"], "into": "0" * 24})
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"
    invalid = intercom_agent.api("POST", "/contacts/merge", json={"from": lead["id"]})
    assert invalid.status_code == 400 and "into" in invalid.json()["errors"][0]["message"]
    assert all(intercom_sandbox.contact(c["id"])["merged_into"] is None for c in (lead, other_lead, user))
