"""The client profile: what one client sync writes onto one Intercom contact.

Guarantees (``docs/integrations/clients.md``, pure: records, clock and zone passed in):
- :attr:`ClientProfile.attributes` lists the 22 attributes in display order
  with their default Intercom names; ``name`` goes to the contact's standard
  ``name`` field;
- :meth:`ClientProfile.compute` gives every key a value: accounts are ordered
  by ``id`` and each per-account value is joined with `` | `` position by
  position (duplicates kept); ``Platform Account Exists``, ``Multiple
  Accounts``, ``User Data Updated On`` and ``Data Status`` stay single;
  with no account every other value is ``-`` except ``name``, which is None
  (the contact's own name is left as it is);
- appointments are "past" when their start is not after ``now`` and "future"
  when after it; money totals are Decimal per currency, the organization's
  currency first;
- :meth:`ClientProfile.stale` returns the last known values unchanged but for
  ``Data Status = Stale - platform unavailable since <date-time>`` (only that
  value when nothing is known); it never invents ``Platform Account Exists = No``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sync_worker.formatting import (
    format_date,
    format_datetime,
    format_money,
    get_zone,
    join_list,
    parse_utc,
    round_cents,
)
from sync_worker.platform_records import record_problems
from sync_worker.profiles.base import AttributeSpec

Record = Mapping[str, Any]

NONE = "-"
YES = "Yes"
NO = "No"
NO_APPOINTMENTS = "No Appointments"
LIVE = "Live"
ACCOUNT_SEPARATOR = " | "
COUNTED_STATUSES = frozenset({"occurred", "late_cancellation"})
UPCOMING_STATUS = "scheduled"

ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec("client_id", "Client ID"),
    AttributeSpec("name", "Name", standard_field="name", custom_fallback=NONE),
    AttributeSpec("phone", "Phone Number"),
    AttributeSpec("profile_link", "Client Profile Link"),
    AttributeSpec("status", "Client Status"),
    AttributeSpec("timezone", "Time Zone"),
    AttributeSpec("client_since", "Client Since"),
    AttributeSpec("account_exists", "Platform Account Exists"),
    AttributeSpec("therapists", "Therapist Name"),
    AttributeSpec("tags", "Tags"),
    AttributeSpec("group", "Group"),
    AttributeSpec("unpaid_invoices", "Unpaid Invoices"),
    AttributeSpec("card_on_file", "Card on File"),
    AttributeSpec("sessions", "Number of Sessions"),
    AttributeSpec("last_appointment", "Last Appointment"),
    AttributeSpec("next_appointment", "Next Appointment"),
    AttributeSpec("intake_completed", "Intake Forms Completed"),
    AttributeSpec("sub_org", "Sub Org"),
    AttributeSpec("multiple_accounts", "Multiple Accounts"),
    AttributeSpec("linked_accounts", "Linked Accounts"),
    AttributeSpec("updated_on", "User Data Updated On"),
    AttributeSpec("data_status", "Data Status"),
)

#: Values that describe the whole email rather than one account: never joined with ``|``.
SINGLE_KEYS = frozenset({"account_exists", "multiple_accounts", "updated_on", "data_status"})


# --- per-account values (one platform record -> one display string) -------------------


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _or_none(value: Any) -> str:
    return _text(value) or NONE


def _yes_no(value: Any) -> str:
    return YES if value is True else NO


def full_name(record: Record) -> str:
    """``first_name + " " + last_name`` with whitespace collapsed."""
    return _or_none(" ".join(f"{_text(record.get('first_name'))} {_text(record.get('last_name'))}".split()))


def therapists(record: Record) -> str:
    team = [member for member in record.get("care_team") or () if isinstance(member, Mapping)]
    ordered = [m for m in team if m.get("is_primary") is True] + [
        m for m in team if m.get("is_primary") is not True
    ]
    return join_list(_text(member.get("name")) for member in ordered)


def tags(record: Record) -> str:
    return join_list(_text(tag) for tag in record.get("tags") or ())


def organization(record: Record) -> Mapping[str, Any]:
    value = record.get("organization")
    return value if isinstance(value, Mapping) else {}


def _decimal(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def unpaid_totals(record: Record) -> dict[str, Decimal]:
    """Unpaid balance per currency code (an invoice without a currency is in the organization's)."""
    default = _text(organization(record).get("currency")).upper()
    totals: dict[str, Decimal] = {}
    for invoice in record.get("invoices") or ():
        if not isinstance(invoice, Mapping) or invoice.get("status") != "unpaid":
            continue
        amount = _decimal(invoice.get("balance"))
        if amount is None:
            continue
        currency = _text(invoice.get("currency")).upper() or default
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    return totals


def unpaid_invoices(record: Record) -> str:
    """``Yes, CAD$150 + USD$20 due`` (organization's currency first, then by code) or ``No``."""
    default = _text(organization(record).get("currency")).upper()
    due = {currency: total for currency, total in unpaid_totals(record).items() if round_cents(total) > 0}
    if not due:
        return NO
    order = sorted(due, key=lambda currency: (currency != default, currency))
    return "Yes, " + " + ".join(format_money(due[currency], currency) for currency in order) + " due"


def _appointments(record: Record, statuses: Iterable[str]) -> list[datetime]:
    wanted = frozenset(statuses)
    starts = []
    for appointment in record.get("appointments") or ():
        if (
            isinstance(appointment, Mapping)
            and appointment.get("status") in wanted
            and appointment.get("start_at")
        ):
            starts.append(parse_utc(appointment["start_at"]))
    return starts


def sessions(record: Record) -> str:
    return str(len(_appointments(record, COUNTED_STATUSES)))


def linked_accounts(record: Record) -> str:
    """``Sami Ruhsuf (Spouse), Mir Batman (Child)``; the primary first as ``Name (Relationship, Primary)``."""
    links = [link for link in record.get("linked_accounts") or () if isinstance(link, Mapping)]
    ordered = [x for x in links if x.get("is_primary") is True] + [
        x for x in links if x.get("is_primary") is not True
    ]
    shown = []
    for link in ordered:
        name = _text(link.get("name"))
        if not name:
            continue
        details = [part for part in (_text(link.get("relationship")),) if part]
        if link.get("is_primary") is True:
            details.append("Primary")
        shown.append(f"{name} ({', '.join(details)})" if details else name)
    return join_list(shown)


class ClientProfile:
    """The Ruh Care client profile, displayed in ``display_timezone``."""

    name = "clients"
    version = "1"
    attributes = ATTRIBUTES
    volatile_keys = frozenset({"updated_on"})

    def __init__(self, display_timezone: str = "America/Toronto"):
        self.display_timezone = display_timezone
        self.zone = get_zone(display_timezone)

    # --- formatting in the display zone -------------------------------------------------

    def _datetime(self, dt: datetime) -> str:
        return format_datetime(dt, self.zone)

    def account_values(self, record: Record, now: datetime) -> dict[str, str]:
        """The per-account values of one platform record (every key but ``SINGLE_KEYS``)."""
        return {
            "client_id": _or_none(record.get("id")),
            "name": full_name(record),
            "phone": _or_none(record.get("phone")),
            "profile_link": _or_none(record.get("profile_url")),
            "status": _or_none(record.get("status")),
            "timezone": _or_none(record.get("timezone")),
            "client_since": self._client_since(record),
            "therapists": therapists(record),
            "tags": tags(record),
            "group": _or_none(record.get("group")),
            "unpaid_invoices": unpaid_invoices(record),
            "card_on_file": _yes_no(record.get("card_on_file")),
            "sessions": sessions(record),
            "last_appointment": self._last_appointment(record, now),
            "next_appointment": self._next_appointment(record, now),
            "intake_completed": _yes_no(record.get("intake_forms_completed")),
            "sub_org": _or_none(organization(record).get("name")),
            "linked_accounts": linked_accounts(record),
        }

    def _client_since(self, record: Record) -> str:
        created = record.get("created_at")
        return format_date(parse_utc(created), self.zone) if created else NONE

    def _last_appointment(self, record: Record, now: datetime) -> str:
        past = [start for start in _appointments(record, COUNTED_STATUSES) if start <= now]
        return self._datetime(max(past)) if past else NO_APPOINTMENTS

    def _next_appointment(self, record: Record, now: datetime) -> str:
        future = [start for start in _appointments(record, (UPCOMING_STATUS,)) if start > now]
        return self._datetime(min(future)) if future else NO_APPOINTMENTS

    # --- the Profile interface ----------------------------------------------------------

    def record_problems(self, record: Any) -> list[str]:
        """The contract's ``Client`` fields and types (:mod:`sync_worker.platform_records`)."""
        return record_problems(record)

    def compute(
        self, records: Sequence[Record], *, now: datetime, fetched_at: datetime
    ) -> dict[str, str | None]:
        """Every attribute's value for the platform ``records`` of one email (see the module docstring)."""
        accounts = sorted(records, key=lambda record: int(record["id"]))
        single = {
            "account_exists": YES if accounts else NO,
            "multiple_accounts": YES if len(accounts) > 1 else NO,
            "updated_on": self._datetime(fetched_at),
            "data_status": LIVE,
        }
        if not accounts:
            values: dict[str, str | None] = {spec.key: NONE for spec in ATTRIBUTES}
            values["name"] = None
            values.update(single)
            return values
        per_account = [self.account_values(record, now) for record in accounts]
        return {
            spec.key: single[spec.key]
            if spec.key in SINGLE_KEYS
            else ACCOUNT_SEPARATOR.join(values[spec.key] for values in per_account)
            for spec in ATTRIBUTES
        }

    def stale_status(self, unavailable_since: datetime) -> str:
        return f"Stale - platform unavailable since {self._datetime(unavailable_since)}"

    def stale(
        self, last_known: Mapping[str, str | None] | None, *, unavailable_since: datetime
    ) -> dict[str, str | None]:
        """The last known values with the staleness flag; only ``data_status`` when none are known."""
        values: dict[str, str | None] = {}
        if last_known:
            values = {spec.key: last_known[spec.key] for spec in ATTRIBUTES if spec.key in last_known}
        values["data_status"] = self.stale_status(unavailable_since)
        return values
