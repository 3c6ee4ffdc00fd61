"""The sample dataset is valid against the platform contract and exercises every attribute rule."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator

from sync_worker.devtools.sandbox.dataset import (
    InvalidRecord,
    load,
    load_sample,
    record_problems,
    synthetic,
    synthetic_index,
    synthetic_record,
    validate_record,
)
from tests.fixtures.platform_contract import contract_validator, schema_errors

PAST = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
STATUSES = {"scheduled", "occurred", "late_cancellation", "cancelled", "no_show"}


@pytest.fixture(scope="module")
def client_validator() -> OAS31Validator:
    return contract_validator("Client")


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    return load_sample()


def by_id(sample: list[dict[str, Any]], client_id: int) -> dict[str, Any]:
    return next(record for record in sample if record["id"] == client_id)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def unpaid_totals(record: dict[str, Any]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in record["invoices"]:
        if invoice["status"] == "unpaid":
            totals[invoice["currency"]] += Decimal(invoice["balance"])
    return dict(totals)


# --- validity -----------------------------------------------------------------------------------


def test_every_sample_record_validates_against_the_contract(sample, client_validator):
    assert len(sample) >= 20
    for record in sample:
        assert schema_errors(client_validator, record) == [], record["id"]
        assert record_problems(record) == [], record["id"]
    assert len({record["id"] for record in sample}) == len(sample)


def test_load_reads_the_file_and_refuses_broken_ones(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('[{"id": 1}]', encoding="utf-8")
    with pytest.raises(InvalidRecord) as raised:
        load(good)
    assert "missing required field email" in raised.value.problems

    duplicate = tmp_path / "dup.json"
    duplicate.write_text(
        __import__("json").dumps([synthetic_record(1), synthetic_record(1)]), encoding="utf-8"
    )
    with pytest.raises(InvalidRecord, match="appears twice"):
        load(duplicate)


def _break(record: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    broken = copy.deepcopy(record)
    change(broken)
    return broken


BREAKAGES = {
    "missing invoices": lambda r: r.pop("invoices"),
    "id as string": lambda r: r.update(id="131446"),
    "boolean id": lambda r: r.update(id=True),
    "bad appointment status": lambda r: r["appointments"].append(
        {"id": 1, "start_at": "2025-01-01T00:00:00Z", "status": "done"}
    ),
    "bad invoice status": lambda r: r["invoices"].append(
        {"id": 1, "status": "open", "balance": "1.00", "currency": "CAD"}
    ),
    "org without currency": lambda r: r["organization"].pop("currency"),
    "care team member without is_primary": lambda r: r["care_team"].append({"name": "X"}),
    "tags not strings": lambda r: r.update(tags=[1]),
    "phone as number": lambda r: r.update(phone=4165550100),
    "card_on_file as string": lambda r: r.update(card_on_file="yes"),
    "created_at not a time": lambda r: r.update(created_at="March 1"),
    "linked account without relationship": lambda r: r["linked_accounts"].append(
        {"client_id": 1, "name": "X", "is_primary": False}
    ),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_validate_record_refuses_what_the_schema_refuses(sample, client_validator, name):
    broken = _break(by_id(sample, 131446), BREAKAGES[name])
    assert schema_errors(client_validator, broken) != []
    with pytest.raises(InvalidRecord):
        validate_record(broken)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(created_at="2025-01-01T10:00:00+02:00"),  # the contract says UTC with Z
        lambda r: r["invoices"].append({"id": 1, "status": "unpaid", "balance": "12,50", "currency": "CAD"}),
        lambda r: r.update(profile_url="not a url"),
    ],
)
def test_validate_record_enforces_the_contracts_prose_rules(sample, change):
    assert record_problems(_break(by_id(sample, 131446), change)) != []


# --- synthetic clients ------------------------------------------------------------------------------


def test_synthetic_clients_are_valid_deterministic_and_lazy(client_validator):
    generated = synthetic(10**9)
    assert iter(generated) is generated  # a generator: nothing is built up front
    first = [next(generated) for _ in range(300)]
    for i, record in enumerate(first):
        assert record["email"] == f"client{i}@example.com"
        assert schema_errors(client_validator, record) == [], i
        assert record == synthetic_record(i)
    assert list(synthetic(3, seed=1)) != first[:3]
    assert synthetic_index(" Client12@EXAMPLE.com ") == 12
    assert synthetic_index("client012@example.com") is None
    assert synthetic_index("someone@example.com") is None


# --- the rules the sample exercises --------------------------------------------------------------------


def test_one_email_several_accounts_in_different_orgs_out_of_id_order(sample):
    accounts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in sample:
        accounts[record["email"].strip().lower()].append(record)
    shared = {email: records for email, records in accounts.items() if len(records) > 1}
    assert any(len({r["organization"]["id"] for r in records}) >= 2 for records in shared.values())
    assert any(len({r["organization"]["id"] for r in records}) == 1 for records in shared.values())
    assert any([r["id"] for r in records] != sorted(r["id"] for r in records) for records in shared.values())
    assert any(len({r["email"] for r in records}) > 1 for records in shared.values())  # stored in two cases
    assert "no.account@example.com" not in accounts


def test_currencies_and_unpaid_invoices(sample):
    assert {r["organization"]["currency"] for r in sample} >= {"CAD", "USD", "EUR", "AUD"}
    assert {i["currency"] for r in sample for i in r["invoices"] if i["status"] == "unpaid"} >= {
        "CAD",
        "USD",
        "EUR",
        "AUD",
    }
    two_currencies = [r for r in sample if len(unpaid_totals(r)) >= 2]
    assert any(sum(i["status"] == "unpaid" for i in r["invoices"]) >= 3 for r in two_currencies)
    # an organisation whose currency is not the first by code among its unpaid ones
    assert any(min(unpaid_totals(r)) != r["organization"]["currency"] for r in two_currencies)


def test_amounts(sample):
    totals = [total for r in sample for total in unpaid_totals(r).values()]
    assert any(total >= 1000 and total % 1 != 0 for total in totals)  # thousands and cents
    assert any(total > 0 and total % 1 == 0 for total in totals)  # whole
    assert any(total == 0 for total in totals)  # unpaid, but nothing due
    balances = {i["balance"] for r in sample for i in r["invoices"]}
    assert any("." not in b for b in balances) and any(
        len(b.split(".")[-1]) == 1 for b in balances if "." in b
    )
    only_settled = [
        r for r in sample if r["invoices"] and all(i["status"] in ("paid", "void") for i in r["invoices"])
    ]
    assert any({i["status"] for i in r["invoices"]} == {"paid", "void"} for r in only_settled)
    assert any(r["invoices"] == [] for r in sample)


def test_care_team_tags_group_and_nulls(sample):
    assert any(
        len(r["care_team"]) >= 2
        and not r["care_team"][0]["is_primary"]
        and any(m["is_primary"] for m in r["care_team"])
        for r in sample
    )
    assert any(r["care_team"] == [] for r in sample)
    assert any(len(r["tags"]) >= 2 for r in sample) and any(r["tags"] == [] for r in sample)
    assert any(r.get("group") for r in sample)
    assert any("group" in r and r["group"] is None for r in sample)
    for field in ("phone", "timezone", "profile_url", "group"):
        assert any(field in r and r[field] is None for r in sample), field
        assert any(field not in r for r in sample), field
    assert {r["card_on_file"] for r in sample} == {True, False}
    assert {r["intake_forms_completed"] for r in sample} == {True, False}
    assert len({r["status"] for r in sample}) >= 4


def test_appointments_every_status_past_and_future_with_fixed_dates(sample):
    seen_past, seen_future = set(), set()
    for record in sample:
        for appointment in record["appointments"]:
            start = when(appointment["start_at"])
            if start >= FUTURE:
                seen_future.add(appointment["status"])
            else:
                assert PAST[0] <= start < PAST[1], appointment
                seen_past.add(appointment["status"])
    assert seen_past == STATUSES and seen_future == STATUSES
    starts = {a["start_at"] for r in sample for a in r["appointments"]}
    assert {
        "2025-03-09T06:59:00Z",
        "2025-03-09T07:00:00Z",
        "2025-11-02T05:30:00Z",
        "2025-11-02T06:30:00Z",
    } <= starts
    assert any(r["appointments"] == [] for r in sample)
    assert any(
        r["appointments"] and all(a["status"] in ("cancelled", "no_show") for a in r["appointments"])
        for r in sample
    )
    unsorted = [
        r
        for r in sample
        if [a["start_at"] for a in r["appointments"]] != sorted(a["start_at"] for a in r["appointments"])
    ]
    assert unsorted  # the profile must sort, not trust the platform's order


def test_linked_accounts_and_values_longer_than_255(sample):
    with_primary = [r for r in sample if any(a["is_primary"] for a in r["linked_accounts"])]
    assert any(not r["linked_accounts"][0]["is_primary"] for r in with_primary)
    assert any(len(", ".join(r["tags"])) > 255 for r in sample)
    assert any(
        len(", ".join(f"{a['name']} ({a['relationship']})" for a in r["linked_accounts"])) > 255
        for r in sample
    )


def test_emails_and_whitespace(sample):
    emails = [r["email"] for r in sample]
    assert all(e.strip().lower().endswith(("@example.com", "@example.org")) for e in emails)
    assert any(e != e.lower() and e == e.strip() for e in emails)  # mixed case
    assert any(e != e.strip() for e in emails)  # leading / trailing spaces
    assert any(r.get("phone") and r["phone"] != r["phone"].strip() for r in sample)
    assert any("  " in f"{r['first_name']} {r['last_name']}".strip() for r in sample)


def test_created_at_that_changes_date_in_the_display_zone(sample):
    # 04:30 UTC is still the previous day in Toronto (UTC-5): Feb 29, 2024
    assert any(r["created_at"] == "2024-03-01T04:30:00Z" for r in sample)
