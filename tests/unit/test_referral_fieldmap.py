"""REFERRAL_FIELD_MAP: the defaults, what a map changes, and every refusal naming its field."""

from __future__ import annotations

import pytest

from sync_worker.integrations.referral_leads.fieldmap import FieldMapError, parse_field_map


def test_the_defaults_send_name_email_code_referrer_campaign_and_date():
    field_map = parse_field_map(None)
    assert dict(field_map.sent()) == {
        "first_name": "name",
        "email": "email",
        "code": "Referral Code",
        "campaign_name": "Referral Campaign",
        "referrer_name": "Referred By",
        "signed_up_at": "Referred At",
    }
    assert field_map.custom_names() == ("Referral Code", "Referral Campaign", "Referred By", "Referred At")


def test_a_map_overrides_some_fields_and_keeps_the_other_defaults():
    field_map = parse_field_map(
        '{"code": null, "url": "Referral Link", "first_name": "Referred Name", "meta.Company": "Company"}'
    )
    sent = dict(field_map.sent())
    assert "code" not in sent
    assert sent["url"] == "Referral Link"
    assert sent["first_name"] == "Referred Name"
    assert sent["meta.Company"] == "Company"
    assert sent["referrer_name"] == "Referred By"
    assert field_map.target("code") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"nickname": "Nick"}', r"unknown referral field 'nickname'"),
        ('{"meta.": "Empty"}', r"unknown referral field 'meta\.'"),
        ('{"email": null}', r"email cannot be unmapped"),
        ('{"email": "Work Email"}', r"email always goes to the standard email field"),
        ('{"code": "email"}', r"code: only email goes to the standard email field"),
        ('{"code": "Referral ID"}', r"code: 'Referral ID' is written by the service itself"),
        ('{"code": "Bad.Name"}', r"code: .*does not allow \."),
        ('{"code": "Referred By"}', r"referrer_name: 'Referred By' is also the target of code"),
        ('{"code": 5}', r"code: the target must be an attribute name or null"),
        ("[1, 2]", r"must be a JSON object"),
        ("{nope", r"not JSON"),
    ],
)
def test_a_map_that_cannot_work_is_refused_naming_the_field(raw, message):
    with pytest.raises(FieldMapError, match=message):
        parse_field_map(raw)


def test_the_qualifying_property_cannot_be_a_fields_target():
    with pytest.raises(
        FieldMapError, match=r"code: 'lead status' is also the target of the qualifying property"
    ):
        parse_field_map({"code": "lead status"}, reserved=("Lead Status",))
