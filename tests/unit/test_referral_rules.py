"""Who is sent, when a lead qualifies, and which Intercom webhooks ask a sync (all pure)."""

from __future__ import annotations

import pytest

from sync_worker.config import InvalidSetting, Settings
from sync_worker.integrations.referral_leads import webhook_request
from sync_worker.integrations.referral_leads.eligibility import skip_reason
from sync_worker.integrations.referral_leads.options import USER_TYPES, lead_options
from sync_worker.integrations.referral_leads.pipeline import backstop_query, referral_search
from sync_worker.integrations.referral_leads.qualification import (
    ALREADY_REPORTED,
    MOVED_BACK,
    NOTHING,
    QUALIFY,
    decide,
    watched_value,
)
from tests.unit.referral_options import options

USER = {"id": 1, "type": "person_invited", "campaign_id": 12, "email": "a@example.com"}


@pytest.mark.parametrize(
    ("user", "options", "reason"),
    [
        (USER, options(), None),
        ({**USER, "type": "person_referring"}, options(), "type_not_sent"),
        ({**USER, "type": "person_referring"}, options(user_types=USER_TYPES["direct"]), None),
        (USER, options(user_types=USER_TYPES["direct"]), "type_not_sent"),
        ({**USER, "type": "person_referring"}, options(user_types=USER_TYPES["all"]), None),
        (USER, options(campaigns=frozenset({7})), "campaign_not_sent"),
        (USER, options(campaigns=frozenset({7, 12})), None),
        ({**USER, "email": None}, options(), "email_required"),
        ({**USER, "email": "not an address"}, options(), "email_required"),
        ({**USER, "email": " Support@Example.com"}, options(), "excluded"),
        ({**USER, "type": "person_referring", "email": None}, options(), "type_not_sent"),
    ],
)
def test_who_is_sent(user, options, reason):
    assert skip_reason(user, options) == reason


@pytest.mark.parametrize(
    ("current", "last_seen", "reported", "action"),
    [
        ("Qualified", "New", False, QUALIFY),
        ("customer ", "Contacted", False, QUALIFY),
        ("Qualified", None, False, QUALIFY),
        ("Qualified", "New", True, ALREADY_REPORTED),
        ("Qualified", "Qualified", False, NOTHING),  # our own write echoing back
        ("Customer", "Qualified", False, NOTHING),
        ("New", "Qualified", True, MOVED_BACK),
        ("Contacted", "New", False, NOTHING),
        (None, None, False, NOTHING),
    ],
)
def test_the_property_decision(current, last_seen, reported, action):
    decision = decide(current, last_seen, reported=reported, options=options())
    assert decision.action == action
    assert decision.seen == current


@pytest.mark.parametrize(
    ("current", "last_seen", "action"),
    [
        ("user", "lead", QUALIFY),
        ("lead", "lead", NOTHING),
        ("user", "user", NOTHING),
        ("user", None, QUALIFY),
    ],
)
def test_the_signed_up_decision(current, last_seen, action):
    assert (
        decide(current, last_seen, reported=False, options=options(qualify_on="signed_up")).action == action
    )


def test_the_watched_value_is_the_role_or_the_property():
    contact = {"role": "lead", "custom_attributes": {"Lead Status": "New"}}
    assert watched_value(contact, options()) == "New"
    assert watched_value(contact, options(qualify_on="signed_up")) == "lead"
    assert watched_value({"role": "lead"}, options()) is None


PENDING = {
    "id": "c1",
    "email": "a@example.com",
    "custom_attributes": {"Referral ID": "5001", "Referral Status": "Pending"},
}


def test_a_pending_referral_contact_asks_a_sync_by_its_referral_id():
    request = webhook_request("contact.lead.updated", PENDING)
    assert request is not None
    assert (request.integration, request.source_id, request.contact_id, request.trigger) == (
        "referral_leads",
        "5001",
        "c1",
        "webhook",
    )
    assert request.contact_key == "referral_leads:source:5001"


