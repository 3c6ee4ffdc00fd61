"""The dealer users' pure parts: contact values, location companies, names, memberships, fingerprints."""

from __future__ import annotations

from typing import Any

import pytest

from sync_worker.attributes import InvalidAttributeName
from sync_worker.integrations.dealer_users.fingerprints import (
    company_fingerprint,
    contact_fingerprint,
    membership_fingerprint,
)
from sync_worker.integrations.dealer_users.membership import TooManyLocations, plan_membership
from sync_worker.integrations.dealer_users.profile import (
    LocationCompany,
    company_update,
    compute_user,
    contact_update,
    resolve_user_names,
)

LABEL = "Billing Center Dealer App"


def _user(**changes: Any) -> dict[str, Any]:
    """The seed's example user (user123), with ``changes``."""
    user = {
        "user_id": "user123",
        "email": "  Test.User@Dealer.Example ",
        "first_name": "Test  User",
        "last_name": " Name ",
        "status": "active",
        "roles": [
            {"name": "Company Billing Admin", "scope": "company"},
            {"name": "Location Sales Admin", "scope": "location"},
            {"name": "Company Billing Admin", "scope": "location"},
        ],
        "companies": [{"id": "co_a", "name": "Company A"}, {"id": "co_b", "name": "Company B"}],
        "locations": [
            {"id": "location_id_1", "name": "Location 1", "company_id": "co_a"},
            {"id": "location_id_2", "name": "Location 2", "company_id": "co_b"},
        ],
        "updated_at": "2025-06-02T14:30:00Z",
    }
    user.update(changes)
    return user


def test_the_seed_example_user_shows_the_seed_attributes():
    computed = compute_user(_user(), source_label=LABEL)
    assert computed.values == {
        "external_id": "user123",
        "email": "test.user@dealer.example",
        "name": "Test User Name",
        "source": LABEL,
        "roles": "Company Billing Admin, Location Sales Admin",
        "companies": "Company A, Company B",
    }
    custom, standard = contact_update(computed, resolve_user_names())
    assert custom == {
        "Source": LABEL,
        "User_roles": "Company Billing Admin, Location Sales Admin",
        "User_companies": "Company A, Company B",
    }
    assert standard == {
        "external_id": "user123",
        "email": "test.user@dealer.example",
        "name": "Test User Name",
    }


def test_locations_are_companies_named_by_their_dealer_company():
    computed = compute_user(_user(), source_label=LABEL)
    assert computed.locations == (
        LocationCompany("location_id_1", "Location 1", "Company A"),
        LocationCompany("location_id_2", "Location 2", "Company B"),
    )
    assert company_update(computed.locations[0], resolve_user_names()) == {"Dealer Company": "Company A"}


def test_nothing_to_show_is_a_dash_and_a_blank_name_is_left_as_it_is():
    computed = compute_user(
        _user(first_name=" ", last_name="", roles=[], companies=[], locations=[]), source_label=LABEL
    )
    assert computed.values["roles"] == computed.values["companies"] == "-"
    assert computed.values["name"] is None and computed.locations == ()
    _, standard = contact_update(computed, resolve_user_names())
    assert "name" not in standard


def test_platform_order_is_kept_and_a_repeat_keeps_its_first_place():
    computed = compute_user(
        _user(
            companies=[
                {"id": "co_nw", "name": "Northwind Motors"},
                {"id": "co_a", "name": "Company A"},
                {"id": "co_nw2", "name": " Northwind Motors "},
            ],
            locations=[
                {"id": "l2", "name": "Two", "company_id": "co_a"},
                {"id": "l1", "name": "One", "company_id": "co_nw"},
                {"id": "l2", "name": "Two again", "company_id": "co_a"},
            ],
        ),
        source_label=LABEL,
    )
    assert computed.values["companies"] == "Northwind Motors, Company A"
    assert [location.company_id for location in computed.locations] == ["l2", "l1"]


