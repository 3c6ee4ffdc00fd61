"""RequestValidator against Intercom's real 2.14 OpenAPI description."""

from __future__ import annotations

import json

import pytest

from sync_worker.devtools.sandbox.openapi import SPEC_ENV, RequestValidator, find_spec, get_validator

HEADERS = {"Intercom-Version": "2.14", "Content-Type": "application/json", "Authorization": "Bearer t"}


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    return get_validator()


def body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("method", "path", "query", "payload"),
    [
        ("GET", "/contacts/6762f0cd1bb69f9f2193bb7c", {}, None),
        ("GET", "/contacts", {"per_page": "150", "starting_after": "abc"}, None),  # undeclared, accepted
        ("POST", "/contacts/search", {}, {"query": {"field": "email", "operator": "=", "value": "a@b.co"}}),
        (
            "POST",
            "/contacts/search",
            {},
            {
                "query": {
                    "operator": "AND",
                    "value": [{"field": "email", "operator": "=", "value": "a@b.co"}],
                },
                "pagination": {"per_page": 150},
            },
        ),
        ("PUT", "/contacts/abc", {}, {"name": "Ann Lee", "custom_attributes": {"Client ID": "131446"}}),
        ("PUT", "/contacts/abc", {}, {"custom_attributes": {"Client ID": None}, "name": None}),
        ("GET", "/data_attributes", {"model": "contact"}, None),
        ("POST", "/data_attributes", {}, {"name": "Client ID", "model": "contact", "data_type": "string"}),
    ],
)
def test_valid_requests_pass(validator, method, path, query, payload):
    data = body(payload) if payload is not None else None
    assert validator.validate(method, path, query, HEADERS, data) == []


def test_wrong_version_header_is_named(validator):
    problems = validator.validate("GET", "/contacts/abc", {}, {**HEADERS, "Intercom-Version": "9.9"}, None)
    assert len(problems) == 1
    assert "Intercom-Version" in problems[0] and "'9.9'" in problems[0]


def test_header_names_are_case_insensitive(validator):
    assert validator.validate("GET", "/contacts/abc", {}, {"intercom-version": "2.14"}, None) == []
    assert validator.validate("GET", "/contacts/abc", {}, {"intercom-version": "x"}, None) != []


def test_body_field_of_the_wrong_type_is_named(validator):
    problems = validator.validate("PUT", "/contacts/abc", {}, HEADERS, body({"name": 5}))
    assert problems == ["body name: 5 is not of type 'string'"]


def test_custom_attributes_must_be_an_object(validator):
    problems = validator.validate("PUT", "/contacts/abc", {}, HEADERS, body({"custom_attributes": ["x"]}))
    assert len(problems) == 1 and "custom_attributes" in problems[0] and "object" in problems[0]


def test_one_of_failure_names_the_closest_branch(validator):
    search = {"query": {"field": "email", "operator": "==", "value": "a@b.co"}}
    problems = validator.validate("POST", "/contacts/search", {}, HEADERS, body(search))
    assert len(problems) == 1 and "query/operator: '==' is not one of" in problems[0]
    attribute = {"name": "X", "model": "contact", "data_type": "text"}
    problems = validator.validate("POST", "/data_attributes", {}, HEADERS, body(attribute))
    assert "data_type: 'text' is not one of" in problems[0]


def test_missing_required_body_property(validator):
    problems = validator.validate(
        "POST", "/data_attributes", {}, HEADERS, body({"name": "X", "model": "contact"})
    )
    assert problems == ["body (root): 'data_type' is a required property"]


def test_search_needs_a_query(validator):
    problems = validator.validate(
        "POST", "/contacts/search", {}, HEADERS, body({"pagination": {"per_page": 5}})
    )
    assert problems == ["body (root): 'query' is a required property"]


def test_unknown_path_and_method(validator):
    assert validator.validate("GET", "/nothing/here", {}, HEADERS, None) == [
        "no operation matches path /nothing/here"
    ]
    assert validator.validate("DELETE", "/data_attributes", {}, HEADERS, None) == [
        "method DELETE is not allowed on /data_attributes"
    ]


def test_declared_query_parameter_is_checked(validator):
    problems = validator.validate("GET", "/data_attributes", {"model": "ticket"}, HEADERS, None)
    assert len(problems) == 1 and problems[0].startswith("query parameter model: 'ticket' is not one of")
    problems = validator.validate("GET", "/data_attributes", {"include_archived": "maybe"}, HEADERS, None)
    assert problems and "include_archived" in problems[0]
    assert validator.validate("GET", "/data_attributes", {"include_archived": "true"}, HEADERS, None) == []


def test_body_must_be_json_of_the_declared_type(validator):
    problems = validator.validate("PUT", "/contacts/abc", {}, HEADERS, b"{not json")
    assert len(problems) == 1 and problems[0].startswith("request body is not valid JSON")
    problems = validator.validate("PUT", "/contacts/abc", {}, {**HEADERS, "Content-Type": "text/plain"}, b"x")
    assert problems == ["content type text/plain is not accepted (expected application/json)"]


def test_a_body_where_none_is_taken(validator):
    problems = validator.validate("GET", "/contacts/abc", {}, HEADERS, b'{"a": 1}')
    assert problems == ["ShowContact takes no request body"]


def test_match_prefers_literal_segments(validator):
    found = validator.match("POST", "/contacts/search")
    assert found is not None and found.operation_id == "SearchContacts"
    found = validator.match("PUT", "/contacts/123")
    assert (
        found is not None
        and found.operation_id == "UpdateContact"
        and found.path_params == {"contact_id": "123"}
    )
    assert validator.match("PATCH", "/contacts/123") is None


def test_the_validator_is_shared_per_process():
    assert get_validator() is get_validator()


def test_find_spec_honours_explicit_path_and_environment(tmp_path, monkeypatch):
    real = find_spec()
    with pytest.raises(FileNotFoundError, match="INTERCOM_OPENAPI_SPEC"):
        find_spec(tmp_path / "missing.yaml")
    monkeypatch.setenv(SPEC_ENV, str(real))
    assert find_spec() == real
    monkeypatch.setenv(SPEC_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError):
        find_spec()
