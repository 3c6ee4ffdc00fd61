"""When a referral lead qualifies: the decision, from what the contact shows and what we saw before.

Guarantees (pure):
- the watched value is the contact's ``role`` (``REFERRAL_QUALIFY_ON=signed_up``: ``user``
  qualifies) or its ``REFERRAL_QUALIFY_PROPERTY`` custom attribute (``property``: one of
  ``REFERRAL_QUALIFY_VALUES`` qualifies; compared trimmed and case-insensitively);
- :func:`decide` answers :data:`QUALIFY` only when the value qualifies now, the value last seen
  for the referral did not (never seen counts as not), and the referral is not reported yet (our
  record, the program's ``qualified_at`` or the contact's ``Referral Status``): so our own write
  echoing back, a webhook delivered twice, or a value that stays qualifying asks nothing;
- a value moving from qualifying back to not is :data:`MOVED_BACK`: it un-qualifies nothing
  (the caller logs it); everything else is :data:`NOTHING`;
- the caller remembers :attr:`Decision.seen` (the value now) once it acted on the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_worker.integrations.referral_leads.options import LeadOptions

QUALIFY = "qualify"
NOTHING = "nothing"
MOVED_BACK = "moved_back"
ALREADY_REPORTED = "already_reported"
USER = "user"


@dataclass(frozen=True)
class Decision:
    action: str
    seen: str | None  # the watched value now, to remember as the value last seen


def watched_value(contact: Mapping[str, Any], options: LeadOptions) -> str | None:
    if options.by_property:
        value = (contact.get("custom_attributes") or {}).get(options.qualify_property)
    else:
        value = contact.get("role")
    if value is None:
        return None
    return str(value)


def qualifies(value: str | None, options: LeadOptions) -> bool:
    if value is None:
        return False
    if not options.by_property:
        return value == USER
    wanted = {each.strip().casefold() for each in options.qualify_values}
    return value.strip().casefold() in wanted


def decide(current: str | None, last_seen: str | None, *, reported: bool, options: LeadOptions) -> Decision:
    """What the contact's watched value ``current`` asks, given the value ``last_seen`` (None:
    never seen) and whether the referral is ``reported`` already (see the module's guarantees)."""
    now, before = qualifies(current, options), qualifies(last_seen, options)
    if now and not before:
        return Decision(ALREADY_REPORTED if reported else QUALIFY, current)
    if before and not now:
        return Decision(MOVED_BACK, current)
    return Decision(NOTHING, current)
