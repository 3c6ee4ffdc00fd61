"""What a referral user writes on its lead: values by the field map, written out by hand."""

from __future__ import annotations

from sync_worker.integrations.referral_leads.fieldmap import parse_field_map
from sync_worker.integrations.referral_leads.lead import (
    fingerprint,
    initial_values,
    lead_update,
    referral_values,
)
from tests.unit.referral_options import options

USER = {
    "id": 5001,
    "campaign_id": 12,
    "referrer_id": 4000,
    "code": "AB12CD",
    "url": "https://refer.example.com/AB12CD",
    "first_name": "Maya",
    "email": " Maya.Lind@Example.com ",
    "source": "Referred",
    "type": "person_invited",
    "signed_up_at": "2026-01-22T16:00:00Z",
    "qualified_at": None,
    "meta": [{"field": "Company", "value": "Lind & Co"}, {"field": "Seats", "value": 12}],
}
REFERRER = {"id": 4000, "first_name": "Omar", "email": "omar@example.com"}


def _values():
    return referral_values(USER, referrer=REFERRER, campaign_name="Spring Friends", zone="America/Toronto")


def test_every_field_as_text():
    assert _values() == {
        "first_name": "Maya",
        "email": "maya.lind@example.com",
        "code": "AB12CD",
        "url": "https://refer.example.com/AB12CD",
        "source": "Referred",
        "type": "person_invited",
        "campaign_id": "12",
        "campaign_name": "Spring Friends",
        "referrer_name": "Omar",
        "referrer_email": "omar@example.com",
        "signed_up_at": "Jan 22, 2026 - 11:00 a.m. EST",
        "meta.Company": "Lind & Co",
        "meta.Seats": "12",
    }


def test_the_default_map_writes_name_email_and_four_attributes_plus_ours():
    update = lead_update(_values(), parse_field_map(None), referral_id=5001, reported=False)
    assert update.standard == {"name": "Maya", "email": "maya.lind@example.com"}
    assert update.custom == {
        "Referral Code": "AB12CD",
        "Referral Campaign": "Spring Friends",
        "Referred By": "Omar",
        "Referred At": "Jan 22, 2026 - 11:00 a.m. EST",
        "Referral ID": "5001",
        "Referral Status": "Pending",
    }


def test_a_field_mapped_to_null_writes_nothing_of_it_and_meta_fields_are_sent_when_mapped():
    field_map = parse_field_map({"referrer_name": None, "first_name": None, "meta.Company": "Company"})
    update = lead_update(_values(), field_map, referral_id=5001, reported=True)
    assert update.standard == {"email": "maya.lind@example.com"}
    assert "Referred By" not in update.custom and "Omar" not in update.custom.values()
    assert update.custom["Company"] == "Lind & Co"
    assert update.custom["Referral Status"] == "Qualified"


def test_a_direct_user_has_no_referrer_and_a_missing_value_is_not_written():
    direct = {**USER, "referrer_id": None, "url": None, "type": "person_referring"}
    values = referral_values(direct, referrer=None, campaign_name=None, zone="America/Toronto")
    update = lead_update(values, parse_field_map({"url": "Referral Link"}), referral_id=5001, reported=False)
    assert "Referred By" not in update.custom
    assert "Referral Campaign" not in update.custom
    assert "Referral Link" not in update.custom


def test_summer_time_and_long_values():
    summer = {**USER, "signed_up_at": "2026-07-01T04:30:00Z", "first_name": "x" * 300}
    values = referral_values(summer, referrer=None, campaign_name=None, zone="America/Toronto")
    assert values["signed_up_at"] == "Jul 1, 2026 - 12:30 a.m. EDT"
    update = lead_update(values, parse_field_map(None), referral_id=1, reported=False)
    assert len(update.standard["name"]) == 255 and update.standard["name"].endswith("…")


def test_the_initial_value_only_for_a_contact_without_one_and_only_with_the_property_method():
    assert initial_values(options(), None) == {"Lead Status": "New"}
    assert initial_values(options(), {"Lead Status": ""}) == {"Lead Status": "New"}
    assert initial_values(options(), {"Lead Status": "Contacted"}) == {}
    assert initial_values(options(qualify_on="signed_up"), None) == {}


def test_the_fingerprint_follows_the_values_not_their_order():
    one = lead_update(_values(), parse_field_map(None), referral_id=5001, reported=False)
    same = lead_update(
        dict(reversed(list(_values().items()))), parse_field_map(None), referral_id=5001, reported=False
    )
    qualified = lead_update(_values(), parse_field_map(None), referral_id=5001, reported=True)
    assert fingerprint(one) == fingerprint(same)
    assert fingerprint(one) != fingerprint(qualified)
