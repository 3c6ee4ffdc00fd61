"""Time, money and list formatting: expected strings computed by hand from the spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import pytz

from sync_worker.formatting import (
    UnknownTimezone,
    currency_prefix,
    format_date,
    format_datetime,
    format_money,
    get_zone,
    join_list,
    parse_utc,
)

TORONTO_IMPLEMENTATIONS = [
    pytest.param("America/Toronto", id="name"),
    pytest.param(ZoneInfo("America/Toronto"), id="zoneinfo"),
    pytest.param(pytz.timezone("America/Toronto"), id="pytz"),
]


# --- parse_utc ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-09T06:59:00Z", datetime(2025, 3, 9, 6, 59, tzinfo=UTC)),
        ("2025-03-09T06:59:00.250Z", datetime(2025, 3, 9, 6, 59, 0, 250000, tzinfo=UTC)),
        ("2025-03-09T06:59:00+00:00", datetime(2025, 3, 9, 6, 59, tzinfo=UTC)),
        ("2025-03-09T01:59:00-05:00", datetime(2025, 3, 9, 6, 59, tzinfo=UTC)),
        (" 2026-01-22T16:00:00z ", datetime(2026, 1, 22, 16, 0, tzinfo=UTC)),
    ],
)
def test_parse_utc_reads_zoned_iso_8601_as_utc(text, expected):
    parsed = parse_utc(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2025-03-09T06:59:00", "yesterday", ""])
def test_parse_utc_refuses_times_without_a_zone_or_not_times(text):
    with pytest.raises(ValueError):
        parse_utc(text)


# --- date-time ------------------------------------------------------------------------


@pytest.mark.parametrize("zone", TORONTO_IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # the spec's example
        ("2026-01-22T16:00:00Z", "Jan 22, 2026 - 11:00 a.m. EST"),
        # the seed's example is summer time: EDT, not EST
        ("2025-10-22T15:00:00Z", "Oct 22, 2025 - 11:00 a.m. EDT"),
        # the four DST instants of the spec
        ("2025-03-09T06:59:00Z", "Mar 9, 2025 - 1:59 a.m. EST"),
        ("2025-03-09T07:00:00Z", "Mar 9, 2025 - 3:00 a.m. EDT"),
        ("2025-11-02T05:30:00Z", "Nov 2, 2025 - 1:30 a.m. EDT"),
        ("2025-11-02T06:30:00Z", "Nov 2, 2025 - 1:30 a.m. EST"),
        # noon and midnight, winter and summer
        ("2026-01-22T17:00:00Z", "Jan 22, 2026 - 12:00 p.m. EST"),
        ("2026-01-22T05:00:00Z", "Jan 22, 2026 - 12:00 a.m. EST"),
        ("2025-07-01T16:00:00Z", "Jul 1, 2025 - 12:00 p.m. EDT"),
        ("2025-07-01T04:00:00Z", "Jul 1, 2025 - 12:00 a.m. EDT"),
        # minutes keep two digits, hours no leading zero; a minute before/after noon/midnight
        ("2026-01-22T16:59:00Z", "Jan 22, 2026 - 11:59 a.m. EST"),
        ("2026-01-22T17:01:00Z", "Jan 22, 2026 - 12:01 p.m. EST"),
        ("2026-01-23T04:59:00Z", "Jan 22, 2026 - 11:59 p.m. EST"),
        ("2026-01-22T05:05:00Z", "Jan 22, 2026 - 12:05 a.m. EST"),
        ("2026-01-22T14:07:00Z", "Jan 22, 2026 - 9:07 a.m. EST"),
        # the UTC date differs from the local one
        ("2026-01-01T03:30:00Z", "Dec 31, 2025 - 10:30 p.m. EST"),
    ],
)
def test_format_datetime_in_toronto(zone, instant, expected):
    assert format_datetime(parse_utc(instant), zone) == expected


@pytest.mark.parametrize(
    ("month", "abbreviation"),
    list(
        enumerate(
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
        )
    ),
)
def test_every_month_has_its_three_letter_english_name(month, abbreviation):
    instant = datetime(2025, month, 15, 17, 0, tzinfo=UTC)
    assert format_date(instant, "America/Toronto") == f"{abbreviation} 15, 2025"


@pytest.mark.parametrize(
    ("zone", "instant", "expected"),
    [
        ("America/Vancouver", "2026-01-22T16:00:00Z", "Jan 22, 2026 - 8:00 a.m. PST"),
        ("America/Vancouver", "2025-07-22T16:00:00Z", "Jul 22, 2025 - 9:00 a.m. PDT"),
        ("UTC", "2025-07-22T16:00:00Z", "Jul 22, 2025 - 4:00 p.m. UTC"),
    ],
)
def test_format_datetime_in_other_display_zones(zone, instant, expected):
    assert format_datetime(parse_utc(instant), zone) == expected


def test_format_datetime_accepts_any_aware_datetime():
    eastern_offset = datetime(2026, 1, 22, 11, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert format_datetime(eastern_offset, "America/Toronto") == "Jan 22, 2026 - 11:00 a.m. EST"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2026, 1, 22, 16, 0), "America/Toronto")
    with pytest.raises(ValueError, match="naive"):
        format_date(datetime(2026, 1, 22, 16, 0), "America/Toronto")


# --- date -----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", TORONTO_IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2024-03-01T15:00:00Z", "Mar 1, 2024"),
        ("2026-01-22T16:00:00Z", "Jan 22, 2026"),
        # 02:00 UTC on Mar 2 is still Mar 1 in Toronto
        ("2024-03-02T02:00:00Z", "Mar 1, 2024"),
        ("2024-03-02T05:00:00Z", "Mar 2, 2024"),
    ],
)
def test_format_date(zone, instant, expected):
    assert format_date(parse_utc(instant), zone) == expected


def test_unknown_zone_is_a_clear_error():
    with pytest.raises(UnknownTimezone, match="Mars/Olympus"):
        get_zone("Mars/Olympus")


# --- money ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("150", "CAD", "CAD$150"),
        ("150.00", "CAD", "CAD$150"),
        ("150.5", "CAD", "CAD$150.50"),
        ("150.05", "USD", "USD$150.05"),
        ("1250.50", "CAD", "CAD$1,250.50"),
        ("1000", "AUD", "AUD$1,000"),
        ("1234567.89", "USD", "USD$1,234,567.89"),
        ("999.995", "CAD", "CAD$1,000"),  # cents rounded half up
        ("0.004", "CAD", "CAD$0"),
        ("0", "CAD", "CAD$0"),
        ("20", "usd", "USD$20"),
        (" 20 ", " cad ", "CAD$20"),
        ("150", "EUR", "EUR 150"),
        ("1250.5", "EUR", "EUR 1,250.50"),
        ("75.25", "GBP", "GBP 75.25"),
        ("-20", "CAD", "-CAD$20"),
    ],
)
def test_format_money(amount, currency, expected):
    assert format_money(Decimal(amount.strip()), currency) == expected


@pytest.mark.parametrize(
    ("currency", "prefix"), [("CAD", "CAD$"), ("NZD", "NZD$"), ("EUR", "EUR "), ("JPY", "JPY ")]
)
def test_currency_prefix(currency, prefix):
    assert currency_prefix(currency) == prefix


def test_money_refuses_floats():
    with pytest.raises(TypeError, match="Decimal"):
        format_money(150.5, "CAD")  # type: ignore[arg-type]


# --- lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kwargs", "expected"),
    [
        (["Anxiety", "Couples"], {}, "Anxiety, Couples"),
        ([" Anxiety ", "", None, "  ", "Couples"], {}, "Anxiety, Couples"),
        ([], {}, "-"),
        ([None, " "], {}, "-"),
        (["131446", "131447"], {"sep": " | "}, "131446 | 131447"),
        ([], {"empty": "No Appointments"}, "No Appointments"),
    ],
)
def test_join_list(values, kwargs, expected):
    assert join_list(values, **kwargs) == expected
