"""Computing a contact's values: any malformed platform value is that contact's platform_data_invalid.

Issue 12 item 5: a numeric ``created_at`` (AttributeError) or ``balance: "1e30"``
(decimal.InvalidOperation) escaped the old catch of KeyError, ValueError and TypeError.
Here every field of a contract record, nested ones included, gets every JSON type in turn: the
answer is values, or PlatformDataError naming the field, never another exception, never a value.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from sync_worker.compute import PlatformDataError, compute_values
from sync_worker.devtools.sandbox.dataset import load_sample
from sync_worker.errors import PermanentError
from sync_worker.formatting import parse_utc
from sync_worker.integrations.clients.profile import ClientProfile
from sync_worker.platform_records import record_problems

NOW = parse_utc("2026-01-22T16:00:00Z")
PROFILE = ClientProfile("America/Toronto")
#: One value of every JSON type, and strings that look like what a field holds but are not.
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    17,
    -1.5,
    1e30,
    "",
    "x",
    "1e30",
    "NaN",
    "-Infinity",
    "9" * 40,
    "2024-03-01T15:00:00",
    "2024-13-45T99:00:00Z",
    [],
    [1, "a", None],
    {},
    {"id": 1},
)


def sample_record() -> dict[str, Any]:
    """A sample client with at least one item in every nested array."""
    return next(
        copy.deepcopy(record)
        for record in load_sample()
        if all(record[name] for name in ("care_team", "invoices", "appointments", "linked_accounts"))
        and any(invoice["status"] == "unpaid" for invoice in record["invoices"])
    )


def paths(record: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Every field of the record: top-level keys, the organization's, each first nested item's."""
    for key, value in record.items():
        yield (key,)
        if isinstance(value, dict):
            yield from ((key, inner) for inner in value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield (key, 0)
            yield from ((key, 0, inner) for inner in value[0])


def with_value(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


CASES = [
    (path, value)
    for path in paths(sample_record())
    for value in ODD_VALUES
    + ((sample_record()["invoices"][0]["status"], "unpaid") if path[-1] == "status" else ())
]


@pytest.mark.parametrize(
    ("path", "value"), CASES, ids=[f"{'.'.join(map(str, p))}={v!r}"[:60] for p, v in CASES]
)
def test_any_value_in_any_field_computes_or_is_platform_data_invalid(path, value):
    record = with_value(sample_record(), path, value)
    try:
        values = compute_values(PROFILE, [record], now=NOW)
    except PlatformDataError as error:
        assert error.code == "platform_data_invalid"
        assert isinstance(error, PermanentError)
        assert str(path[-1]) in error.message or "records[0]" in error.message
        if isinstance(value, str) and len(value) > 3:
            assert value not in error.message  # fields and positions, never values
        return
    assert record_problems(record) == []  # computed: the check had nothing against it
    assert all(value is None or isinstance(value, str) for value in values.values())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(created_at=1709305200), "created_at"),  # AttributeError in the old code
        (lambda r: r["invoices"][0].update(balance="1e30", status="unpaid"), "invoices[0].balance"),
        (lambda r: r["invoices"][0].update(balance="9" * 40, status="unpaid"), "invoices[0].balance"),
        (lambda r: r["appointments"][0].update(start_at=20250101), "appointments[0].start_at"),
        (lambda r: r.update(id="131446"), "id"),
        (lambda r: r.update(tags="vip"), "tags"),
        (lambda r: r["care_team"].insert(0, "Dr. Lee"), "care_team[0]"),
    ],
)
def test_the_issues_values_are_platform_data_invalid_naming_the_field(change, field):
    record = sample_record()
    change(record)
    with pytest.raises(PlatformDataError) as raised:
        compute_values(PROFILE, [sample_record(), record], now=NOW)
    assert f"records[1]: {field}" in raised.value.message
    assert record["email"] not in raised.value.message


def test_a_record_that_is_not_an_object_is_platform_data_invalid():
    with pytest.raises(PlatformDataError, match=r"records\[0\]: a client record is a list"):
        compute_values(PROFILE, [[]], now=NOW)


def test_the_profiles_own_failure_is_platform_data_invalid_without_its_message():
    class Broken(ClientProfile):
        def compute(self, records, *, now, fetched_at):
            raise ZeroDivisionError("sami@example.com owes 1e30")

    with pytest.raises(PlatformDataError) as raised:
        compute_values(Broken(), [sample_record()], now=NOW)
    assert "ZeroDivisionError" in raised.value.message
    assert "sami@example.com" not in raised.value.message


def test_a_plain_sample_record_computes_live_values():
    values = compute_values(PROFILE, [sample_record()], now=NOW)
    assert values["data_status"] == "Live" and values["account_exists"] == "Yes"
