"""Time, money and list formatting for the values shown on Intercom contacts.

Guarantees (all pure, locale-independent, no clock and no settings read):
- :func:`parse_utc` reads the platform's UTC ISO 8601 times (``Z`` suffix or an
  explicit offset) into aware UTC datetimes and refuses times without a zone;
- :func:`format_datetime` shows an instant in a display zone as
  ``Jan 22, 2026 - 11:00 a.m. EST``: English three-letter month, no leading zeros,
  12-hour clock (noon ``12:00 p.m.``, midnight ``12:00 a.m.``) and the zone's
  abbreviation *for that instant*, so it is right on both sides of a DST change;
  :func:`format_date` shows the calendar date there (``Mar 1, 2024``);
- :func:`format_money` uses :class:`~decimal.Decimal` only: cents rounded half
  up, whole amounts without decimals, others with two, thousands with commas,
  ``CAD$`` for dollar currencies and ``EUR 150`` for the rest;
- :func:`join_list` trims the parts, drops blank ones and shows a placeholder
  when nothing is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytz

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: ISO 4217 codes of currencies called "dollar": shown as ``CAD$150``; any other code as ``EUR 150``.
DOLLAR_CURRENCIES = frozenset(
    {
        "AUD", "BBD", "BMD", "BND", "BSD", "BZD", "CAD", "FJD", "GYD", "HKD", "JMD", "KYD",
        "LRD", "NAD", "NZD", "SBD", "SGD", "SRD", "TTD", "TWD", "USD", "XCD", "ZWL",
    }
)  # fmt: skip

_CENT = Decimal("0.01")

Zone = str | tzinfo


class UnknownTimezone(ValueError):
    """A display zone name that neither the system's nor pytz's tz database knows."""


def get_zone(zone: Zone) -> tzinfo:
    """The tzinfo for an IANA name (or ``zone`` itself when it already is one).

    The system tz database is used first; pytz's bundled copy covers machines
    (slim containers) that have none.
    """
    if isinstance(zone, tzinfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        try:
            return pytz.timezone(zone)
        except pytz.UnknownTimeZoneError:
            raise UnknownTimezone(
                f"unknown time zone {zone!r}: expected an IANA name like 'America/Toronto'"
            ) from None


def parse_utc(value: str) -> datetime:
    """An aware UTC datetime from a platform time such as ``2025-03-09T06:59:00Z``."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"time without a zone: {value!r} (platform times are UTC with a Z suffix)")
    return parsed.astimezone(UTC)


def _local(dt_utc: datetime, zone: Zone) -> datetime:
    if dt_utc.tzinfo is None or dt_utc.utcoffset() is None:
        raise ValueError("naive datetime: pass an aware (UTC) datetime")
    return dt_utc.astimezone(get_zone(zone))


def _date_part(local: datetime) -> str:
    return f"{MONTHS[local.month - 1]} {local.day}, {local.year}"


def format_date(dt_utc: datetime, tz: Zone) -> str:
    """``Mar 1, 2024``: the calendar date of the instant in the display zone."""
    return _date_part(_local(dt_utc, tz))


def format_datetime(dt_utc: datetime, tz: Zone) -> str:
    """``Jan 22, 2026 - 11:00 a.m. EST``: the instant in the display zone."""
    local = _local(dt_utc, tz)
    hour = local.hour % 12 or 12
    meridiem = "a.m." if local.hour < 12 else "p.m."
    abbreviation = local.tzname() or ""
    return f"{_date_part(local)} - {hour}:{local.minute:02d} {meridiem} {abbreviation}".rstrip()


def currency_prefix(currency: str) -> str:
    """``CAD$`` for a dollar currency, ``EUR `` (code and a space) for any other."""
    code = currency.strip().upper()
    return f"{code}$" if code in DOLLAR_CURRENCIES else f"{code} "


def round_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half up to cents (money is never a float)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(amount).__name__}")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal) -> str:
    """``1,250.50`` / ``150``: cents rounded half up, no decimals when whole, thousands commas."""
    cents = round_cents(amount)
    if cents == cents.to_integral_value():
        return f"{cents:,.0f}"
    return f"{cents:,.2f}"


def format_money(amount: Decimal, currency: str) -> str:
    """``CAD$1,250.50``, ``USD$20``, ``EUR 150``; a negative amount reads ``-CAD$20``."""
    sign = "-" if amount < 0 and format_amount(-amount) != "0" else ""
    return f"{sign}{currency_prefix(currency)}{format_amount(abs(amount))}"


def join_list(values: Iterable[str | None], sep: str = ", ", *, empty: str = "-") -> str:
    """The trimmed, non-blank ``values`` joined with ``sep``; ``empty`` when there are none."""
    parts = [value.strip() for value in values if value is not None and value.strip()]
    return sep.join(parts) if parts else empty
