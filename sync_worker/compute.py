"""From one contact's platform records to the values to write: checked first, then computed.

Guarantees (:func:`compute_values`, pure but for a log line):
- every record is checked against the profile's record contract
  (:meth:`~sync_worker.profiles.base.Profile.record_problems`: for the clients profile the
  contract's fields and types, :mod:`sync_worker.platform_records`) before the profile computes;
- any failure to compute, a record's problems or anything the profile raises (a value of a shape
  the check let through, a bug), is one :class:`PlatformDataError` (``platform_data_invalid``,
  permanent) concerning that contact alone: the worker parks that contact, a bulk chunk goes on
  with the next one without spending its retries, the data connector answers the last known
  values flagged stale (never a 5xx);
- the error's message names fields and positions (``records[0].created_at is not ...``) or the
  exception's class, never a value (it is stored in dead letters and logged); an exception the
  check did not foresee is logged once with its traceback (scrubbed: :mod:`sync_worker.logs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sync_worker.errors import PermanentError
from sync_worker.logs import log_event
from sync_worker.profiles.base import Profile

logger = logging.getLogger(__name__)

#: The most record problems a message lists.
MAX_PROBLEMS = 5


class PlatformDataError(PermanentError):
    """The platform's records for one contact cannot be computed (they break the contract)."""

    code = "platform_data_invalid"


def record_problems(profile: Profile, records: Sequence[Any]) -> list[str]:
    """Every problem of ``records`` (one email's), each prefixed with the record's position."""
    return [
        f"records[{index}]: {problem}"
        for index, record in enumerate(records)
        for problem in profile.record_problems(record)
    ]


def compute_values(
    profile: Profile,
    records: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    fetched_at: datetime | None = None,
) -> dict[str, str | None]:
    """The profile's values for ``records``, or :class:`PlatformDataError` (see the module)."""
    problems = record_problems(profile, records)
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise PlatformDataError(
            "platform records break the contract: " + "; ".join(problems[:MAX_PROBLEMS]) + more
        )
    try:
        return dict(profile.compute(records, now=now, fetched_at=fetched_at or now))
    except Exception as exc:
        log_event(
            logger,
            "platform_records_not_computed",
            level=logging.ERROR,
            profile=profile.name,
            error_type=type(exc).__name__,
            exc_info=exc,
        )
        raise PlatformDataError(
            f"platform records could not be computed: {type(exc).__name__} (their checks passed)"
        ) from exc
