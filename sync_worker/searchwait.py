"""How long an email-only trigger waits for its contact to reach Intercom's search.

Intercom documents that a contact created moments ago "may not yet be available when
searching ... This delay can take a few minutes". A trigger that names only an email (a
workflow, an operator, the data connector) for such a contact must not give up after the
error-retry budget (seconds to a couple of minutes): it searches again with its own clock,
``SYNC_CONTACT_SEARCH_WAIT_SECONDS`` from the first search that found no one.

Guarantees of :func:`next_search` (pure):
- a countdown to the next search while the wait lasts: the caller's backoff for the wait's own
  try count (the task uses the error retries' exponential backoff with full jitter, but never
  spends their ``attempt``), cut to the end of the wait, so the last search runs at the end
  and not later;
- ``None`` once the wait has run out: the caller ends the run with the outcome
  ``not_found`` (logged and recorded, no dead letter: nothing an operator could replay would
  change it before the contact exists).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The kwargs a search wait travels with (beside the request's own fields).
SINCE = "searching_since"
TRIES = "search_tries"


@dataclass(frozen=True)
class SearchWait:
    """Where a wait for search stands: since when (Unix seconds), how many searches again so far."""

    since: float
    tries: int

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], now: float) -> SearchWait:
        """The wait a message carries; a new one from ``now`` when it carries none."""
        since = kwargs.get(SINCE)
        return cls(float(since) if since is not None else now, int(kwargs.get(TRIES) or 0))

    def to_kwargs(self) -> dict[str, Any]:
        return {SINCE: self.since, TRIES: self.tries}


def carried(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The search wait of ``kwargs`` to carry into a retry of another kind (empty: none)."""
    return {name: kwargs[name] for name in (SINCE, TRIES) if kwargs.get(name) is not None}


def next_search(
    wait: SearchWait, now: float, *, wait_seconds: float, backoff: Callable[[int], float]
) -> tuple[float, SearchWait] | None:
    """The countdown to the next search and the wait after it, or None when the wait is over.

    ``backoff(tries)`` is the pause before the next search after ``tries`` searches again.
    """
    left = wait.since + wait_seconds - now
    if left <= 0:
        return None
    countdown = max(0.1, min(backoff(wait.tries), left))
    return countdown, SearchWait(wait.since, wait.tries + 1)