def test_unrelated_and_reported_contacts_ask_nothing():
    unrelated = {"id": "c2", "email": "b@example.com", "custom_attributes": {"Plan": "Pro"}}
    assert webhook_request("contact.lead.updated", unrelated) is None
    assert webhook_request("contact.user.updated", unrelated) is None
    assert webhook_request("contact.lead.signed_up", unrelated) is None
    assert webhook_request("conversation.user.created", PENDING) is None
    reported = {**PENDING, "custom_attributes": {"Referral ID": "5001", "Referral Status": "Qualified"}}
    assert webhook_request("contact.lead.signed_up", reported) is None
    assert webhook_request("contact.merged", reported) is None
    assert webhook_request("contact.lead.updated", reported) is not None  # the property may move back: logged


def test_a_new_user_or_a_merge_without_referral_id_asks_a_sync_by_email():
    user = {"id": "u9", "email": "a@example.com", "role": "user", "custom_attributes": {}}
    for topic in ("contact.user.created", "contact.merged"):
        request = webhook_request(topic, user)
        assert request is not None and request.source_id is None and request.email == "a@example.com"
        assert request.contact_key == "referral_leads:id:u9"
    assert webhook_request("contact.user.created", {**user, "email": None}) is None


def test_settings_build_theoptions(monkeypatch):
    monkeypatch.setenv("REFERRAL_USER_TYPES", "all")
    monkeypatch.setenv("REFERRAL_CAMPAIGNS", "12, 14")
    monkeypatch.setenv("REFERRAL_QUALIFY_ON", "property")
    monkeypatch.setenv("REFERRAL_QUALIFY_VALUES", "Qualified, Customer")
    monkeypatch.setenv("REFERRAL_FIELD_MAP", '{"url": "Referral Link"}')
    built = lead_options(Settings())
    assert built.user_types == frozenset({"person_invited", "person_referring"})
    assert built.campaigns == frozenset({12, 14})
    assert built.qualify_values == ("Qualified", "Customer")
    assert dict(built.field_map.sent())["url"] == "Referral Link"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REFERRAL_FIELD_MAP": '{"nickname": "Nick"}'},
            "REFERRAL_FIELD_MAP: unknown referral field 'nickname'",
        ),
        ({"REFERRAL_FIELD_MAP": '{"email": null}'}, "REFERRAL_FIELD_MAP: email cannot be unmapped"),
        ({"REFERRAL_FIELD_MAP": "{nope"}, "REFERRAL_FIELD_MAP: not JSON"),
        ({"REFERRAL_QUALIFY_ON": "property"}, "REFERRAL_QUALIFY_VALUES is empty"),
        (
            {"REFERRAL_QUALIFY_ON": "property", "REFERRAL_QUALIFY_VALUES": " , "},
            "REFERRAL_QUALIFY_VALUES is empty",
        ),
        (
            {
                "REFERRAL_QUALIFY_ON": "property",
                "REFERRAL_QUALIFY_VALUES": "Yes",
                "REFERRAL_QUALIFY_PROPERTY": "Email",
            },
            "REFERRAL_QUALIFY_PROPERTY: .*standard Intercom contact attribute",
        ),
        (
            {
                "REFERRAL_QUALIFY_ON": "property",
                "REFERRAL_QUALIFY_VALUES": "New,Won",
                "REFERRAL_QUALIFY_INITIAL": "new",
            },
            "REFERRAL_QUALIFY_INITIAL: a new lead's value cannot be one that qualifies",
        ),
        ({"REFERRAL_QUALIFY_ON": "sometimes"}, "REFERRAL_QUALIFY_ON"),
        ({"REFERRAL_USER_TYPES": "friends"}, "REFERRAL_USER_TYPES"),
        ({"REFERRAL_CAMPAIGNS": "12,spring"}, "REFERRAL_CAMPAIGNS: 'spring' is not a campaign id"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_naming_it(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSetting, match=message):
        lead_options(Settings())


def test_the_backstop_searches_pending_contacts_that_qualify_now():
    assert backstop_query(options()) == {
        "operator": "AND",
        "value": [
            {"field": "custom_attributes.Referral Status", "operator": "=", "value": "Pending"},
            {"field": "custom_attributes.Lead Status", "operator": "IN", "value": ["Qualified", "Customer"]},
        ],
    }
    assert backstop_query(options(qualify_on="signed_up"))["value"][1] == {
        "field": "role",
        "operator": "=",
        "value": "user",
    }
    assert referral_search(5002) == {
        "field": "custom_attributes.Referral ID",
        "operator": "=",
        "value": "5002",
    }
