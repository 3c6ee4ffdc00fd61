"""The client profile, row by row and rule by rule of docs/integrations/clients.md.

Every expected string is written out by hand; "now" is Jan 22, 2026 11:00 a.m. EST.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest

from sync_worker import integrations
from sync_worker.attributes import build_update
from sync_worker.formatting import parse_utc
from sync_worker.integrations.clients.profile import ClientProfile
from sync_worker.profiles import Profile

NOW = parse_utc("2026-01-22T16:00:00Z")  # Jan 22, 2026 - 11:00 a.m. EST
NOW_SHOWN = "Jan 22, 2026 - 11:00 a.m. EST"


def client(**overrides: Any) -> dict[str, Any]:
    """A full platform record (docs/contracts/platform-api.yaml `Client`), with ``overrides`` applied."""
    record: dict[str, Any] = {
        "id": 131446,
        "email": "sami@example.com",
        "first_name": " Sami ",
        "last_name": "Ruhsuf",
        "phone": " +1 416 555 0100 ",
        "status": "Active",
        "timezone": "America/Vancouver",
        "created_at": "2024-03-01T15:00:00Z",
        "profile_url": "https://app.ruhcare.com/clients/131446",
        "organization": {"id": 1, "name": "Ruh Care Inc.", "currency": "CAD"},
        "care_team": [
            {"name": "Dr. Lee", "role": "therapist", "is_primary": False},
            {"name": "Dr. Ahmed", "role": "therapist", "is_primary": True},
            {"name": "Jo Park", "role": "coordinator", "is_primary": False},
        ],
        "tags": ["Anxiety", "Couples"],
        "group": "Tuesday Group",
        "invoices": [
            {"id": 1, "status": "unpaid", "balance": "100.00", "currency": "CAD"},
            {"id": 2, "status": "unpaid", "balance": "50.00", "currency": "CAD"},
            {"id": 3, "status": "paid", "balance": "80.00", "currency": "CAD"},
            {"id": 4, "status": "void", "balance": "30.00", "currency": "CAD"},
        ],
        "card_on_file": True,
        "appointments": [
            {"id": 1, "start_at": "2025-10-22T15:00:00Z", "status": "occurred"},
            {"id": 2, "start_at": "2026-01-15T20:30:00Z", "status": "late_cancellation"},
            {"id": 3, "start_at": "2026-01-20T14:00:00Z", "status": "cancelled"},
            {"id": 4, "start_at": "2026-01-21T14:00:00Z", "status": "no_show"},
            {"id": 5, "start_at": "2026-02-05T17:00:00Z", "status": "scheduled"},
            {"id": 6, "start_at": "2026-01-29T17:00:00Z", "status": "scheduled"},
            {"id": 7, "start_at": "2026-01-10T17:00:00Z", "status": "scheduled"},
        ],
        "intake_forms_completed": True,
        "linked_accounts": [
            {"client_id": 2, "name": "Sami Ruhsuf", "relationship": "Spouse", "is_primary": False},
            {"client_id": 3, "name": "Mir Batman", "relationship": "Child", "is_primary": False},
        ],
    }
    record.update(overrides)
    return record


def bare(**overrides: Any) -> dict[str, Any]:
    """An account that exists but has nothing for any attribute."""
    record: dict[str, Any] = {
        "id": 131447,
        "email": "sami@example.com",
        "first_name": "",
        "last_name": " ",
        "phone": None,
        "status": "",
        "timezone": None,
        "created_at": "2025-06-30T12:00:00Z",
        "profile_url": None,
        "organization": {"id": 2, "name": "", "currency": "USD"},
        "care_team": [],
        "tags": [],
        "group": None,
        "invoices": [],
        "card_on_file": False,
        "appointments": [],
        "intake_forms_completed": False,
        "linked_accounts": [],
    }
    record.update(overrides)
    return record


@pytest.fixture
def profile() -> ClientProfile:
    return ClientProfile()


def compute(
    profile: ClientProfile, records: list[dict[str, Any]], now: datetime = NOW
) -> dict[str, str | None]:
    return profile.compute(records, now=now, fetched_at=now)


# --- the attributes table -------------------------------------------------------------


def test_the_22_attributes_in_display_order_with_their_default_names(profile):
    assert [(spec.key, spec.default_name, spec.standard_field) for spec in profile.attributes] == [
        ("client_id", "Client ID", None),
        ("name", "Name", "name"),
        ("phone", "Phone Number", None),
        ("profile_link", "Client Profile Link", None),
        ("status", "Client Status", None),
        ("timezone", "Time Zone", None),
        ("client_since", "Client Since", None),
        ("account_exists", "Platform Account Exists", None),
        ("therapists", "Therapist Name", None),
        ("tags", "Tags", None),
        ("group", "Group", None),
        ("unpaid_invoices", "Unpaid Invoices", None),
        ("card_on_file", "Card on File", None),
        ("sessions", "Number of Sessions", None),
        ("last_appointment", "Last Appointment", None),
        ("next_appointment", "Next Appointment", None),
        ("intake_completed", "Intake Forms Completed", None),
        ("sub_org", "Sub Org", None),
        ("multiple_accounts", "Multiple Accounts", None),
        ("linked_accounts", "Linked Accounts", None),
        ("updated_on", "User Data Updated On", None),
        ("data_status", "Data Status", None),
    ]


ONE_ACCOUNT = {
    "client_id": "131446",
    "name": "Sami Ruhsuf",
    "phone": "+1 416 555 0100",
    "profile_link": "https://app.ruhcare.com/clients/131446",
    "status": "Active",
    "timezone": "America/Vancouver",
    "client_since": "Mar 1, 2024",
    "account_exists": "Yes",
    "therapists": "Dr. Ahmed, Dr. Lee, Jo Park",
    "tags": "Anxiety, Couples",
    "group": "Tuesday Group",
    "unpaid_invoices": "Yes, CAD$150 due",
    "card_on_file": "Yes",
    "sessions": "2",
    "last_appointment": "Jan 15, 2026 - 3:30 p.m. EST",
    "next_appointment": "Jan 29, 2026 - 12:00 p.m. EST",
    "intake_completed": "Yes",
    "sub_org": "Ruh Care Inc.",
    "multiple_accounts": "No",
    "linked_accounts": "Sami Ruhsuf (Spouse), Mir Batman (Child)",
    "updated_on": NOW_SHOWN,
    "data_status": "Live",
}

NOTHING_TO_SHOW = {
    "client_id": "131447",
    "name": "-",
    "phone": "-",
    "profile_link": "-",
    "status": "-",
    "timezone": "-",
    "client_since": "Jun 30, 2025",
    "account_exists": "Yes",
    "therapists": "-",
    "tags": "-",
    "group": "-",
    "unpaid_invoices": "No",
    "card_on_file": "No",
    "sessions": "0",
    "last_appointment": "No Appointments",
    "next_appointment": "No Appointments",
    "intake_completed": "No",
    "sub_org": "-",
    "multiple_accounts": "No",
    "linked_accounts": "-",
    "updated_on": NOW_SHOWN,
    "data_status": "Live",
}


@pytest.mark.parametrize(("key", "expected"), list(ONE_ACCOUNT.items()))
def test_one_account_row_by_row(profile, key, expected):
    assert compute(profile, [client()])[key] == expected


@pytest.mark.parametrize(("key", "expected"), list(NOTHING_TO_SHOW.items()))
def test_an_account_with_nothing_to_show_row_by_row(profile, key, expected):
    assert compute(profile, [bare()])[key] == expected


def test_every_key_is_computed_and_nothing_else(profile):
    keys = [spec.key for spec in profile.attributes]
    assert list(compute(profile, [client()])) == keys
    assert list(compute(profile, [])) == keys
    assert list(compute(profile, [client(), bare()])) == keys


def test_missing_optional_fields_read_as_nothing(profile):
    record = bare()
    for optional in ("phone", "timezone", "profile_url", "group", "created_at"):
        record.pop(optional)
    values = compute(profile, [record])
    assert [values[k] for k in ("phone", "timezone", "profile_link", "group", "client_since")] == ["-"] * 5


# --- name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("Sami", "Ruhsuf", "Sami Ruhsuf"),
        ("  Sami  Ann ", " Ruhsuf ", "Sami Ann Ruhsuf"),
        ("Sami", "", "Sami"),
        ("", "Ruhsuf", "Ruhsuf"),
        ("", "", "-"),
        (None, None, "-"),
    ],
)
def test_name_is_first_and_last_with_whitespace_collapsed(profile, first, last, expected):
    assert compute(profile, [client(first_name=first, last_name=last)])["name"] == expected


# --- care team, linked accounts -------------------------------------------------------


@pytest.mark.parametrize(
    ("team", "expected"),
    [
        ([{"name": "A", "is_primary": False}, {"name": "B", "is_primary": False}], "A, B"),
        ([{"name": "A", "is_primary": False}, {"name": "B", "is_primary": True}], "B, A"),
        ([{"name": "A", "is_primary": False}, {"name": "B", "is_primary": False}, {"name": "C", "is_primary": True}],
         "C, A, B"),
        ([{"name": "Solo", "is_primary": True}], "Solo"),
        ([], "-"),
    ],
)  # fmt: skip
def test_therapists_primary_first_then_platform_order(profile, team, expected):
    assert compute(profile, [client(care_team=team)])["therapists"] == expected


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        (
            [
                {"client_id": 2, "name": "Sami Ruhsuf", "relationship": "Spouse", "is_primary": False},
                {"client_id": 3, "name": "Mir Batman", "relationship": "Child", "is_primary": False},
            ],
            "Sami Ruhsuf (Spouse), Mir Batman (Child)",
        ),
        (
            [
                {"client_id": 3, "name": "Mir Batman", "relationship": "Child", "is_primary": False},
                {"client_id": 4, "name": "Ana Ruhsuf", "relationship": "Parent", "is_primary": True},
            ],
            "Ana Ruhsuf (Parent, Primary), Mir Batman (Child)",
        ),
        (
            [{"client_id": 4, "name": "Ana Ruhsuf", "relationship": "", "is_primary": True}],
            "Ana Ruhsuf (Primary)",
        ),
        ([{"client_id": 3, "name": "Mir Batman", "relationship": " ", "is_primary": False}], "Mir Batman"),
        ([], "-"),
    ],
)
def test_linked_accounts(profile, links, expected):
    assert compute(profile, [client(linked_accounts=links)])["linked_accounts"] == expected


# --- money ----------------------------------------------------------------------------


def invoice(balance: str, currency: str | None = "CAD", status: str = "unpaid") -> dict[str, Any]:
    item: dict[str, Any] = {"id": 1, "status": status, "balance": balance}
    if currency is not None:
        item["currency"] = currency
    return item


@pytest.mark.parametrize(
    ("org_currency", "invoices", "expected"),
    [
        ("CAD", [invoice("150.00")], "Yes, CAD$150 due"),
        ("CAD", [invoice("100.25"), invoice("50.25")], "Yes, CAD$150.50 due"),
        ("CAD", [invoice("1000.25"), invoice("250.25")], "Yes, CAD$1,250.50 due"),
        ("CAD", [invoice("0.10"), invoice("0.20")], "Yes, CAD$0.30 due"),
        ("USD", [invoice("200", "USD")], "Yes, USD$200 due"),
        ("CAD", [invoice("20", "USD"), invoice("150", "CAD")], "Yes, CAD$150 + USD$20 due"),
        (
            "CAD",
            [invoice("20", "USD"), invoice("5.5", "AUD"), invoice("150")],
            "Yes, CAD$150 + AUD$5.50 + USD$20 due",
        ),
        (
            "USD",
            [invoice("20", "USD"), invoice("5.5", "AUD"), invoice("150")],
            "Yes, USD$20 + AUD$5.50 + CAD$150 due",
        ),
        ("EUR", [invoice("150", "EUR")], "Yes, EUR 150 due"),
        ("CAD", [invoice("150", "EUR"), invoice("10")], "Yes, CAD$10 + EUR 150 due"),
        ("CAD", [invoice("40", None)], "Yes, CAD$40 due"),  # no currency: the organization's
        ("CAD", [invoice("40", "cad")], "Yes, CAD$40 due"),
        ("CAD", [invoice("0.00")], "No"),
        ("CAD", [invoice("0.004")], "No"),
        ("CAD", [invoice("0"), invoice("20", "USD")], "Yes, USD$20 due"),
        ("CAD", [invoice("150", status="paid"), invoice("30", status="void")], "No"),
        ("CAD", [], "No"),
    ],
)
def test_unpaid_invoices(profile, org_currency, invoices, expected):
    record = client(
        organization={"id": 1, "name": "Ruh Care Inc.", "currency": org_currency}, invoices=invoices
    )
    assert compute(profile, [record])["unpaid_invoices"] == expected


# --- appointments ---------------------------------------------------------------------


def appointment(start: str, status: str) -> dict[str, Any]:
    return {"id": 1, "start_at": start, "status": status}


@pytest.mark.parametrize(
    ("appointments", "sessions", "last", "next_"),
    [
        ([], "0", "No Appointments", "No Appointments"),
        (
            [appointment("2025-10-22T15:00:00Z", "occurred")],
            "1", "Oct 22, 2025 - 11:00 a.m. EDT", "No Appointments",
        ),
        (
            [appointment("2026-01-10T15:00:00Z", "late_cancellation"), appointment("2025-12-01T15:00:00Z", "occurred")],
            "2", "Jan 10, 2026 - 10:00 a.m. EST", "No Appointments",
        ),
        # cancelled and no-show are neither sessions nor last appointments
        (
            [appointment("2026-01-20T15:00:00Z", "cancelled"), appointment("2026-01-21T15:00:00Z", "no_show")],
            "0", "No Appointments", "No Appointments",
        ),
        # a scheduled appointment in the past is not the next one, nor a session
        ([appointment("2026-01-21T15:00:00Z", "scheduled")], "0", "No Appointments", "No Appointments"),
        # the earliest future scheduled one
        (
            [appointment("2026-03-01T17:00:00Z", "scheduled"), appointment("2026-02-01T17:00:00Z", "scheduled")],
            "0", "No Appointments", "Feb 1, 2026 - 12:00 p.m. EST",
        ),
        # a session recorded with a future start counts as a session but is not the last appointment
        (
            [appointment("2026-02-01T17:00:00Z", "occurred"), appointment("2026-01-01T05:00:00Z", "occurred")],
            "2", "Jan 1, 2026 - 12:00 a.m. EST", "No Appointments",
        ),
        # at exactly "now": not in the future, so the last and not the next
        (
            [appointment("2026-01-22T16:00:00Z", "occurred"), appointment("2026-01-22T16:00:00Z", "scheduled")],
            "1", NOW_SHOWN, "No Appointments",
        ),
        # one second after now is the future
        ([appointment("2026-01-22T16:00:01Z", "scheduled")], "0", "No Appointments", NOW_SHOWN),
        # next appointment after the spring DST change shows EDT
        ([appointment("2026-03-09T15:00:00Z", "scheduled")], "0", "No Appointments", "Mar 9, 2026 - 11:00 a.m. EDT"),
    ],
)  # fmt: skip
def test_sessions_last_and_next_appointment(profile, appointments, sessions, last, next_):
    values = compute(profile, [client(appointments=appointments)])
    assert (values["sessions"], values["last_appointment"], values["next_appointment"]) == (
        sessions,
        last,
        next_,
    )


def test_the_clock_decides_past_and_future(profile):
    record = client(appointments=[appointment("2026-02-01T17:00:00Z", "scheduled")])
    before = compute(profile, [record], now=parse_utc("2026-01-31T00:00:00Z"))
    after = compute(profile, [record], now=parse_utc("2026-02-02T00:00:00Z"))
    assert before["next_appointment"] == "Feb 1, 2026 - 12:00 p.m. EST"
    assert after["next_appointment"] == "No Appointments"


# --- date-time in the display zone ----------------------------------------------------


def test_updated_on_is_the_fetch_time(profile):
    values = profile.compute([client()], now=NOW, fetched_at=parse_utc("2025-07-01T04:00:00Z"))
    assert values["updated_on"] == "Jul 1, 2025 - 12:00 a.m. EDT"


def test_the_display_zone_is_configurable():
    vancouver = ClientProfile(display_timezone="America/Vancouver")
    values = compute(vancouver, [client(created_at="2024-03-02T03:00:00Z")])
    assert values["updated_on"] == "Jan 22, 2026 - 8:00 a.m. PST"
    assert values["client_since"] == "Mar 1, 2024"
    assert values["next_appointment"] == "Jan 29, 2026 - 9:00 a.m. PST"
    assert (
        compute(ClientProfile(), [client(created_at="2024-03-02T03:00:00Z")])["client_since"] == "Mar 1, 2024"
    )
    assert (
        compute(ClientProfile(), [client(created_at="2024-03-02T05:00:00Z")])["client_since"] == "Mar 2, 2024"
    )


# --- several accounts -----------------------------------------------------------------


def second_account() -> dict[str, Any]:
    return client(
        id=131447,
        first_name="Sami",
        last_name="Ruhsuf",
        phone="+1 647 555 0199",
        status="Inactive",
        timezone="America/Toronto",
        created_at="2025-11-02T06:30:00Z",
        profile_url="https://app.ruhcare.com/clients/131447",
        organization={"id": 2, "name": "Ruh Corp.", "currency": "USD"},
        care_team=[{"name": "Dr. Kim", "is_primary": True}],
        tags=[],
        group=None,
        invoices=[invoice("20", "USD"), invoice("10", "CAD")],
        card_on_file=False,
        appointments=[appointment("2026-02-02T14:15:00Z", "scheduled")],
        intake_forms_completed=False,
        linked_accounts=[],
    )


SEVERAL_ACCOUNTS = {
    "client_id": "131446 | 131447",
    "name": "Sami Ruhsuf | Sami Ruhsuf",  # duplicates kept: position i is account i
    "phone": "+1 416 555 0100 | +1 647 555 0199",
    "profile_link": "https://app.ruhcare.com/clients/131446 | https://app.ruhcare.com/clients/131447",
    "status": "Active | Inactive",
    "timezone": "America/Vancouver | America/Toronto",
    "client_since": "Mar 1, 2024 | Nov 2, 2025",
    "account_exists": "Yes",
    "therapists": "Dr. Ahmed, Dr. Lee, Jo Park | Dr. Kim",
    "tags": "Anxiety, Couples | -",
    "group": "Tuesday Group | -",
    "unpaid_invoices": "Yes, CAD$150 due | Yes, USD$20 + CAD$10 due",
    "card_on_file": "Yes | No",
    "sessions": "2 | 0",
    "last_appointment": "Jan 15, 2026 - 3:30 p.m. EST | No Appointments",
    "next_appointment": "Jan 29, 2026 - 12:00 p.m. EST | Feb 2, 2026 - 9:15 a.m. EST",
    "intake_completed": "Yes | No",
    "sub_org": "Ruh Care Inc. | Ruh Corp.",
    "multiple_accounts": "Yes",
    "linked_accounts": "Sami Ruhsuf (Spouse), Mir Batman (Child) | -",
    "updated_on": NOW_SHOWN,
    "data_status": "Live",
}


@pytest.mark.parametrize(("key", "expected"), list(SEVERAL_ACCOUNTS.items()))
def test_several_accounts_are_ordered_by_id_and_joined_position_by_position(profile, key, expected):
    # given out of order: the platform's order must not matter
    assert compute(profile, [second_account(), client()])[key] == expected


def test_ids_order_numerically_not_as_text(profile):
    values = compute(profile, [client(id=1000), client(id=999, first_name="Mir", last_name="Batman")])
    assert values["client_id"] == "999 | 1000"
    assert values["name"] == "Mir Batman | Sami Ruhsuf"


def test_three_accounts_with_duplicate_values(profile):
    values = compute(profile, [client(id=3), client(id=1), client(id=2)])
    assert values["client_id"] == "1 | 2 | 3"
    assert values["sub_org"] == "Ruh Care Inc. | Ruh Care Inc. | Ruh Care Inc."
    assert values["multiple_accounts"] == "Yes"


def test_compute_does_not_change_the_records(profile):
    records = [second_account(), client()]
    before = copy.deepcopy(records)
    compute(profile, records)
    assert records == before


# --- no account -----------------------------------------------------------------------


def test_no_account(profile):
    fetched = parse_utc("2025-07-01T16:45:00Z")
    assert profile.compute([], now=NOW, fetched_at=fetched) == {
        "client_id": "-",
        "name": None,  # the contact's own name in Intercom is left as it is
        "phone": "-",
        "profile_link": "-",
        "status": "-",
        "timezone": "-",
        "client_since": "-",
        "account_exists": "No",
        "therapists": "-",
        "tags": "-",
        "group": "-",
        "unpaid_invoices": "-",
        "card_on_file": "-",
        "sessions": "-",
        "last_appointment": "-",
        "next_appointment": "-",
        "intake_completed": "-",
        "sub_org": "-",
        "multiple_accounts": "No",
        "linked_accounts": "-",
        "updated_on": "Jul 1, 2025 - 12:45 p.m. EDT",
        "data_status": "Live",
    }


def test_no_account_overwrites_every_custom_attribute_and_leaves_the_name(profile):
    custom, standard = build_update(compute(profile, []), profile.attributes, {})
    assert standard == {}
    assert len(custom) == 21
    assert custom["Platform Account Exists"] == "No"
    assert custom["Client ID"] == "-"
    assert "Name" not in custom


def test_no_account_with_name_mapped_to_a_custom_attribute_writes_a_dash(profile):
    custom, standard = build_update(compute(profile, []), profile.attributes, {"name": "Client Name"})
    assert standard == {}
    assert custom["Client Name"] == "-"


def test_one_account_writes_the_name_to_the_standard_field(profile):
    custom, standard = build_update(compute(profile, [client()]), profile.attributes, {})
    assert standard == {"name": "Sami Ruhsuf"}
    assert custom["Client ID"] == "131446"
    assert custom["Unpaid Invoices"] == "Yes, CAD$150 due"


def test_long_joined_values_are_truncated_when_written(profile):
    team = [{"name": f"Therapist Number {i:02d}", "is_primary": False} for i in range(20)]
    values = compute(profile, [client(care_team=team)])
    assert len(values["therapists"]) > 255
    custom, _ = build_update(values, profile.attributes, {})
    assert len(custom["Therapist Name"]) == 255
    assert custom["Therapist Name"] == values["therapists"][:254] + "…"


# --- staleness ------------------------------------------------------------------------


def test_stale_with_cached_values_keeps_them_and_flags_them(profile):
    fetched = parse_utc("2026-01-20T14:00:00Z")
    cached = profile.compute([client()], now=fetched, fetched_at=fetched)
    stale = profile.stale(cached, unavailable_since=parse_utc("2026-01-22T15:42:00Z"))
    assert stale["data_status"] == "Stale - platform unavailable since Jan 22, 2026 - 10:42 a.m. EST"
    assert stale["updated_on"] == "Jan 20, 2026 - 9:00 a.m. EST"  # the time those values were fetched
    assert {k: v for k, v in stale.items() if k != "data_status"} == {
        k: v for k, v in cached.items() if k != "data_status"
    }
    assert stale["account_exists"] == "Yes"


def test_stale_in_summer_shows_edt(profile):
    stale = profile.stale(None, unavailable_since=parse_utc("2025-07-01T13:15:00Z"))
    assert stale == {"data_status": "Stale - platform unavailable since Jul 1, 2025 - 9:15 a.m. EDT"}


def test_stale_without_cached_values_writes_only_data_status(profile):
    stale = profile.stale(None, unavailable_since=NOW)
    assert stale == {"data_status": f"Stale - platform unavailable since {NOW_SHOWN}"}
    assert "account_exists" not in stale  # a failed read never turns into "No"
    assert profile.stale({}, unavailable_since=NOW) == stale


def test_stale_over_a_cached_no_account_keeps_the_name_untouched(profile):
    cached = compute(profile, [])
    stale = profile.stale(cached, unavailable_since=NOW)
    assert stale["name"] is None
    custom, standard = build_update(stale, profile.attributes, {})
    assert standard == {}
    assert custom["Data Status"] == f"Stale - platform unavailable since {NOW_SHOWN}"


def test_stale_ignores_cached_keys_the_profile_no_longer_has(profile):
    stale = profile.stale({"client_id": "131446", "insurance": "Blue Cross"}, unavailable_since=NOW)
    assert stale == {"client_id": "131446", "data_status": f"Stale - platform unavailable since {NOW_SHOWN}"}


def test_stale_does_not_change_the_cached_mapping(profile):
    cached = compute(profile, [client()])
    before = dict(cached)
    profile.stale(cached, unavailable_since=NOW)
    assert cached == before


# --- registry -------------------------------------------------------------------------


def test_the_clients_integration_builds_the_client_profile_with_options():
    profile = integrations.get("clients").profile(display_timezone="America/Vancouver")
    assert isinstance(profile, ClientProfile)
    assert isinstance(profile, Profile)
    assert profile.name == "clients" and "clients" in integrations.REGISTRY
    assert compute(profile, [])["updated_on"] == "Jan 22, 2026 - 8:00 a.m. PST"


def test_the_registry_refuses_unknown_names():
    with pytest.raises(integrations.UnknownIntegration, match=r"'dealers'.*clients"):
        integrations.get("dealers")


def test_an_unknown_display_zone_fails_at_construction():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        ClientProfile(display_timezone="Mars/Olympus")


def test_updated_on_is_volatile_for_change_detection(profile):
    assert profile.volatile_keys == frozenset({"updated_on"})