def test_a_location_whose_company_the_user_does_not_name_writes_no_dealer_company():
    computed = compute_user(
        _user(locations=[{"id": "l9", "name": "Nine", "company_id": "co_unknown"}]), source_label=LABEL
    )
    assert computed.locations[0].dealer_company is None
    assert company_update(computed.locations[0], resolve_user_names()) == {}


def test_joined_values_are_cut_to_255_characters_as_written():
    roles = [{"name": f"Role number {index} of a long list"} for index in range(20)]
    computed = compute_user(_user(roles=roles), source_label=LABEL)
    assert len(computed.values["roles"]) > 255
    custom, _ = contact_update(computed, resolve_user_names())
    assert len(custom["User_roles"]) == 255 and custom["User_roles"].endswith("…")


def test_custom_names_are_configurable_and_checked():
    names = resolve_user_names({"roles": "Dealer Roles", "dealer_company": "Dealer Group"})
    assert names.contact_custom == ["Source", "Dealer Roles", "User_companies"]
    assert names.company_custom == ["Dealer Group"]
    custom, _ = contact_update(compute_user(_user(), source_label=LABEL), names)
    assert "Dealer Roles" in custom and "User_roles" not in custom
    with pytest.raises(InvalidAttributeName, match="email") as refused:
        resolve_user_names({"email": "Mail"})  # a standard field stays one
    assert refused.value.setting == "USERS_ATTRIBUTE_NAMES"
    with pytest.raises(InvalidAttributeName, match="roles"):
        resolve_user_names({"roles": "Bad.Name"})
    with pytest.raises(InvalidAttributeName, match="also the name"):
        resolve_user_names({"roles": "Source"})


def test_membership_attaches_what_is_missing_and_detaches_only_our_own():
    plan = plan_membership(
        ["loc_new", "loc_kept", "loc_theirs"],
        attached_by_us=["loc_kept", "loc_removed", "loc_gone"],
        current=["loc_kept", "loc_removed", "loc_theirs", "someone_elses"],
    )
    assert plan.attach == ("loc_new",)
    assert plan.detach == ("loc_removed",)  # someone_elses stays; loc_gone is not attached any more
    assert plan.ours == frozenset({"loc_new", "loc_kept"})  # loc_theirs was attached by someone else


def test_membership_of_a_new_contact_attaches_every_location_in_order():
    plan = plan_membership(["b", "a", "b"], attached_by_us=[], current=[])
    assert plan.attach == ("b", "a") and plan.detach == () and plan.ours == frozenset({"a", "b"})
    assert plan_membership(["a"], ["a"], ["a"]).empty


def test_more_locations_than_intercom_allows_is_a_permanent_error_naming_the_limit():
    with pytest.raises(TooManyLocations, match="1,000") as refused:
        plan_membership([f"loc{index}" for index in range(1001)], [], [])
    assert not refused.value.transient and refused.value.code == "company_limit_reached"
    assert len(plan_membership([f"loc{index}" for index in range(1000)], [], []).attach) == 1000


def test_fingerprints_change_exactly_with_what_is_shown():
    custom, standard = {"Source": "x"}, {"email": "a@b.c"}
    assert contact_fingerprint(custom, standard, "c1") == contact_fingerprint(
        dict(custom), dict(standard), "c1"
    )
    assert contact_fingerprint(custom, standard, "c1") != contact_fingerprint(custom, standard, "c2")
    assert contact_fingerprint(custom, standard, "c1") != contact_fingerprint({"Source": "y"}, standard, "c1")
    assert membership_fingerprint(["a", "b"], "c1") == membership_fingerprint(["b", "a", "a"], "c1")
    assert membership_fingerprint(["a"], "c1") != membership_fingerprint(["a", "b"], "c1")
    assert company_fingerprint("L1", {"Dealer Company": "A"}) != company_fingerprint(
        "L1", {"Dealer Company": "B"}
    )
    assert company_fingerprint("L1", {}) != company_fingerprint("L2", {})
