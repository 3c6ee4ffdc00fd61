"""Which errors concern the whole workspace (a halt), and what a data-attribute listing forbids."""

from __future__ import annotations

import pytest

from sync_worker.compute import PlatformDataError
from sync_worker.errors import TransientError
from sync_worker.halts import AUTH, CONTRACT, INTERCOM, PLATFORM, SCHEMA, halt_reason
from sync_worker.intercom import IntercomAuthError, IntercomBadRequest, IntercomNotFound, InvalidAttribute
from sync_worker.platform import (
    PlatformAuthError,
    PlatformContractError,
    PlatformRequestError,
    PlatformUnavailable,
)
from sync_worker.schema import (
    MAX_CUSTOM_ATTRIBUTES,
    ArchivedAttribute,
    AttributeLimitReached,
    AttributeTypeClash,
    listing_problem,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (IntercomAuthError("401", status=401), (INTERCOM, AUTH)),
        (IntercomAuthError("403", status=403), (INTERCOM, AUTH)),
        (PlatformAuthError("401", status=401), (PLATFORM, AUTH)),
        (AttributeTypeClash("clash"), (INTERCOM, SCHEMA)),
        (ArchivedAttribute("archived"), (INTERCOM, SCHEMA)),
        (AttributeLimitReached("cap"), (INTERCOM, SCHEMA)),
    ],
)
def test_workspace_wide_errors_halt_their_upstream(error, expected):
    assert halt_reason(error) == expected


@pytest.mark.parametrize(
    "error",
    [
        IntercomNotFound("404", status=404),
        IntercomBadRequest("400", status=400),
        InvalidAttribute("too long", attribute="Notes"),
        PlatformUnavailable("down"),
        PlatformDataError("bad record"),
        TransientError("later"),
        ValueError("a bug"),
    ],
)
def test_errors_about_one_contact_or_a_moment_halt_nothing(error):
    assert halt_reason(error) is None


@pytest.mark.parametrize("error", [PlatformContractError("no data"), PlatformRequestError("400", status=400)])
def test_a_batched_platform_read_refused_as_sent_is_the_platform_s_contract(error):
    """One contact's read refused so may be about that contact; a bulk chunk's batch cannot be."""
    assert halt_reason(error) is None
    assert halt_reason(error, batch=True) == (PLATFORM, CONTRACT)
    assert halt_reason(PlatformUnavailable("down"), batch=True) is None


def _attribute(name: str, *, archived: bool = False) -> dict:
    return {"name": name, "data_type": "string", "custom": True, "archived": archived}


def test_an_archived_name_is_named():
    problem = listing_problem(["Data Status", "Balance"], [_attribute("data status", archived=True)])
    assert isinstance(problem, ArchivedAttribute)
    assert "'data status' is archived" in problem.message


def test_an_archived_name_with_a_live_twin_is_no_problem():
    listed = [_attribute("Balance", archived=True), _attribute("Balance")]
    assert listing_problem(["Balance"], listed) is None


def test_names_past_the_cap_are_refused_before_any_is_created():
    full = [_attribute(f"Old {n}") for n in range(MAX_CUSTOM_ATTRIBUTES - 1)]
    assert listing_problem(["A"], full) is None
    problem = listing_problem(["A", "B", "Old 3"], full)
    assert isinstance(problem, AttributeLimitReached)
    assert "'A', 'B'" in problem.message and "Old 3" not in problem.message
    # Archived attributes do not count against the cap.
    assert listing_problem(["A", "B"], [*full[:-1], _attribute("X", archived=True)]) is None
