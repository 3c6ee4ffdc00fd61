"""The dealer users sample is valid against the platform contract and exercises every rule of the
dealer users integration; synthetic users are valid, deterministic and share their locations."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator

from sync_worker.devtools.sandbox.dataset import InvalidRecord
from sync_worker.devtools.sandbox.dealer_users_dataset import (
    EMAIL_CHANGE,
    GONE_USER_ID,
    INTERCOM_COMPANY_CAP,
    LOCATION_MOVE,
    MOVED_LOCATION_ID,
    SHARED_LOCATION_ID,
    apply_patch,
    load_sample_users,
    over_cap_user,
    synthetic_user,
    synthetic_user_id,
    synthetic_user_index,
    synthetic_user_number,
    validate_user,
    validate_users,
)
from sync_worker.platform import check_user
from sync_worker.platform_users import user_problems
from tests.fixtures.platform_contract import contract_validator, schema_errors


@pytest.fixture(scope="module")
def user_validator() -> OAS31Validator:
    return contract_validator("User")


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    return load_sample_users()


def by_id(users: list[dict[str, Any]], user_id: str) -> dict[str, Any]:
    return next(user for user in users if user["user_id"] == user_id)


def location_ids(user: dict[str, Any]) -> list[str]:
    return [location["id"] for location in user["locations"]]


def joined(names: list[str]) -> str:
    return ", ".join(dict.fromkeys(names))


# --- validity -----------------------------------------------------------------------------------


def test_every_sample_user_validates_against_the_contract(sample, user_validator):
    assert len(sample) >= 15
    for user in sample:
        assert schema_errors(user_validator, user) == [], user["user_id"]
        assert user_problems(user, strict=True) == [], user["user_id"]
        assert check_user(user) is user
    assert len({user["user_id"] for user in sample}) == len(sample)


def test_the_patches_and_the_user_over_the_cap_validate_too(sample, user_validator):
    patched = {user_id: apply_patch(by_id(sample, user_id), changes) for user_id, changes in LOCATION_MOVE}
    email_user, email_changes = EMAIL_CHANGE
    patched[email_user] = apply_patch(by_id(sample, email_user), email_changes)
    for user in [*patched.values(), over_cap_user()]:
        assert schema_errors(user_validator, user) == [], user["user_id"]
    after = [patched.get(user["user_id"], user) for user in sample]
    assert validate_users(after) == after  # the move describes the location as everyone else does


def _break(user: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    broken = copy.deepcopy(user)
    change(broken)
    return broken


BREAKAGES = {
    "missing locations": lambda u: u.pop("locations"),
    "numeric user_id": lambda u: u.update(user_id=123),
    "missing email": lambda u: u.pop("email"),
    "roles not an array": lambda u: u.update(roles="Company Billing Admin"),
    "role without a name": lambda u: u["roles"].append({"scope": "company"}),
    "company without a name": lambda u: u["companies"].append({"id": "co_x"}),
    "location without a company": lambda u: u["locations"].append({"id": "l", "name": "L"}),
    "location id a number": lambda u: u["locations"].append({"id": 7, "name": "L", "company_id": "c"}),
    "a location not an object": lambda u: u["locations"].append("location_id_1"),
    "updated_at not a time": lambda u: u.update(updated_at="June 2"),
    "unknown status": lambda u: u.update(status="suspended"),
    "unknown role scope": lambda u: u["roles"].append({"name": "X", "scope": "region"}),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_validate_user_refuses_what_the_schema_refuses(sample, user_validator, name):
    broken = _break(by_id(sample, "user123"), BREAKAGES[name])
    assert schema_errors(user_validator, broken) != []
    with pytest.raises(InvalidRecord) as raised:
        validate_user(broken)
    assert not any("dana" in problem for problem in raised.value.problems)  # fields, never values


def test_the_workers_check_is_lenient_on_the_prose_rules_only(sample):
    user = by_id(sample, "user123")
    assert user_problems(dict(user, status="suspended")) == []
    assert user_problems(dict(user, updated_at="2025-06-02T14:30:00+02:00")) == []
    assert user_problems(dict(user, updated_at="2025-06-02T14:30:00+02:00"), strict=True) != []
    assert user_problems(dict(user, user_id="  ")) == ["user_id is blank"]
    assert user_problems(["not", "a", "user"]) == ["a user record is a list, not an object"]


def test_a_dataset_describes_each_location_and_company_one_way(sample):
    renamed = copy.deepcopy(by_id(sample, "user124"))
    renamed["locations"][0]["name"] = "Location One"
    with pytest.raises(InvalidRecord, match=f"location {SHARED_LOCATION_ID} has two names"):
        validate_users([by_id(sample, "user123"), renamed])
    with pytest.raises(InvalidRecord, match="appears twice"):
        validate_users([by_id(sample, "user123"), by_id(sample, "user123")])


# --- the rules the sample exercises --------------------------------------------------------------------


def test_the_seeds_example_user(sample):
    user = by_id(sample, "user123")
    assert joined([r["name"] for r in user["roles"]]) == "Company Billing Admin, Location Sales Admin"
    assert joined([c["name"] for c in user["companies"]]) == "Company A, Company B"
    assert {"id": "location_id_1", "name": "Location 1"}.items() <= user["locations"][0].items()


def test_roles_companies_and_locations(sample):
    assert any(len(u["roles"]) > len({r["name"] for r in u["roles"]}) for u in sample)  # a duplicate role
    assert len({r["name"] for u in sample for r in u["roles"]}) >= 4
    assert {r.get("scope") for u in sample for r in u["roles"]} == {"company", "location", None}
    assert len({c["id"] for u in sample for c in u["companies"]}) >= 4
    assert any(len({c["id"] for c in u["companies"]}) >= 2 for u in sample)
    assert any(len(u["companies"]) > len({c["id"] for c in u["companies"]}) for u in sample)  # a duplicate
    names = [[c["name"] for c in u["companies"]] for u in sample]
    assert any(joined(n) != ", ".join(sorted(set(n))) for n in names)  # platform order, not sorted
    assert any(len(u["locations"]) >= 3 for u in sample)
    assert any(u["roles"] == [] and u["companies"] == [] and u["locations"] == [] for u in sample)
    for user in sample:  # every location's dealer company is among its user's companies
        assert {loc["company_id"] for loc in user["locations"]} <= {c["id"] for c in user["companies"]}


def test_a_location_shared_by_many_users(sample):
    sharing = Counter(location for user in sample for location in location_ids(user))
    assert sharing[SHARED_LOCATION_ID] >= 8
    assert sharing.most_common(1)[0][0] == SHARED_LOCATION_ID


def test_the_location_move_takes_it_from_one_user_and_gives_it_to_another(sample):
    (loser, losing), (gainer, gaining) = LOCATION_MOVE
    assert MOVED_LOCATION_ID in location_ids(by_id(sample, loser))
    assert MOVED_LOCATION_ID not in location_ids(by_id(sample, gainer))
    after_loser = apply_patch(by_id(sample, loser), losing)
    after_gainer = apply_patch(by_id(sample, gainer), gaining)
    assert MOVED_LOCATION_ID not in location_ids(after_loser) and location_ids(after_loser)  # others stay
    assert location_ids(after_gainer) == [*location_ids(by_id(sample, gainer)), MOVED_LOCATION_ID]
    assert by_id(sample, loser) == by_id(load_sample_users(), loser)  # apply_patch changed a copy


def test_the_email_change(sample):
    user_id, changes = EMAIL_CHANGE
    before = by_id(sample, user_id)["email"]
    assert changes["email"] != before
    assert all(u["email"].strip().lower() != changes["email"] for u in sample)


def test_disabled_gone_and_over_the_cap(sample):
    assert {u["status"] for u in sample} == {"active", "disabled"}
    assert GONE_USER_ID not in {u["user_id"] for u in sample}
    assert len(over_cap_user()["locations"]) == INTERCOM_COMPANY_CAP + 1
    assert over_cap_user()["user_id"] not in {u["user_id"] for u in sample}


def test_emails_names_and_long_values(sample):
    emails = [u["email"] for u in sample]
    assert any(e != e.strip() and e.strip() != e.strip().lower() for e in emails)
    assert len({e.strip().lower() for e in emails}) == len(emails)  # no two users share an email
    assert any("  " in u["first_name"] or u["last_name"] != u["last_name"].strip() for u in sample)
    assert any(not f"{u['first_name']} {u['last_name']}".strip() for u in sample)  # no name at all
    assert any(len(joined([r["name"] for r in u["roles"]])) > 255 for u in sample)
    assert any(len(joined([c["name"] for c in u["companies"]])) > 255 for u in sample)
    assert any(not loc["name"].isascii() for u in sample for loc in u["locations"])


# --- synthetic users ------------------------------------------------------------------------------


def test_synthetic_users_are_valid_deterministic_and_share_locations(user_validator):
    users = [synthetic_user(i, locations=500) for i in range(2000)]
    for i, user in enumerate(users[:300]):
        assert schema_errors(user_validator, user) == [], i
        assert user == synthetic_user(i, locations=500)
    assert validate_users(users) == users  # a location has one name and company for all its users
    assert all(2 <= len(u["locations"]) <= 4 for u in users)
    assert all(len(set(location_ids(u))) == len(u["locations"]) for u in users)
    distinct = {location for u in users for location in location_ids(u)}
    assert 450 <= len(distinct) <= 500
    assert synthetic_user(3, locations=500, seed=1) != users[3]
    assert len(synthetic_user(0, locations=1)["locations"]) == 1


def test_synthetic_ids_sort_as_numbers_and_map_back():
    ids = [synthetic_user_id(i) for i in (0, 9, 10, 99, 100, 12345)]
    assert ids == sorted(ids)
    assert [synthetic_user_number(user_id) for user_id in ids] == [0, 9, 10, 99, 100, 12345]
    assert synthetic_user_number("user123") is None
    assert synthetic_user_index(" Dealer.User12@DEALER.example ") == 12
    assert synthetic_user_index("dealer.user012@dealer.example") is None
