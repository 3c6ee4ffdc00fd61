"""Data attributes against the Intercom sandbox over HTTP: archived names and the cap (issue 12 item 13).

Intercom lists data attributes without the archived ones unless asked (``include_archived``), and
an archived name can be neither written nor created again: the schema must list them and name
the archived attribute, instead of every contact failing with a creation refusal.
"""

from __future__ import annotations

import pytest

from sync_worker.schema import (
    MAX_CUSTOM_ATTRIBUTES,
    ArchivedAttribute,
    AttributeLimitReached,
    AttributeSchema,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(intercom_sandbox, redis_client) -> AttributeSchema:
    return AttributeSchema(intercom_sandbox.client(), redis_client, "test-workspace")


def test_the_sandbox_lists_archived_attributes_only_when_asked(intercom_sandbox):
    intercom_sandbox.create_attribute("Balance")
    intercom_sandbox.archive("Balance")
    client = intercom_sandbox.client()
    names = lambda listed: [a["name"] for a in listed if a["custom"]]  # noqa: E731
    assert names(client.list_data_attributes(include_archived=False)) == []
    assert names(client.list_data_attributes()) == ["Balance"]
    assert intercom_sandbox.stats()["validation_failures"] == 0  # include_archived is in 2.14's description


def test_an_archived_attribute_is_named_and_nothing_is_created(schema, intercom_sandbox):
    intercom_sandbox.create_attribute("Balance")
    intercom_sandbox.archive("Balance")
    with pytest.raises(ArchivedAttribute) as raised:
        schema.ensure(["Data Status", "Balance"])
    assert "'Balance' is archived" in str(raised.value)
    assert intercom_sandbox.stats()["calls_by_operation"].get("createDataAttribute", 0) == 0

    intercom_sandbox.archive("Balance", archived=False)
    schema.forget()
    schema.ensure(["Data Status", "Balance"])  # unarchived: it is used, the other is created
    assert intercom_sandbox.stats()["calls_by_operation"]["createDataAttribute"] == 1


def test_names_past_intercoms_cap_are_refused_before_any_create(schema, intercom_sandbox):
    intercom_sandbox._call(
        "POST",
        "/data_attributes",
        json=[{"name": f"Old {n}"} for n in range(MAX_CUSTOM_ATTRIBUTES - 1)],
    )
    with pytest.raises(AttributeLimitReached) as raised:
        schema.ensure(["Data Status", "Balance"])
    assert "'Data Status', 'Balance'" in str(raised.value)
    assert intercom_sandbox.stats()["calls_by_operation"].get("createDataAttribute", 0) == 0


def test_company_attributes_have_their_own_schema(intercom_sandbox, redis_client, schema):
    companies = AttributeSchema(intercom_sandbox.client(), redis_client, "test-workspace", model="company")
    schema.ensure(["Dealer Company"])  # a contact attribute of that name does not make a company one
    companies.ensure(["Dealer Company"])
    listed = intercom_sandbox.client().list_data_attributes(model="company")
    assert [(a["name"], a["model"], a["data_type"]) for a in listed if a["custom"]] == [
        ("Dealer Company", "company", "string")
    ]
    created = intercom_sandbox.stats()["calls_by_operation"]["createDataAttribute"]
    companies.ensure(["Dealer Company"])  # cached: no call
    assert intercom_sandbox.stats()["calls_by_operation"]["createDataAttribute"] == created == 2
