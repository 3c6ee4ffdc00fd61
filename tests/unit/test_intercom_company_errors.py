"""Pure parsers of Intercom's answers for contact creation, companies and memberships."""

from __future__ import annotations

import pytest

from sync_worker import keys
from sync_worker.errors import PermanentError, TransientError
from sync_worker.intercom import (
    MAX_COMPANIES_PER_CONTACT,
    CompanyExists,
    CompanyLimitReached,
    ContactExists,
    IntercomBadRequest,
    IntercomConflict,
    companies_of,
    company_from_listing,
    error_for_response,
    existing_contact_id,
    next_page_cursor,
)


def body(code: str, message: str) -> dict:
    return {"type": "error.list", "request_id": "r-1", "errors": [{"code": code, "message": message}]}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "A contact matching those details already exists with id=5f7f0d217289f8d2f4262080",
            "5f7f0d217289f8d2f4262080",
        ),
        ("A contact matching those details already exists with id = abc-123.", "abc-123"),
        ("A contact matching those details already exists with id='abc'", "abc"),
        ("A contact matching those details already exists", None),
        ("Injected failure (409)", None),
        ("", None),
        (None, None),
    ],
)
def test_existing_contact_id(message, expected):
    assert existing_contact_id(message) == expected


def test_a_409_naming_a_contact_is_contact_exists_and_permanent():
    error = error_for_response(
        409,
        {},
        body("conflict", "A contact matching those details already exists with id=c-9"),
        operation="create_contact",
        now=0.0,
    )
    assert isinstance(error, ContactExists) and error.existing_id == "c-9"
    assert isinstance(error, PermanentError) and not isinstance(error, TransientError)
    assert (error.status, error.intercom_code, error.request_id) == (409, "conflict", "r-1")


def test_any_other_409_stays_a_transient_conflict():
    error = error_for_response(409, {}, body("conflict", "Try again"), operation="update_contact", now=0.0)
    assert type(error) is IntercomConflict


@pytest.mark.parametrize(
    "payload",
    [
        body("unique_company_constraint", "Company already exists."),
        body("", "Company already exists."),  # the code Intercom's older answers left empty
        {"message": "Company already exists"},
    ],
)
def test_company_already_exists_is_company_exists_and_transient(payload):
    error = error_for_response(400, {}, payload, operation="upsert_company", now=0.0)
    assert isinstance(error, CompanyExists) and isinstance(error, TransientError)


def test_the_association_cap_is_company_limit_reached_naming_the_limit():
    payload = body(
        "contact_company_limit_exceeded", "Contact has reached the maximum of 1000 company associations"
    )
    error = error_for_response(400, {}, payload, operation="attach_company", now=0.0)
    assert isinstance(error, CompanyLimitReached) and isinstance(error, PermanentError)
    assert error.limit == MAX_COMPANIES_PER_CONTACT == 1000
    assert "1000 company associations" in str(error)


def test_other_400s_are_still_bad_requests():
    error = error_for_response(
        400, {}, body("parameter_not_found", "company not specified"), operation="x", now=0.0
    )
    assert type(error) is IntercomBadRequest


def test_companies_of_reads_data_and_companies():
    company = {"type": "company", "id": "1", "company_id": "loc-1"}
    assert companies_of({"type": "list", "data": [company], "total_count": 1}) == [company]
    assert companies_of({"type": "list", "companies": [company], "total_count": 1}) == [company]
    assert companies_of({"type": "list", "data": [], "companies": [company]}) == [company]
    assert companies_of({"type": "list"}) == [] and companies_of(None) == []
    assert companies_of({"data": [company, "junk"]}) == [company]


def test_company_from_listing_reads_a_list_or_one_company():
    company = {"type": "company", "id": "1", "company_id": "loc-1"}
    assert company_from_listing({"type": "list", "data": [company]}, "loc-1") == company
    assert company_from_listing(company, "loc-1") == company
    assert company_from_listing({"type": "list", "data": [company]}, "loc-2") is None
    assert company_from_listing({"type": "list", "data": []}, "loc-1") is None
    assert company_from_listing("nonsense", "loc-1") is None


def test_next_page_cursor():
    assert next_page_cursor({"pages": {"next": {"starting_after": "abc"}}}) == "abc"
    assert next_page_cursor({"pages": {"next": None}}) is None
    assert next_page_cursor({"pages": {"next": {"starting_after": ""}}}) is None
    assert next_page_cursor({}) is None


def test_data_attribute_cache_keys_per_model():
    assert (
        keys.data_attributes("w") == keys.data_attributes("w", "contact") == "intercom-sync:data-attributes:w"
    )
    assert keys.data_attributes("w", "company") != keys.data_attributes("w")
