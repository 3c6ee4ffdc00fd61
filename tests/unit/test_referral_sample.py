"""The referral sandbox's sample is valid against the program's contract and covers every rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sync_worker.devtools.sandbox.dataset import load_sample
from sync_worker.devtools.sandbox.referral import newest_first
from sync_worker.devtools.sandbox.referral_dataset import (
    INTERCOM_USER_EMAIL,
    InvalidUser,
    sample_campaigns,
    sample_users,
    validate_users,
)
from sync_worker.referral_records import DIRECT, REFERRED, campaign_problems, user_problems

SPEC = Path(__file__).resolve().parents[2] / "docs" / "contracts" / "referral-api.yaml"


def validator_for(pointer: str) -> OAS31Validator:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    uri = "urn:referral-api"
    registry: Registry = Registry().with_resource(
        uri, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return OAS31Validator(
        {"$ref": f"{uri}#{pointer}"}, registry=registry, format_checker=OAS31Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def user_validator() -> OAS31Validator:
    return validator_for("/components/schemas/User")


@pytest.fixture(scope="module")
def users() -> list[dict[str, Any]]:
    return sample_users()


def by_id(users: list[dict[str, Any]], user_id: int) -> dict[str, Any]:
    return next(user for user in users if user["id"] == user_id)


def test_every_sample_user_validates_against_the_contract_schema(users, user_validator):
    assert len(users) >= 20
    for user in users:
        errors = [e.message for e in user_validator.iter_errors(user)]
        assert errors == [], (user["id"], errors)
        assert user_problems(user, strict=True) == [], user["id"]


def test_every_sample_campaign_is_a_contract_campaign():
    schema = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    campaign = schema["paths"]["/campaigns/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
    validator = OAS31Validator(campaign["schema"]["properties"]["data"])
    for record in sample_campaigns():
        assert list(validator.iter_errors(record)) == [] and campaign_problems(record) == []


def test_the_sample_covers_every_rule(users):
    assert {user["type"] for user in users} == {REFERRED, DIRECT}
    assert len({user["campaign_id"] for user in users}) >= 3
    assert any(user["email"] is None for user in users if user["type"] == REFERRED)  # email_required
    assert by_id(users, 5012)["email"] == "" and "@" not in by_id(users, 5013)["email"]
    assert by_id(users, 5006)["qualified_at"] is not None  # qualified on the program's side
    assert all(user["qualified_at"] is None for user in users if user["id"] != 5006)
    assert any(user.get("meta") for user in users)
    assert {type(item["value"]) for user in users for item in user.get("meta", [])} >= {str, int, bool}
    # A chain: 5003 was referred by 5002, who was referred by 5001 (direct).
    assert by_id(users, 5003)["referrer_id"] == 5002
    assert by_id(users, 5002)["referrer_id"] == 5001
    assert by_id(users, 5001)["type"] == DIRECT and by_id(users, 5001)["referrer_id"] is None
    # One address in two campaigns.
    assert by_id(users, 5015)["email"] == by_id(users, 5016)["email"]
    assert by_id(users, 5015)["campaign_id"] != by_id(users, 5016)["campaign_id"]
    assert "referrer_id" not in by_id(users, 5017) and "meta" not in by_id(users, 5017)


def test_one_email_is_a_user_of_the_intercom_sandbox_sample(users):
    """The dev stack seeds the Intercom sandbox with the platform sample's addresses (lower-cased)."""
    intercom = {record["email"].strip().lower() for record in load_sample()}
    shared = [user["id"] for user in users if (user["email"] or "").strip().lower() in intercom]
    assert shared == [5005]
    assert by_id(users, 5005)["email"] == INTERCOM_USER_EMAIL


def test_newest_first_orders_by_signup_then_id(users):
    listed = newest_first(users)
    assert listed[0]["id"] == 5022
    keys = [(user["signed_up_at"], user["id"]) for user in listed]
    assert keys == sorted(keys, reverse=True)


def test_validate_users_names_fields_and_ids_never_values(users):
    broken = copy.deepcopy(users[:3])
    broken[0]["email"] = 42
    broken[1]["type"] = "somebody"
    broken[2]["meta"] = [{"value": "x"}, "not an object"]
    with pytest.raises(InvalidUser) as caught:
        validate_users(broken)
    assert caught.value.problems == [
        "user #0: email is not a string or null",
        "user #1: type is not one of person_referring, person_invited",
        "user #2: meta[0].field is not a string",
        "user #2: meta[1] is not an object",
    ]
    orphan = dict(by_id(users, 5003), referrer_id=5007)  # 5007 is of another campaign
    with pytest.raises(InvalidUser, match="user 5003: referrer_id is not a user of its campaign"):
        validate_users([by_id(users, 5007), orphan], sample_campaigns())
    with pytest.raises(InvalidUser, match="ids are not unique"):
        validate_users([by_id(users, 5001), dict(by_id(users, 5001), code="OTHER")])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": "5001"}, "id is not an integer"),
        ({"id": True}, "id is not an integer"),
        ({"signed_up_at": "2025-01-10 15:00"}, "signed_up_at is not an ISO 8601 date-time with a zone"),
        ({"qualified_at": 0}, "qualified_at is not an ISO 8601 date-time with a zone, or null"),
        ({"meta": {"Company": "x"}}, "meta is not an array"),
        ({"referrer_id": "5001"}, "referrer_id is not an integer or null"),
    ],
)
def test_user_problems_finds_each_type_error(users, change, problem):
    assert user_problems({**by_id(users, 5002), **change}) == [problem]


def test_strict_adds_the_enums_and_the_z_suffix_the_client_does_not_require(users):
    record = {**by_id(users, 5002), "source": "Partner", "signed_up_at": "2025-01-14T09:30:00+00:00"}
    assert user_problems(record) == []
    assert user_problems(record, strict=True) == [
        "signed_up_at is not a UTC ISO 8601 time with a Z suffix",
        "source is not one of Direct, Referred, Api, Added, Zapier, Widget, Popup, Embed, Test",
    ]
    missing = {k: v for k, v in by_id(users, 5002).items() if k not in ("email", "qualified_at")}
    assert user_problems(missing) == ["missing required field email", "missing required field qualified_at"]
    assert user_problems(["not", "a", "user"]) == ["a user record is a list, not an object"]
