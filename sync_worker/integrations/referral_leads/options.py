"""The referral-leads settings as the pipeline uses them, read once from :class:`~sync_worker.config.Settings`.

Guarantees (pure): :func:`lead_options` builds one frozen :class:`LeadOptions` from settings that
:mod:`sync_worker.config` already validated at start (user types, campaign ids, the field map,
the qualification method and its values), so a run never meets a setting that cannot work.
:data:`USER_TYPES` is what each ``REFERRAL_USER_TYPES`` value sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync_worker.integrations.referral_leads.fieldmap import FieldMap, parse_field_map

if TYPE_CHECKING:
    from sync_worker.config import Settings

REFERRED = "person_invited"
DIRECT = "person_referring"
#: ``REFERRAL_USER_TYPES`` -> the program's user types it sends.
USER_TYPES: dict[str, frozenset[str]] = {
    "referred": frozenset({REFERRED}),
    "direct": frozenset({DIRECT}),
    "all": frozenset({REFERRED, DIRECT}),
}
SIGNED_UP = "signed_up"
PROPERTY = "property"


@dataclass(frozen=True)
class LeadOptions:
    """What is sent and how a lead qualifies (see the README's referral settings)."""

    user_types: frozenset[str]
    campaigns: frozenset[int]  # empty: every campaign
    field_map: FieldMap
    qualify_on: str  # SIGNED_UP or PROPERTY
    qualify_property: str
    qualify_initial: str
    qualify_values: tuple[str, ...]
    display_timezone: str
    excluded_emails: tuple[str, ...] = ()

    @property
    def by_property(self) -> bool:
        return self.qualify_on == PROPERTY


def lead_options(settings: Settings) -> LeadOptions:
    reserved = (settings.referral_qualify_property,) if settings.referral_qualify_on == PROPERTY else ()
    return LeadOptions(
        user_types=USER_TYPES[settings.referral_user_types],
        campaigns=frozenset(settings.referral_campaigns),
        field_map=parse_field_map(settings.referral_field_map, reserved=reserved),
        qualify_on=settings.referral_qualify_on,
        qualify_property=settings.referral_qualify_property,
        qualify_initial=settings.referral_qualify_initial,
        qualify_values=tuple(settings.referral_qualify_values),
        display_timezone=settings.display_timezone,
        excluded_emails=tuple(settings.excluded_emails),
    )
