"""Which location companies a user's contact is attached to and detached from (pure).

Guarantees (:func:`plan_membership`):
- ``attach``: every location of the user the contact is not attached to now, in the user's order;
- ``detach``: every company the contact is attached to now that this service attached earlier
  for this user and that is no longer among the user's locations; a company anyone else attached
  (the Messenger, an agent, another integration) is never in it, nor is one of the user's
  locations;
- ``ours``: the companies this service holds attached for the user after the plan is carried
  out (what it attached earlier and still a location, plus what it attaches now); a location the
  contact already had from someone else stays theirs;
- more locations than Intercom's 1,000 company associations (:data:`~sync_worker.intercom.MAX_COMPANIES_PER_CONTACT`) is
  :class:`TooManyLocations` (permanent, naming the limit) before anything is planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sync_worker.errors import PermanentError
from sync_worker.intercom import MAX_COMPANIES_PER_CONTACT


class TooManyLocations(PermanentError):
    """The user has more locations than a contact can have companies in Intercom."""

    code = "company_limit_reached"


@dataclass(frozen=True)
class MembershipPlan:
    attach: tuple[str, ...]
    detach: tuple[str, ...]
    ours: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.attach and not self.detach


def check_location_count(count: int) -> None:
    """:class:`TooManyLocations` when ``count`` locations cannot all be the contact's companies."""
    if count > MAX_COMPANIES_PER_CONTACT:
        raise TooManyLocations(
            f"the user has {count} locations; Intercom allows at most "
            f"{MAX_COMPANIES_PER_CONTACT:,} company associations per contact"
        )


def plan_membership(
    locations: Sequence[str], attached_by_us: Iterable[str], current: Iterable[str]
) -> MembershipPlan:
    """The attach and detach lists for a contact (all by ``company_id``; see the module)."""
    check_location_count(len(set(locations)))
    wanted = list(dict.fromkeys(locations))
    wanted_set = set(wanted)
    ours = set(attached_by_us)
    now = set(current)
    attach = tuple(company for company in wanted if company not in now)
    detach = tuple(sorted(company for company in now & ours if company not in wanted_set))
    return MembershipPlan(attach, detach, frozenset((ours & wanted_set) | set(attach)))
