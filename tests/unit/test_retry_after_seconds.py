"""``Retry-After`` read once for every upstream (``sync_worker.ratelimit.headers``)."""

from __future__ import annotations

import pytest

from sync_worker.ratelimit.headers import parse_retry_after, retry_after_seconds

NOW = 1445412000.0  # 2015-10-21 07:20:00 UTC


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 480.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, 480.0),  # no zone: read as UTC
        ({"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}, 0.0),  # already past
        ({"Retry-After": "soon"}, 1.0),
        ({"Retry-After": "inf"}, 1.0),
        ({"Retry-After": "nan"}, 1.0),
        ({"Retry-After": ""}, 1.0),
        ({}, 1.0),
    ],
)
def test_the_wait_a_retry_after_asks_for(headers: dict[str, str], expected: float) -> None:
    assert retry_after_seconds(headers, now=NOW, default=1.0) == pytest.approx(expected)


def test_a_delay_that_is_not_a_finite_number_is_unreadable() -> None:
    assert parse_retry_after({"Retry-After": "inf"}) is None
    assert parse_retry_after({"Retry-After": "nan"}) is None
